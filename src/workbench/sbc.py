"""Simulation-based calibration of a registered model and its sampler (Talts et al. 2018).

Draw parameters and a dataset from the model's prior predictive (the model function itself
with ``y=None``) on a fixed synthetic design, fit the dataset with NUTS, and rank each true
scalar parameter among its posterior draws. When the model is fitted correctly, each rank
is uniform on ``0..L`` (``L`` draws) over the prior; a chi-square test over rank bins per
parameter, Bonferroni-corrected over the parameters, says when it is not. A ∪-shaped
histogram means posteriors too narrow, ∩ too wide, a slope a bias.

:func:`check` does it all for a registered model (:func:`design`, :func:`simulate`,
:func:`posterior_draws`: every simulation fitted by NUTS in one program, compiled once
per model; :func:`ranks`, :func:`uniformity`); :func:`figure` draws the histograms.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from workbench import nuts
from workbench.errors import ConfigError
from workbench.models import OBS_SITE, get_spec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The shipped models and options that ``make test`` and ``make bench`` calibrate.
SHIPPED: tuple[tuple[str, dict[str, Any]], ...] = (
    ("logistic", {}), ("softmax", {}), ("linear", {}), ("linear", {"robust": True}))


@dataclass(frozen=True)
class SBCConfig:
    """Settings of a calibration run; every field is reported with its result.

    ``draws`` + 1 (the values a rank takes) should be a multiple of ``bins``; ``bins``
    defaults to ``simulations // 10`` (at least 2, at most 20), so each bin expects at
    least ten ranks.
    """

    simulations: int = 200
    rows: int = 30
    features: int = 3
    classes: int = 3
    warmup: int = 200
    draws: int = 99
    thin: int = 3
    bins: int | None = None
    alpha: float = 0.01
    batch: int = 100
    target_accept: float = 0.8
    max_tree_depth: int = 8

    def __post_init__(self) -> None:
        for name in ("simulations", "rows", "features", "warmup", "draws", "thin", "batch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.simulations < 20:
            raise ConfigError(f"simulations must be at least 20, got {self.simulations}",
                              detail={"hint": "a uniformity test needs ranks in every bin"})
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha}")

    @property
    def n_bins(self) -> int:
        return self.bins or max(2, min(20, self.simulations // 10, self.draws + 1))


@dataclass(frozen=True)
class Calibration:
    """The result of :func:`check`: ranks and p-values per scalar parameter."""

    model: str
    options: dict[str, Any]
    config: SBCConfig
    ranks: dict[str, np.ndarray]
    p_values: dict[str, float]
    divergences: int = 0
    seconds: float = 0.0
    adjusted: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        m = len(self.p_values)
        object.__setattr__(self, "adjusted",
                           {k: min(1.0, p * m) for k, p in self.p_values.items()})

    @property
    def passed(self) -> bool:
        """No parameter's Bonferroni-adjusted p-value is below ``alpha``."""
        return all(p >= self.config.alpha for p in self.adjusted.values())

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "options": self.options, "config": asdict(self.config),
                "bins": self.config.n_bins, "passed": self.passed,
                "divergences": self.divergences, "seconds": round(self.seconds, 2),
                "p_values": self.p_values, "adjusted_p_values": self.adjusted,
                "ranks": {k: v.tolist() for k, v in self.ranks.items()}}


def design(rng_key: jax.Array, rows: int, features: int) -> np.ndarray:
    """A standardised synthetic design (each column mean 0, std 1), as models see features."""
    X = np.asarray(jax.random.normal(rng_key, (rows, features)))
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32)


def latent_sites(model: Callable[..., None], X: np.ndarray) -> list[str]:
    """The names of ``model``'s continuous latent sample sites (``obs`` left out)."""
    from numpyro import handlers

    found: dict[str, bool] = {}

    def probe(key: jax.Array) -> int:
        tr = handlers.trace(handlers.seed(model, key)).get_trace(X)
        found.update({k: s["fn"].support.is_discrete for k, s in tr.items()
                      if s["type"] == "sample" and k != OBS_SITE and not s["is_observed"]})
        return 0

    jax.eval_shape(probe, jax.random.PRNGKey(0))  # traced, never run
    if any(found.values()):
        raise ConfigError(f"NUTS cannot fit the discrete latent site(s) "
                          f"{[k for k, d in found.items() if d]}",
                          detail={"hint": "marginalise them out of the model"})
    return list(found)


def simulate(rng_key: jax.Array, model: Callable[..., None], X: np.ndarray,
             n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``n`` draws from the prior predictive: the true parameters by site, and the
    outcomes ``(n, rows)``."""
    from numpyro import handlers

    sites = [*latent_sites(model, X), OBS_SITE]

    def one(key: jax.Array) -> dict[str, jax.Array]:
        tr = handlers.trace(handlers.seed(model, key)).get_trace(X)
        return {k: tr[k]["value"] for k in sites}

    out = jax.jit(jax.vmap(one))(jax.random.split(rng_key, n))
    return {k: np.asarray(out[k]) for k in sites[:-1]}, np.asarray(out[OBS_SITE])


_RUNNERS: dict[tuple[Any, ...], Callable[..., Any]] = {}


def _runner(model: Callable[..., None], key: tuple[Any, ...],
            config: SBCConfig) -> Callable[..., Any]:
    """A jitted ``(keys, X, ys) -> (draws, divergences)`` over a batch of datasets, kept
    under ``key`` (the most recent few)."""
    if key in _RUNNERS:
        return _RUNNERS[key]
    one = nuts.chain(model, warmup=config.warmup, samples=config.draws, thin=config.thin,
                     target_accept=config.target_accept,
                     max_tree_depth=config.max_tree_depth)

    def fit(rng_key: jax.Array, X: jax.Array, y: jax.Array) -> tuple[Any, jax.Array]:
        draws, diverging = one(rng_key, X, y)
        return draws, diverging.sum()

    # lax.map, not vmap: batching NUTS's while loops and conds cost several times more to
    # trace and compile (and to run: every chain waits for the longest tree) than it saved
    run = jax.jit(lambda keys, X, ys: jax.lax.map(lambda a: fit(a[0], X, a[1]), (keys, ys)))
    while len(_RUNNERS) >= 16:
        del _RUNNERS[next(iter(_RUNNERS))]
    _RUNNERS[key] = run
    return run


def posterior_draws(rng_key: jax.Array, model: Callable[..., None], X: np.ndarray,
                    ys: np.ndarray, config: SBCConfig, *,
                    progress: Callable[[int, int], None] | None = None,
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fit each dataset of ``ys`` with one NUTS chain: ``config.draws`` draws kept, one
    every ``config.thin`` after ``config.warmup`` warmup steps.

    Datasets are fitted one after another, ``config.batch`` per call of one program (the
    last batch padded), compiled once per model (a function, or a ``partial`` of one with
    the same arguments) and shapes. ``progress(done, total)`` is called after each batch.

    Returns
    -------
    draws, divergences
        Constrained draws by site, each ``(len(ys), draws, *shape)``, and the number of
        divergent transitions after warmup per dataset.
    """
    n = len(ys)
    batch = min(config.batch, n)
    same = (model.func, model.args, tuple(sorted((k, repr(v)) for k, v in
                                              model.keywords.items()))
            ) if isinstance(model, partial) else model
    key = (same, X.shape, ys.shape[1:], str(ys.dtype), batch, config.warmup, config.draws,
           config.thin, config.target_accept, config.max_tree_depth)
    run = _runner(model, key, config)
    keys = jax.random.split(rng_key, n)
    parts, divergent = [], []
    for start in range(0, n, batch):
        idx = np.minimum(np.arange(start, start + batch), n - 1)
        draws, div = run(keys[idx], jnp.asarray(X), jnp.asarray(ys[idx]))
        kept = min(batch, n - start)
        parts.append({k: np.asarray(v)[:kept] for k, v in draws.items()})
        divergent.append(np.asarray(div)[:kept])
        if progress is not None:
            progress(start + kept, n)
    return ({k: np.concatenate([p[k] for p in parts]) for k in parts[0]},
            np.concatenate(divergent))


def ranks(truth: Mapping[str, np.ndarray], draws: Mapping[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    """Per scalar parameter (``coef[1]``, ``coef[0,1]``...), the rank of each simulation's
    true value among its posterior draws: how many draws are below it, in ``0..L``."""
    out: dict[str, np.ndarray] = {}
    for site, true in truth.items():
        below = (draws[site] < true[:, None]).sum(axis=1)
        for index in np.ndindex(*below.shape[1:]):  # () once for a scalar site
            name = f"{site}[{','.join(map(str, index))}]" if index else site
            out[name] = below[(slice(None), *index)]
    return out


def bin_of(rank: np.ndarray, draws: int, bins: int) -> np.ndarray:
    """The bin of each rank: ``0..draws`` cut into ``bins`` contiguous bins."""
    return (np.asarray(rank) * bins) // (draws + 1)


def uniformity(rank_by_param: Mapping[str, np.ndarray], draws: int,
               bins: int) -> dict[str, float]:
    """Chi-square p-value per parameter that its ranks are uniform on ``0..draws``, over
    ``bins`` bins (each bin's expected count from the rank values it holds)."""
    from scipy.stats import chisquare

    width = np.bincount(bin_of(np.arange(draws + 1), draws, bins), minlength=bins)
    out = {}
    for name, rank in rank_by_param.items():
        counts = np.bincount(bin_of(rank, draws, bins), minlength=bins)
        expected = width / width.sum() * counts.sum()
        out[name] = float(chisquare(counts, expected).pvalue)
    return out


def model_options(name: str, options: Mapping[str, Any] | None,
                  config: SBCConfig) -> dict[str, Any]:
    """``name``'s options for a calibration run (``n_classes`` for a multiclass model)."""
    spec = get_spec(name)
    opts = spec.options(options)
    if spec.kind == "multiclass":
        opts.setdefault("n_classes", config.classes)
    return opts


def check(rng_key: jax.Array, model: str, *, options: Mapping[str, Any] | None = None,
          config: SBCConfig | None = None,
          progress: Callable[[int, int], None] | None = None) -> Calibration:
    """Simulation-based calibration of the registered ``model``.

    Parameters
    ----------
    rng_key
        Split into the design's, the simulations' and the fits' keys.
    model
        A registered model name (``logistic``, ``softmax``, ``linear`` or your own).
    options
        Model options merged over its defaults (``{"robust": True}``).
    config
        Simulations, design size, sampler settings, the test's level.
    progress
        Called with ``(fitted, total)`` after each batch of fits.
    """
    config = config or SBCConfig()
    started = time.perf_counter()
    spec = get_spec(model)
    opts = model_options(model, options, config)
    fn = partial(spec.fn, **opts)
    design_key, sim_key, fit_key = jax.random.split(rng_key, 3)
    X = design(design_key, config.rows, config.features)
    truth, ys = simulate(sim_key, fn, X, config.simulations)
    draws, divergent = posterior_draws(fit_key, fn, X, ys, config, progress=progress)
    r = ranks(truth, draws)
    return Calibration(model=model, options=opts, config=config, ranks=r,
                       p_values=uniformity(r, config.draws, config.n_bins),
                       divergences=int(divergent.sum()),
                       seconds=time.perf_counter() - started)


def figure(result: Calibration, *, columns: int = 4) -> Figure:
    """The rank histogram of each parameter, with the band where 99% of the bins of a
    calibrated model fall, titled with its adjusted p-value."""
    from matplotlib.figure import Figure
    from scipy.stats import binom

    names = list(result.ranks)
    cols = min(columns, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(2.4 * cols, 1.9 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    draws, bins, n = result.config.draws, result.config.n_bins, result.config.simulations
    share = np.bincount(bin_of(np.arange(draws + 1), draws, bins), minlength=bins) / (draws + 1)
    lo, hi = binom.ppf(0.005, n, share), binom.ppf(0.995, n, share)
    for ax, name in zip(axes, names, strict=False):
        counts = np.bincount(bin_of(result.ranks[name], draws, bins), minlength=bins)
        ax.fill_between(np.arange(bins + 1) - 0.5, np.r_[lo, lo[-1]], np.r_[hi, hi[-1]],
                        step="post", color="0.85", lw=0)
        ax.bar(np.arange(bins), counts, width=0.9,
               color="tab:blue" if result.adjusted[name] >= result.config.alpha else "tab:red")
        ax.set_title(f"{name}  adj. p {result.adjusted[name]:.2g}", fontsize=9)
        ax.tick_params(labelsize=7, bottom=False, labelbottom=False)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    verdict = "calibrated" if result.passed else "NOT calibrated"
    fig.suptitle(f"SBC ranks: {result.model} ({n} simulations, {draws} draws, {bins} bins): "
                 f"{verdict} at alpha {result.config.alpha}", fontsize=10)
    return fig
