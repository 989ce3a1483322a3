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

# What a served bento imports: the model path, plus access control (keys live in the event
# store's database; JWTs need cryptography; limits counts requests, in Redis for replicas).
SERVING_PACKAGES = ("numpy", "jax", "jaxlib", "numpyro", "h5py", "psutil", "sqlalchemy",
                    "alembic", "mako", "python-json-logger", "pyjwt", "cryptography",
                    "limits", "redis", "cachetools", "tenacity", "pydantic-settings",
                    "python-dotenv", "orjson")
# Added when a served model was trained from a Feast feature service (rows by entity key).
FEATURE_PACKAGES = ("feast", "pandas", "pyarrow")


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
                    remote: bool = False, version_: str | None = None) -> str:
    """Build the Predictor bento serving ``models`` (aliases, names or tags; default
    ``champion``); returns the bento tag.

    With ``remote`` the bento carries no model: it imports one at startup from
    ``$WORKBENCH_MODEL_URL`` (``s3://...``, exported with ``workbench models export``)
    and reports ready only after that and the warm-up.
    """
    from workbench.serving import model_refs

    if remote and models:
        raise ConfigError("a remote Predictor is built without models",
                          detail={"expected": "--remote, or --model REF, not both"})
    args: dict[str, Any] = {"remote": "true"} if remote else {}
    resolved = {} if remote else model_refs(",".join(models) if models else None)
    if resolved:
        args["models"] = ",".join(f"{r}={t}" for r, t in resolved.items())
    if gpu:
        args["gpu"] = "true"
    name = "predictor" + ("-remote" if remote else "") + ("-gpu" if gpu else "")
    return _build("predictor", name=name, args=args,
                  packages=requirements(gpu=gpu, extra=(("s3fs",) if remote else ())
                              + _feature_packages(resolved.values())),
                  labels={"workbench.gpu": str(gpu).lower(),
                          "workbench.models": ".".join(t.replace(":", "-")
                                                       for t in resolved.values())[:63]
                          or "from-WORKBENCH_MODEL_URL"},
                  version_=version_)


def build_experiment(config_path: str | None = None, *, arms: str | None = None,
                     version_: str | None = None) -> str:
    """Build the experiment gateway bento: its config bundled, every arm's (and the
    shadow's) model resolved now and packed, served in the gateway's process or (``arms=
    "predictor"``) by a Predictor beside it, a choice frozen into the bento (default:
    :func:`workbench.arms.mode`); returns the tag."""

    from workbench.arms import mode
    from workbench.config import DEFAULT, load
    from workbench.serving import model_refs
    from workbench.settings import load as load_settings

    path = config_path or load_settings().experiment
    config = load(path)
    resolved = model_refs(",".join(dict.fromkeys(config.models().values())))
    text = Path(path).read_text() if path else yaml_dump(DEFAULT)
    return _build("experiment", name="experiment", args={
        "models": ",".join(f"{r}={t}" for r, t in resolved.items()),
        "experiment_config": "experiment.yaml", "arms": mode(arms)},
        packages=requirements(extra=("pyyaml", "scipy", "psycopg", "psycopg-binary")
                              + _feature_packages(resolved.values())),
        labels={"workbench.experiment": config.name}, version_=version_,
        files={"experiment.yaml": text})


def _feature_packages(tags: Any) -> tuple[str, ...]:
    """Feast and its cache when a model reads its features by entity key (the served
    bento then needs ``WORKBENCH_FEATURE_REPO`` pointing at the feature repository)."""
    from workbench import store

    return FEATURE_PACKAGES if any(store.get(t).features for t in set(tags)) else ()


def yaml_dump(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False)


def _build(source: str, *, name: str, args: dict[str, Any], packages: list[str],
           labels: dict[str, str], version_: str | None,
           files: dict[str, str] | None = None) -> str:

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
        bento = _build_keeping_arguments(
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


def _build_keeping_arguments(*args: Any, **kwargs: Any) -> Any:
    """``bentoml.bentos.build``, then restore the process's bento arguments: BentoML sets
    the built bento's as a global, which would leak into any service imported later in the
    same process (a notebook's, a test's)."""
    import bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer

    before = dict(BentoMLContainer.bento_arguments.get())
    try:
        return bentoml.bentos.build(*args, **kwargs)
    finally:
        BentoMLContainer.bento_arguments.set(before)
