"""The model store: BentoML's own, plus aliases with history.

Every fitted posterior is one BentoML model (``bentoml models list`` shows it), its
version a BentoML tag, its artifact ``posterior.nc`` inside the model folder. This is the
only module that imports ``bentoml.models``. Aliases (``champion``, ``challenger``, any
name) live in one registry file beside BentoML's store (``$BENTOML_HOME/workbench/
aliases.json``), each with its history, so :func:`rollback` can point an alias back. An
alias refuses a posterior whose diagnostics failed, unless forced.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound

from workbench import artifact, redact
from workbench.artifact import Posterior
from workbench.errors import (
    ArtifactError,
    ConfigError,
    CorruptArtifact,
    DiagnosticsRefused,
    ModelNotFound,
)

LABELS = {"framework": "workbench"}
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class ModelInfo:
    """One stored posterior, as listed (read from BentoML's metadata, no artifact load)."""

    tag: str
    name: str
    model: str
    kind: str
    created: str
    diagnostics_ok: bool
    failures: tuple[str, ...]
    aliases: tuple[str, ...]
    metadata: dict[str, Any]


def home() -> Path:
    """BentoML's home (``$BENTOML_HOME``, default ``~/bentoml``), as BentoML resolves it."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get())


def save(posterior: Posterior, *, alias: str | None = None, force: bool = False) -> str:
    """Store ``posterior`` as a new BentoML model version; returns its tag."""
    name = _model_name(posterior.name or posterior.model)
    metadata = {
        "model": posterior.model,
        "kind": posterior.kind,
        "features": len(posterior.feature_names),
        "feature_names": list(posterior.feature_names),
        "targets": list(posterior.target_names),
        "model_id": posterior.model_id,
        "diagnostics_ok": bool(posterior.diagnostics.get("ok", False)),
        "failures": list(posterior.diagnostics.get("failures", [])),
        "max_rhat": _num(posterior.diagnostics.get("max_rhat")),
        "min_ess_bulk": _num(posterior.diagnostics.get("min_ess_bulk")),
        "divergences": int(posterior.diagnostics.get("divergences", 0)),
        "dataset": posterior.data.get("dataset", ""),
        "workbench_version": posterior.workbench_version,
    }
    with bentoml.models.create(name, labels=LABELS, metadata=metadata) as model:
        path = artifact.save(posterior, Path(model.path) / artifact.FILENAME)
        model.info.metadata["sha256"] = _sha256(path)
        tag = str(model.tag)
    if alias:
        set_alias(alias, tag, force=force)
    return tag


def resolve(ref: str) -> str:
    """An alias, a full tag (``name:version``) or a name (its latest version) → full tag."""
    current = _read_aliases().get(ref)
    if current and current["history"]:
        ref = current["history"][-1]["tag"]
    try:
        return str(bentoml.models.get(ref).tag)
    except (NotFound, ValueError):
        raise ModelNotFound(
            f"no model, tag or alias {ref!r} in the model store at {str(home())!r}",
            detail={"aliases": sorted(aliases()), "hint": "workbench models list"}) from None


def path(ref: str) -> Path:
    """The folder of a stored model (its ``posterior.nc`` inside)."""
    return Path(bentoml.models.get(resolve(ref)).path)


def artifact_bytes(ref: str) -> bytes:
    """A stored model's artifact file, as bytes (shipped to workers with no model store;
    read back with :func:`workbench.artifact.from_bytes`)."""
    return (path(ref) / artifact.FILENAME).read_bytes()


def get(ref: str) -> Posterior:
    """Load the posterior behind an alias, tag or name, checking its integrity."""
    return from_bento_model(bentoml.models.get(resolve(ref)))


def metadata(tag: str) -> dict[str, Any]:
    """BentoML's metadata of a stored model (features, targets, kind, diagnostics)."""
    try:
        return dict(bentoml.models.get(tag).info.metadata)
    except (NotFound, ValueError):
        raise ModelNotFound(f"no model {tag!r} in the model store") from None


def from_bento_model(model: Any) -> Posterior:
    """Load the posterior inside a BentoML model (as a bento's ``BentoModel`` resolves it),
    checking the file against the checksum recorded when it was stored."""
    file = Path(model.path) / artifact.FILENAME
    expected = model.info.metadata.get("sha256")
    if expected and file.is_file() and _sha256(file) != expected:
        raise CorruptArtifact(f"{model.tag}: {artifact.FILENAME} does not match its checksum",
                              detail={"hint": "the file was altered or damaged; re-import it"})
    return artifact.load(file)


def list_models() -> list[ModelInfo]:
    """Every workbench model in the store, newest first."""
    by_tag: dict[str, list[str]] = {}
    for alias, tag in aliases().items():
        by_tag.setdefault(tag, []).append(alias)
    out = []
    for model in bentoml.models.list():
        if model.info.labels.get("framework") != LABELS["framework"]:
            continue
        meta = dict(model.info.metadata)
        out.append(ModelInfo(
            tag=str(model.tag), name=model.tag.name, model=meta.get("model", ""),
            kind=meta.get("kind", ""), created=model.info.creation_time.isoformat(
                timespec="seconds"),
            diagnostics_ok=bool(meta.get("diagnostics_ok")),
            failures=tuple(meta.get("failures", [])),
            aliases=tuple(sorted(by_tag.get(str(model.tag), []))), metadata=meta))
    return sorted(out, key=lambda m: m.created, reverse=True)


def aliases() -> dict[str, str]:
    """Each alias and the tag it points at now."""
    return {a: e["history"][-1]["tag"] for a, e in _read_aliases().items() if e["history"]}


def alias_history(alias: str) -> list[dict[str, Any]]:
    """Where an alias pointed, oldest first (``tag``, ``at``, ``forced``, ``by``)."""
    return list(_read_aliases().get(alias, {}).get("history", []))


def set_alias(alias: str, ref: str, *, force: bool = False, by: str | None = None) -> str:
    """Point ``alias`` at a model; refuses one whose diagnostics failed unless ``force``.
    ``by`` (who moved it: ``dashboard:alice``, ``cli:bob``) is kept in the history.

    Returns the tag the alias now points at.
    """
    if not _ALIAS.match(alias):
        raise ConfigError(f"invalid alias {alias!r}",
                          detail={"expected": "lowercase letters, digits, '-' or '_', "
                                              "starting with a letter"})
    tag = resolve(ref)
    meta = bentoml.models.get(tag).info.metadata
    if not meta.get("diagnostics_ok") and not force:
        raise DiagnosticsRefused(
            f"refusing to point {alias!r} at {tag}: its diagnostics failed",
            detail={"failures": list(meta.get("failures", [])),
                    "hint": "refit with more samples, or force it (--force) if you accept it"})
    with _locked() as registry:
        entry = registry.setdefault(alias, {"history": []})
        if not entry["history"] or entry["history"][-1]["tag"] != tag:
            entry["history"].append({"tag": tag, "at": _now(), "forced": bool(force),
                                     "by": by})
    return tag


def rollback(alias: str, *, by: str | None = None) -> str:
    """Point ``alias`` back at its previous target; returns that tag. The undone entry is
    kept under ``rolled_back`` with who undid it (``by``)."""
    with _locked() as registry:
        history = registry.get(alias, {}).get("history", [])
        if not history:
            raise ModelNotFound(f"no alias {alias!r}", detail={"aliases": sorted(registry)})
        if len(history) < 2:
            raise ConfigError(f"alias {alias!r} has no earlier target to roll back to",
                              detail={"points at": history[-1]["tag"]})
        undone = history.pop()
        registry[alias].setdefault("rolled_back", []).append(
            undone | {"rolled_back_at": _now(), "rolled_back_by": by})
        return history[-1]["tag"]


def export(ref: str, url: str) -> str:
    """Export a model with BentoML's export (a folder, a file path, or an FS URL)."""
    return bentoml.models.export_model(resolve(ref), url)


def import_(url: str, *, exist_ok: bool = False) -> str:
    """Import a model exported by :func:`export`; returns its tag (checked on load).

    With ``exist_ok``, a model already in the store (a restarted server's) is not an error.
    Errors name the URL without its credentials or query string (:mod:`workbench.redact`).
    """
    from bentoml.exceptions import BentoMLException

    shown = redact.url(url)
    try:
        tag = str(bentoml.models.import_model(url).tag)
    except BentoMLException as exc:
        existing = re.search(r"Item '([^']+)' already exists", str(exc))
        if not existing:
            raise ArtifactError(f"cannot import a model from {shown!r}: "
                                f"{redact.text(str(exc))}") from None
        if not exist_ok:
            raise ConfigError(f"the model in {shown!r} is already in the store: "
                              f"{redact.text(str(exc))}") from None
        tag = existing.group(1)
    except FileNotFoundError:
        raise ModelNotFound(f"no exported model at {shown!r}") from None
    except Exception as exc:  # fsspec, tar and network errors: name the URL and the cause
        raise ArtifactError(f"cannot import a model from {shown!r}: "
                            f"{type(exc).__name__}: {redact.text(str(exc))}") from None
    get(tag)  # refuse silently broken imports early
    return tag


# -- the alias registry ----------------------------------------------------------------

def registry_file() -> Path:
    """The alias registry (replaced atomically on every change: watch its mtime)."""
    return home() / "workbench" / "aliases.json"


def _read_aliases() -> dict[str, Any]:
    file = registry_file()
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CorruptArtifact(f"alias registry {str(file)!r} is not valid JSON: {exc}") from exc


@contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    """Read-modify-write the registry under an exclusive lock; written atomically."""
    file = registry_file()
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        registry = _read_aliases()
        yield registry
        tmp = file.with_suffix(".tmp")
        tmp.write_text(json.dumps(registry, indent=2, sort_keys=True))
        os.replace(tmp, file)


def _model_name(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "posterior"
    return cleaned[:63]


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
