"""The posterior-predictive summary, compiled once per shape bucket.

For rows ``X`` and a posterior, each row gets the mean, standard deviation and a central
credible interval of its served quantity, computed over every posterior draw:

- ``binary``: the probability of the positive class (the last target name);
- ``multiclass``: the probability of the predicted class, plus every class's probability;
- ``regression``: the outcome itself (draws of the posterior predictive, noise included).

The whole summary (standardisation, the model's likelihood under every draw, moments and
quantiles) is one ``jax.jit`` call. Rows are padded to a small fixed set of bucket sizes
and larger inputs are cut into chunks, so after :meth:`Predictor.warmup` no input size
compiles again. A row's result does not depend on the other rows in its batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from workbench import compile_cache
from workbench.artifact import Posterior, safe_scale
from workbench.inputs import _is_checked, check_draws, check_interval_mass, validate_rows
from workbench.models import OBS_SITE, get_spec
from workbench.ood import Detector
from workbench.settings import load

DEFAULT_BUCKETS: tuple[int, ...] = (1, 4, 16, 64, 256)
DEFAULT_MASS = 0.9
MAX_RETURNED_DRAWS = 200


@dataclass(frozen=True)
class Prediction:
    """Per-row summaries (numpy arrays, one entry per input row)."""

    kind: str
    mean: np.ndarray
    std: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    interval_mass: float
    target_names: tuple[str, ...]
    probabilities: np.ndarray | None = None
    label: np.ndarray | None = None
    draws: np.ndarray | None = None
    distance: np.ndarray | None = None  # from the training inputs (workbench.ood)
    ood: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.mean)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-able dict per row: mean, std, interval (and probabilities, label, draws)."""
        columns: dict[str, list[Any]] = {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "interval": np.stack([self.lower, self.upper], axis=1).tolist(),
        }
        if self.probabilities is not None and self.label is not None:
            names = self.target_names
            columns["probabilities"] = [dict(zip(names, row, strict=True))
                                        for row in self.probabilities.tolist()]
            columns["label"] = [names[i] for i in self.label.tolist()]
        if self.distance is not None and self.ood is not None:
            columns["distance"] = self.distance.tolist()
            columns["ood"] = self.ood.tolist()
        if self.draws is not None:
            columns["draws"] = self.draws.tolist()
        keys = list(columns)
        return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]


class Predictor:
    """A posterior ready to serve: validation plus the bucketed, compiled summary.

    Parameters
    ----------
    posterior
        The fitted posterior; its model must be registered in this process.
    buckets
        Row counts compiled for; inputs are padded to the next bucket and inputs larger
        than the largest bucket are cut into chunks of that size.
    max_rows
        The most rows one call may carry (larger requests are refused with a clear error).
    seed
        Seeds the noise draws of regression models (fixed, so answers are reproducible).
    ood_rate
        The false-alarm rate of each row's ``ood`` flag (:mod:`workbench.ood`; 0: no flag;
        default: the ``WORKBENCH_OOD_RATE`` setting). Artifacts without a summary of their
        training inputs get no flag.
    """

    def __init__(self, posterior: Posterior, *, buckets: Sequence[int] = DEFAULT_BUCKETS,
                 max_rows: int = 10_000, seed: int = 0, ood_rate: float | None = None) -> None:
        compile_cache.enable()  # a restart loads the compiled buckets from disk
        self.posterior = posterior
        self.ood = Detector.from_summary(
            posterior.inputs, posterior.x_loc, posterior.x_scale,
            rate=load().ood_rate if ood_rate is None else ood_rate)
        self.spec = get_spec(posterior.model)
        self.buckets = tuple(sorted(set(int(b) for b in buckets)))
        if not self.buckets or self.buckets[0] < 1:
            raise ValueError(f"buckets must be positive row counts, got {buckets!r}")
        self.max_rows = int(max_rows)
        self.features = tuple(posterior.feature_names)
        self._feature_index = {name: i for i, name in enumerate(self.features)}
        self.compilations = 0
        n_draws = posterior.n_draws
        self._returned_draws = min(n_draws, MAX_RETURNED_DRAWS)
        self._args = (
            jax.device_put(posterior.flat_samples()),
            jnp.asarray(posterior.x_loc, jnp.float32),
            jnp.asarray(safe_scale(posterior.x_scale), jnp.float32),
            jnp.float32(posterior.y_loc),
            jnp.float32(posterior.y_scale),
            jax.random.split(jax.random.PRNGKey(seed), n_draws),
        )
        # XLA's sort on CPU is ~50x slower than numpy's SIMD sort (benchmarks/), so on
        # CPU the draws come back to numpy for the quantiles; elsewhere they stay on device.
        self._host_quantiles = self.device == "cpu"
        self._summary = jax.jit(self._build_summary())

    @property
    def kind(self) -> str:
        return self.posterior.kind

    @property
    def device(self) -> str:
        """The device the summary runs on (``cpu``, ``cuda:0``, ...)."""
        leaf = self._args[1]
        (dev,) = leaf.devices()
        return f"{dev.platform}:{dev.id}" if dev.platform != "cpu" else "cpu"

    def _build_summary(self) -> Any:
        model, options, kind = self.spec.fn, self.posterior.options, self.kind
        n_classes = len(self.posterior.target_names)
        returned = self._returned_draws
        host_quantiles = self._host_quantiles

        def site(params: Any, x_row: Any, key: Any) -> Any:
            seeded = handlers.seed(handlers.substitute(model, data=params), rng_seed=key)
            trace = handlers.trace(seeded).get_trace(x_row[None, :], None, **options)
            fn = trace[OBS_SITE]["fn"]
            if kind == "binary":
                return jnp.exp(fn.log_prob(jnp.ones((1,)))).reshape(())
            if kind == "multiclass":
                classes = jnp.arange(n_classes).reshape(n_classes, 1)
                return jnp.exp(fn.log_prob(classes)).reshape(n_classes)
            return trace[OBS_SITE]["value"].reshape(())

        per_draw = jax.vmap(jax.vmap(site, in_axes=(None, 0, None)), in_axes=(0, None, 0))

        def summary(samples, x_loc, x_scale, y_loc, y_scale, X, mass):
            self.compilations += 1  # runs only while tracing, i.e. once per compilation
            keys = self._args[5]
            values = per_draw(samples, (X - x_loc) / x_scale, keys)  # (draws, rows[, K])
            out: dict[str, Any] = {}
            if kind == "multiclass":
                probs = values.mean(axis=0)
                label = jnp.argmax(probs, axis=-1)
                values = jnp.take_along_axis(values, label[None, :, None], axis=-1)[..., 0]
                out |= {"probabilities": probs, "label": label}
            elif kind == "regression":
                values = values * y_scale + y_loc
            if kind == "binary":
                p1 = values.mean(axis=0)
                out |= {"probabilities": jnp.stack([1.0 - p1, p1], axis=-1),
                        "label": (p1 >= 0.5).astype(jnp.int32)}
            out |= {"mean": values.mean(axis=0), "std": values.std(axis=0)}
            if host_quantiles:
                return out | {"values": values.T}  # (rows, draws), sorted by numpy
            lower, upper = jnp.quantile(values, _probs(mass), axis=0)
            return out | {"lower": lower, "upper": upper, "draws": values[:returned].T}

        return summary

    # -- input -------------------------------------------------------------------------

    def validate(self, instances: Any) -> np.ndarray:
        """Rows as lists (in feature order) or dicts keyed by feature name → float32 array.

        Raises
        ------
        InputError
            Saying which row and value was wrong and what was expected.
        """
        return validate_rows(instances, self.features, max_rows=self.max_rows,
                             index=self._feature_index)

    # -- prediction --------------------------------------------------------------------

    def predict(self, instances: Any, *, interval_mass: float = DEFAULT_MASS,
                draws: int = 0) -> Prediction:
        """Summarise the posterior predictive for ``instances`` (validated first)."""
        X = instances if _is_checked(instances, len(self.features)) else self.validate(instances)
        mass = check_interval_mass(interval_mass)
        draws = check_draws(draws, self._returned_draws)
        return self.prediction(self.summarize(X, mass), mass, draws)

    def summarize(self, X: np.ndarray, mass: float) -> dict[str, np.ndarray]:
        """The raw per-row arrays for validated rows ``X`` (what batching stacks and splits)."""
        parts = [self._run(chunk, mass) for chunk in _chunks(X, self.buckets[-1])]
        out = parts[0] if len(parts) == 1 else {
            k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if self.ood is not None:
            out["distance"] = self.ood.distance(X)
        return out

    def prediction(self, arrays: dict[str, np.ndarray], mass: float, draws: int) -> Prediction:
        """A :class:`Prediction` from :meth:`summarize`'s arrays."""
        return Prediction(
            kind=self.kind, mean=arrays["mean"], std=arrays["std"], lower=arrays["lower"],
            upper=arrays["upper"], interval_mass=mass, target_names=self.posterior.target_names,
            probabilities=arrays.get("probabilities"), label=arrays.get("label"),
            draws=arrays["draws"][:, :draws] if draws else None,
            distance=arrays.get("distance"), ood=None if self.ood is None or
            "distance" not in arrays else self.ood.flags(arrays["distance"]),
        )

    @property
    def max_draws(self) -> int:
        """The most draws per row a prediction can return."""
        return self._returned_draws

    def _run(self, X: np.ndarray, mass: float) -> dict[str, np.ndarray]:
        n = X.shape[0]
        bucket = next(b for b in self.buckets if b >= n)
        padded = X if n == bucket else np.concatenate(
            [X, np.zeros((bucket - n, X.shape[1]), X.dtype)])
        out = {k: np.asarray(v)[:n] for k, v in
               self._summary(*self._args[:5], padded, np.float32(mass)).items()}
        if self._host_quantiles:
            values = out.pop("values")
            out["lower"], out["upper"] = sorted_quantiles(np.sort(values, axis=1), _probs(mass))
            out["draws"] = values[:, :self._returned_draws]
        return out

    def warmup(self) -> float:
        """Compile every bucket; returns the seconds it took."""
        start = time.perf_counter()
        zeros = np.zeros((self.buckets[-1], len(self.features)), np.float32)
        for bucket in self.buckets:
            jax.block_until_ready(self._summary(*self._args[:5], zeros[:bucket],
                                                np.float32(DEFAULT_MASS)))
        return time.perf_counter() - start


def _probs(mass: Any) -> Any:
    xp = np if isinstance(mass, float) else jnp
    return xp.stack([xp.asarray((1.0 - mass) / 2.0), xp.asarray((1.0 + mass) / 2.0)])


def sorted_quantiles(sorted_rows: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, ...]:
    """Quantiles ``q`` of each row of an already sorted ``(rows, draws)`` array, with the
    linear interpolation of ``numpy.quantile``/``jnp.quantile`` (their default method)."""
    n = sorted_rows.shape[1]
    pos = np.asarray(q, np.float64) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo).astype(sorted_rows.dtype)
    below, above = sorted_rows[:, lo], sorted_rows[:, hi]
    out = below + frac * (above - below)
    return tuple(out[:, i] for i in range(len(q)))


def predict(posterior: Posterior, instances: Any, *, interval_mass: float = DEFAULT_MASS,
            draws: int = 0) -> Prediction:
    """One-off prediction (builds a :class:`Predictor`; keep one around to serve)."""
    return Predictor(posterior).predict(instances, interval_mass=interval_mass, draws=draws)


def _chunks(X: np.ndarray, size: int) -> list[np.ndarray]:
    return [X[i:i + size] for i in range(0, max(len(X), 1), size)]


__all__ = ["Prediction", "Predictor", "check_draws", "check_interval_mass", "predict",
           "validate_rows", "DEFAULT_BUCKETS",
           "DEFAULT_MASS"]
