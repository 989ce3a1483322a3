"""Build bentos: the Predictor (CPU or GPU) and, later, the experiment gateway.

A bento carries the thin service from ``bentos/<name>/``, the ``workbench`` package
itself (copied into the bento's source, so the container needs nothing else of ours),
exact pins of the serving dependencies as installed here, and the models it serves,
resolved now from aliases to tags and frozen into the bento's arguments.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import workbench
from workbench.errors import ConfigError

SERVING_PACKAGES = ("numpy", "jax", "jaxlib", "numpyro", "h5py", "psutil")


def bentos_dir() -> Path:
    """Where the bento sources are: inside the installed wheel, or the repository's."""
    packaged = Path(workbench.__file__).parent / "bentos"
    if packaged.is_dir():
        return packaged
    return Path(workbench.__file__).resolve().parents[2] / "bentos"


def requirements(*, gpu: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    """Exact pins of what the service imports, as installed in this environment."""
    from importlib.metadata import PackageNotFoundError

    pins = []
    for name in (*SERVING_PACKAGES, *extra):
        if name == "jaxlib" and gpu:
            continue
        spec = "jax[cuda12]" if (name == "jax" and gpu) else name
        try:
            pins.append(f"{spec}=={version(name)}")
        except PackageNotFoundError:  # an optional driver (psycopg) not installed here
            if name in SERVING_PACKAGES:
                raise
    return pins


def build_predictor(models: list[str] | None = None, *, gpu: bool = False,
                    version_: str | None = None) -> str:
    """Build the Predictor bento serving ``models`` (aliases, names or tags; default
    ``champion``); returns the bento tag."""
    from workbench.serving import model_refs

    resolved = model_refs(",".join(models) if models else None)
    args: dict[str, Any] = {"models": ",".join(f"{r}={t}" for r, t in resolved.items())}
    if gpu:
        args["gpu"] = "true"
    return _build("predictor", name="predictor-gpu" if gpu else "predictor", args=args,
                  packages=requirements(gpu=gpu),
                  labels={"workbench.gpu": str(gpu).lower(),
                          "workbench.models": ".".join(t.replace(":", "-")
                                                       for t in resolved.values())[:63]},
                  version_=version_)


def build_experiment(config_path: str | None = None, *, version_: str | None = None) -> str:
    """Build the experiment gateway bento: its config bundled, the Predictor beside it,
    and every arm's (and the shadow's) model resolved now and packed; returns the tag."""
    import os

    from workbench.config import DEFAULT, load
    from workbench.serving import model_refs

    path = config_path or os.environ.get("WORKBENCH_EXPERIMENT")
    config = load(path)
    resolved = model_refs(",".join(dict.fromkeys(config.models().values())))
    text = Path(path).read_text() if path else yaml_dump(DEFAULT)
    return _build("experiment", name="experiment", args={
        "models": ",".join(f"{r}={t}" for r, t in resolved.items()),
        "experiment_config": "experiment.yaml"},
        packages=requirements(extra=("sqlalchemy", "pyyaml", "scipy", "psycopg",
                                     "psycopg-binary")),
        labels={"workbench.experiment": config.name}, version_=version_,
        files={"experiment.yaml": text})


def yaml_dump(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False)


def _build(source: str, *, name: str, args: dict[str, Any], packages: list[str],
           labels: dict[str, str], version_: str | None,
           files: dict[str, str] | None = None) -> str:
    import bentoml

    src = bentos_dir() / source
    if not (src / "service.py").is_file():
        raise ConfigError(f"no bento source at {src}", detail={"expected": "service.py"})
    with tempfile.TemporaryDirectory(prefix=f"workbench-build-{source}-") as tmp:
        ctx = Path(tmp)
        shutil.copytree(src, ctx, dirs_exist_ok=True,  # symlinks are copied as files
                        ignore=shutil.ignore_patterns("__pycache__"))
        for filename, text in (files or {}).items():
            (ctx / filename).write_text(text)
        shutil.copytree(Path(workbench.__file__).parent, ctx / "workbench",
                        ignore=shutil.ignore_patterns("__pycache__", "bentos"))
        bento = bentoml.bentos.build(
            "service:" + source.capitalize(),
            name=name,
            version=version_,
            build_ctx=str(ctx),
            include=["*.py", "*.yaml", "workbench/**/*.py"],
            python={"packages": packages, "lock_packages": False},
            docker={"python_version": "3.11", "distro": "debian"},
            labels={"workbench.version": workbench.__version__} | labels,
            args=args,
        )
    return str(bento.tag)
