"""The posterior artifact: fitted draws plus everything needed to serve them.

Saved as ArviZ ``InferenceData`` in netCDF (HDF5): a data format, so loading never
executes code (no pickle anywhere). The workbench's attributes live as one JSON string
in the posterior group's ``workbench`` attribute; the feature standardisation lives in
``constant_data``. Loading checks the format, the model id (a hash of the configuration,
as pymc-marketing's ``model_builder`` does) and a checksum of the draws, and raises
:class:`~workbench.errors.CorruptArtifact` or :class:`~workbench.errors.ArtifactMismatch`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from workbench.errors import ArtifactMismatch, CorruptArtifact

FORMAT = "workbench.posterior/1"
INPUT_DIMS = {"loc": ["feature"], "factor": ["feature", "feature_"], "held_out": ["held_out"],
              "edges": ["feature", "edge"], "shares": ["feature", "bin"]}
FILENAME = "posterior.nc"


@dataclass(frozen=True)
class Posterior:
    """A fitted posterior and its self-description.

    ``samples`` maps each latent site to draws shaped ``(chains, draws, *site_shape)``.
    Features are standardised as ``(x - x_loc) / x_scale`` before the model sees them; a
    regression target is served as ``y * y_scale + y_loc``.
    """

    model: str
    kind: str
    options: dict[str, Any]
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    samples: dict[str, np.ndarray]
    x_loc: np.ndarray
    x_scale: np.ndarray
    y_loc: float = 0.0
    y_scale: float = 1.0
    name: str = ""
    sampler: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    sample_stats: dict[str, np.ndarray] = field(default_factory=dict)
    workbench_version: str = ""
    created: str = ""
    # The feature service it was trained from (workbench.features.FeatureSpec.to_dict()):
    # empty when trained on raw features.
    features: dict[str, Any] = field(default_factory=dict)
    # The training inputs' summary (workbench.ood.summarize): empty for older artifacts.
    inputs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_draws(self) -> int:
        """Total draws, chains flattened."""
        first = next(iter(self.samples.values()))
        return int(first.shape[0] * first.shape[1])

    @property
    def model_id(self) -> str:
        """A hash of what defines the model: name, kind, options, features, targets."""
        return model_id(self.model, self.kind, self.options, self.feature_names,
                        self.target_names)

    def standardize(self, X: Any) -> np.ndarray:
        """Raw rows as the model sees them, ``(x - x_loc) / x_scale`` in float64 (a zero
        or non-finite scale: 1, as :func:`safe_scale`)."""
        return (np.asarray(X, np.float64) - self.x_loc) / safe_scale(self.x_scale)

    def flat_samples(self, dtype: Any = np.float32) -> dict[str, np.ndarray]:
        """Draws with chains flattened: ``(chains * draws, *site_shape)``."""
        return {k: np.asarray(v, dtype).reshape((-1, *v.shape[2:]))
                for k, v in self.samples.items()}

    def attrs(self) -> dict[str, Any]:
        """The JSON-able self-description stored with the draws."""
        keep = ("model", "kind", "options", "feature_names", "target_names", "y_loc",
                "y_scale", "name", "sampler", "diagnostics", "scores", "data",
                "workbench_version", "created", "features")
        d = {k: v for k, v in asdict(self).items() if k in keep}
        return {"format": FORMAT, "model_id": self.model_id,
                "draws_sha256": _draws_digest(self.samples)} | d

    def to_inference_data(self) -> Any:
        """This posterior as ArviZ ``InferenceData`` (for plots, diagnostics, LOO)."""
        import arviz as az

        from workbench.models import registered

        spec = registered().get(self.model)
        dims, coords = {}, {}
        labels = {"feature": list(self.feature_names)}
        for site, names in (spec.dims if spec else {}).items():
            if site not in self.samples:
                continue
            shape = self.samples[site].shape[2:]
            site_dims = []
            for dim, size in zip(names, shape, strict=False):
                values = _labels(dim, size, labels, self.target_names)
                site_dims.append(dim if values else f"{site}_{dim}")
                if values:
                    coords[dim] = values
            dims[site] = site_dims
        idata = az.from_dict(
            posterior={k: np.asarray(v) for k, v in self.samples.items()},
            sample_stats={k: np.asarray(v) for k, v in self.sample_stats.items()} or None,
            constant_data={"x_loc": self.x_loc, "x_scale": self.x_scale} | {
                f"inputs_{k}": v for k, v in self.inputs.items()},
            coords=coords | {"feature": list(self.feature_names)},
            dims=dims | {"x_loc": ["feature"], "x_scale": ["feature"]} | {
                f"inputs_{k}": INPUT_DIMS.get(k, []) for k in self.inputs},
        )
        idata.posterior.attrs["workbench"] = json.dumps(self.attrs(), default=_json_default)
        return idata


def safe_scale(scale: Any) -> np.ndarray:
    """A feature scale to divide by: a zero or non-finite one (a constant feature) as 1."""
    scale = np.asarray(scale, np.float64)
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def model_id(model: str, kind: str, options: dict[str, Any], features: tuple[str, ...],
             targets: tuple[str, ...]) -> str:
    blob = json.dumps([FORMAT, model, kind, options, list(features), list(targets)],
                      sort_keys=True, default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save(posterior: Posterior, path: str | Path) -> Path:
    """Write ``posterior`` as netCDF to ``path`` (a file, or a folder for ``posterior.nc``)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    stamped = posterior if posterior.created else replace(
        posterior, created=datetime.now(UTC).isoformat(timespec="seconds"))
    stamped.to_inference_data().to_netcdf(str(path), engine="h5netcdf")
    return path


def load(path: str | Path, *, model: str | None = None, kind: str | None = None) -> Posterior:
    """Read a posterior saved by :func:`save`, checking that it is intact and as expected.

    Raises
    ------
    CorruptArtifact
        The file is missing, unreadable, or its draws do not match their checksum.
    ArtifactMismatch
        Not a workbench posterior of this format, altered attributes, or not the
        ``model``/``kind`` asked for.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CorruptArtifact(f"no posterior artifact at {str(path)!r}")
    return _read(path, repr(str(path)), model=model, kind=kind)


def from_bytes(payload: bytes, *, model: str | None = None,
               kind: str | None = None) -> Posterior:
    """:func:`load` from the file's bytes (an artifact shipped to a Ray actor or a Spark
    executor), checked the same way, without a temporary file."""
    import io

    return _read(io.BytesIO(payload), "the artifact's bytes", model=model, kind=kind)


def _read(source: Any, where: str, *, model: str | None, kind: str | None) -> Posterior:
    try:
        # Read with h5py alone: the serving path needs neither ArviZ nor xarray (and their
        # seconds of import time); the file is plain netCDF-4/HDF5.
        with h5py.File(source, "r") as f:
            attrs = json.loads(f["posterior"].attrs["workbench"])
            samples = _variables(f["posterior"])
            stats = _variables(f["sample_stats"]) if "sample_stats" in f else {}
            constant = _variables(f["constant_data"])
        x_loc = np.asarray(constant["x_loc"], np.float64)
        x_scale = np.asarray(constant["x_scale"], np.float64)
    except KeyError as exc:
        raise ArtifactMismatch(
            f"{where} is not a workbench posterior (missing {exc})",
            detail={"expected format": FORMAT}) from None
    except Exception as exc:  # h5py raises many types for a damaged file
        raise CorruptArtifact(f"cannot read posterior artifact {where}: {exc}") from exc

    if attrs.get("format") != FORMAT:
        raise ArtifactMismatch(f"unsupported artifact format {attrs.get('format')!r}",
                               detail={"expected": FORMAT})
    if _draws_digest(samples) != attrs.get("draws_sha256"):
        raise CorruptArtifact(f"the draws in {where} do not match their checksum",
                              detail={"hint": "the file was altered or damaged; re-export it"})
    fields = {k: attrs[k] for k in (
        "model", "kind", "options", "y_loc", "y_scale", "name", "sampler", "diagnostics",
        "scores", "data", "workbench_version", "created", "features") if k in attrs}
    posterior = Posterior(
        feature_names=tuple(attrs["feature_names"]), target_names=tuple(attrs["target_names"]),
        samples=samples, sample_stats=stats, x_loc=x_loc, x_scale=x_scale,
        inputs={k.removeprefix("inputs_"): np.asarray(v, np.float64)
                for k, v in constant.items() if k.startswith("inputs_")}, **fields)
    if posterior.model_id != attrs.get("model_id"):
        raise ArtifactMismatch(
            f"the attributes of {where} do not match its model id",
            detail={"stored": attrs.get("model_id"), "recomputed": posterior.model_id})
    if model is not None and posterior.model != model:
        raise ArtifactMismatch(f"expected a {model!r} posterior, found {posterior.model!r}")
    if kind is not None and posterior.kind != kind:
        raise ArtifactMismatch(f"expected a {kind} model, found {posterior.kind}")
    if len(x_loc) != len(posterior.feature_names):
        raise ArtifactMismatch("feature standardisation does not match the feature names",
                               detail={"features": len(posterior.feature_names),
                                       "x_loc": len(x_loc)})
    return posterior


def _variables(group: h5py.Group) -> dict[str, np.ndarray]:
    """A netCDF group's data variables (its dimension-scale coordinates left out)."""
    out = {}
    for name, item in group.items():
        if not isinstance(item, h5py.Dataset) or item.attrs.get("CLASS") == b"DIMENSION_SCALE":
            continue
        value = item[()]
        out[name] = value.astype(bool) if item.attrs.get("dtype") == "bool" else value
    return out


def _draws_digest(samples: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(samples):
        value = np.ascontiguousarray(samples[key])
        h.update(key.encode())
        h.update(str(value.dtype).encode() + str(value.shape).encode())
        h.update(value.tobytes())
    return h.hexdigest()


def _labels(dim: str, size: int, labels: dict[str, list[str]],
            targets: tuple[str, ...]) -> list[str] | None:
    if dim == "feature" and size == len(labels["feature"]):
        return labels["feature"]
    if dim == "class" and size == len(targets) - 1:  # reference-coded classes
        return list(targets[1:])
    if dim == "class" and size == len(targets):
        return list(targets)
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
