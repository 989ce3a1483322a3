"""Fit a registered model with NUTS and describe the result.

:func:`fit` standardises the features (and a regression target) on the training rows,
runs NUTS (chains in parallel where there are enough devices, otherwise one after the
other), computes diagnostics with ArviZ and scores on held-out rows, and returns a
:class:`~workbench.artifact.Posterior` ready to save. Failing diagnostics raise a
:class:`DiagnosticsWarning` (never silence) and are recorded in the artifact.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import jax
import numpy as np

from workbench import __version__, ood
from workbench.artifact import Posterior
from workbench.datasets import Dataset, split
from workbench.errors import ConfigError, DatasetError
from workbench.models import OBS_SITE, ModelSpec, get_spec

THRESHOLDS = {"max_rhat": 1.01, "min_ess": 400.0, "divergences": 0}


class DiagnosticsWarning(UserWarning):
    """The sampler's diagnostics failed a threshold: the posterior may not be trustworthy."""


@dataclass(frozen=True)
class SamplerConfig:
    """NUTS settings; every field is stored in the artifact."""

    warmup: int = 500
    samples: int = 1000
    chains: int = 2
    seed: int = 0
    target_accept: float = 0.8
    max_tree_depth: int = 10
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        for name in ("warmup", "samples", "chains"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0.0 < self.target_accept < 1.0:
            raise ConfigError(f"target_accept must be in (0, 1), got {self.target_accept}")


def fit(model: str, data: Dataset, *, config: SamplerConfig | None = None,
        name: str | None = None, options: dict[str, Any] | None = None,
        progress: bool | None = None) -> Posterior:
    """Fit ``model`` (a registered name) to ``data``; returns the posterior.

    Parameters
    ----------
    model
        A registered model: ``logistic``, ``softmax``, ``linear`` or your own.
    data
        From :func:`workbench.datasets.load`; a held-out fraction is kept for scoring.
    config
        Sampler settings (warmup, samples, chains, seed, ...).
    name
        The model's name in the store (default: ``<model>-<dataset>``).
    options
        Model options merged over the model's defaults (e.g. ``{"robust": True}``).
    progress
        Show NUTS progress bars (default: when standard error is a terminal).
    """
    from numpyro.infer import MCMC, NUTS

    config = config or SamplerConfig()
    spec = get_spec(model)
    _check_target(spec, data)
    train, test = split(data, test_fraction=config.test_fraction, seed=config.seed)
    x_loc, x_scale = train.X.mean(axis=0), train.X.std(axis=0)
    x_scale = np.where(x_scale > 0, x_scale, 1.0)
    y_loc, y_scale = 0.0, 1.0
    if spec.kind == "regression" and spec.standardize_target:
        y_loc, y_scale = float(train.y.mean()), float(train.y.std() or 1.0)
    opts = spec.options(options)
    if spec.kind == "multiclass":
        opts["n_classes"] = len(data.target_names)

    Xs = ((train.X - x_loc) / x_scale).astype(np.float32)
    ys = _encode(spec, train.y, y_loc, y_scale)
    parallel = jax.local_device_count() >= config.chains > 1
    mcmc = MCMC(
        NUTS(partial(spec.fn, **opts), target_accept_prob=config.target_accept,
             max_tree_depth=config.max_tree_depth),
        num_warmup=config.warmup, num_samples=config.samples, num_chains=config.chains,
        chain_method="parallel" if parallel else "sequential",
        progress_bar=sys.stderr.isatty() if progress is None else progress,
    )
    mcmc.run(jax.random.PRNGKey(config.seed), Xs, ys, extra_fields=("diverging",))
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    diverging = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])

    posterior = Posterior(
        model=spec.name, kind=spec.kind, options=opts, feature_names=data.feature_names,
        target_names=data.target_names, samples=samples, x_loc=x_loc, x_scale=x_scale,
        y_loc=y_loc, y_scale=y_scale, name=name or f"{spec.name}-{data.name}",
        sampler=asdict(config) | {"chain_method": "parallel" if parallel else "sequential",
                                  "algorithm": "NUTS"},
        diagnostics=diagnose(samples, diverging),
        data={"dataset": data.name, "fingerprint": data.fingerprint(),
              "rows_train": len(train), "rows_test": len(test)},
        sample_stats={"diverging": diverging},
        workbench_version=__version__, inputs=ood.summarize(Xs, seed=config.seed),
    )
    posterior = _with_scores(posterior, test)
    warn_if_failing(posterior.diagnostics)
    return posterior


def diagnose(samples: dict[str, np.ndarray], diverging: np.ndarray) -> dict[str, Any]:
    """Max R-hat, min bulk and tail ESS over every parameter, divergences, and a verdict."""
    import arviz as az

    idata = az.from_dict(posterior=samples)
    rhat = az.rhat(idata)
    ess_bulk = az.ess(idata, method="bulk")
    ess_tail = az.ess(idata, method="tail")

    def extreme(ds: Any, fn: Any) -> float:
        values = np.concatenate([np.ravel(v.values) for v in ds.data_vars.values()])
        values = values[np.isfinite(values)]
        return float(fn(values)) if values.size else float("nan")

    d = {
        "max_rhat": extreme(rhat, np.max),
        "min_ess_bulk": extreme(ess_bulk, np.min),
        "min_ess_tail": extreme(ess_tail, np.min),
        "divergences": int(np.sum(diverging)),
        "draws": int(diverging.size),
        "thresholds": dict(THRESHOLDS),
    }
    d["failures"] = failures(d)
    d["ok"] = not d["failures"]
    return d


def failures(d: dict[str, Any]) -> list[str]:
    """The diagnostics that fail their thresholds, each said in words."""
    out = []
    if d["max_rhat"] != d["max_rhat"]:  # NaN: a single chain has no between-chain variance
        out.append("R-hat needs at least 2 chains")
    elif not d["max_rhat"] <= THRESHOLDS["max_rhat"]:
        out.append(f"max R-hat {d['max_rhat']:.3f} > {THRESHOLDS['max_rhat']}")
    for key, label in (("min_ess_bulk", "bulk"), ("min_ess_tail", "tail")):
        if not d[key] >= THRESHOLDS["min_ess"]:
            out.append(f"min {label} ESS {d[key]:.0f} < {THRESHOLDS['min_ess']:.0f}")
    if d["divergences"] > THRESHOLDS["divergences"]:
        out.append(f"{d['divergences']} divergent transitions")
    return out


def warn_if_failing(diagnostics: dict[str, Any]) -> None:
    if diagnostics.get("failures"):
        warnings.warn(
            "posterior diagnostics failed: " + "; ".join(diagnostics["failures"])
            + " (run more warmup/samples or chains, or reparameterise)",
            DiagnosticsWarning, stacklevel=3)


def _check_target(spec: ModelSpec, data: Dataset) -> None:
    n_classes = len(data.target_names)
    if spec.kind == "regression" and data.categorical:
        raise DatasetError(f"model {spec.name!r} is a regression; dataset {data.name!r} has a "
                           f"categorical target with classes {list(data.target_names)}")
    if spec.kind != "regression" and not data.categorical:
        raise DatasetError(f"model {spec.name!r} needs a categorical target; dataset "
                           f"{data.name!r} has a continuous one",
                           detail={"hint": "use the 'linear' model for a continuous target"})
    if spec.kind == "binary" and n_classes != 2:
        raise DatasetError(f"model {spec.name!r} is binary; dataset {data.name!r} has "
                           f"{n_classes} classes",
                           detail={"hint": "use the 'softmax' model for several classes"})
    if len(data) < 10:
        raise DatasetError(f"dataset {data.name!r} has {len(data)} rows; need at least 10")


def _encode(spec: ModelSpec, y: np.ndarray, y_loc: float, y_scale: float) -> np.ndarray:
    if spec.kind == "regression":
        return ((y - y_loc) / y_scale).astype(np.float32)
    return y.astype(np.int32)


def _with_scores(posterior: Posterior, test: Dataset) -> Posterior:
    from dataclasses import replace

    return replace(posterior, scores=score(posterior, test.X, test.y))


def score(posterior: Posterior, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Held-out scores of the served predictions.

    Classifiers: accuracy, log predictive density, the expected calibration error ``ece``
    and its ``reliability`` table (10 equal-width bins; P(y=1) for a binary model, the
    predicted class's probability for several classes:
    :func:`workbench.calibration.predicted_against_observed`). Regression: RMSE, log
    predictive density and ``coverage_90``, the share of outcomes inside their 90% interval.
    """
    from workbench import calibration
    from workbench.predict import Predictor

    if len(y) == 0:
        return {}
    pred = Predictor(posterior).predict(np.asarray(X, np.float32), interval_mass=0.9)
    lpd = float(np.mean(pointwise_lpd(posterior, X, y)))
    if posterior.kind == "regression":
        return {
            "rows": int(len(y)),
            "rmse": float(np.sqrt(np.mean((pred.mean - y) ** 2))),
            "lpd": lpd,
            "coverage_90": float(np.mean((y >= pred.lower) & (y <= pred.upper))),
        }
    table = calibration.reliability_bins(*calibration.predicted_against_observed(
        posterior.kind, pred.probabilities, y))
    return {"rows": int(len(y)), "accuracy": float(np.mean(pred.label == y)), "lpd": lpd,
            "ece": calibration.calibration_error(table)[0], "reliability": table}


def log_likelihood(posterior: Posterior, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Log-likelihood of each row under each draw, shape ``(chains, draws, rows)``, in
    float64 (float32 rounds the near-certain rows of a well-separated classifier to exactly
    0, which breaks PSIS-LOO). A regression's is in the target's original units."""
    from numpyro.infer.util import log_likelihood as _numpyro_log_likelihood

    spec = get_spec(posterior.model)
    Xs = posterior.standardize(X)
    ys = (((np.asarray(y, np.float64) - posterior.y_loc) / posterior.y_scale)
          if spec.kind == "regression" else np.asarray(y).astype(np.int32))
    with jax.enable_x64(True):
        ll = _numpyro_log_likelihood(
            partial(spec.fn, **posterior.options),
            {k: np.asarray(v, np.float64) for k, v in posterior.samples.items()},
            Xs, ys, batch_ndims=2)[OBS_SITE]
        ll = np.asarray(ll, np.float64)
    if posterior.kind == "regression":
        ll = ll - np.log(posterior.y_scale)
    return ll


def pointwise_lpd(posterior: Posterior, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row log posterior predictive density, in the target's original units."""
    from scipy.special import logsumexp

    ll = log_likelihood(posterior, X, y)
    ll = ll.reshape(-1, ll.shape[-1])
    return logsumexp(ll, axis=0) - np.log(ll.shape[0])
