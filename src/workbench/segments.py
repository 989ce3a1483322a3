"""Segment read-outs of a binary metric with partial pooling, beside the unpooled ones.

Read each of twenty segments on its own (:func:`unpooled_draws`: Beta(1, 1)-Binomial per
arm) and, with no effect anywhere, about one in twenty is a "winner" at P >= 0.95 by chance.
The pooled read-out (:func:`pooled_draws`) fits one hierarchical model to every segment's
counts: a segment's effect is the overall effect plus a deviation the data must support, so
small segments shrink toward the overall effect (Gelman, Hill and Yajima 2012).

The model, per segment ``s`` and treatment arm ``k`` (log-odds scale)::

    alpha_s  = mu_a + sigma_a * a_s        a_s ~ Normal(0, 1)    the control's log-odds
    delta_sk = d_k + tau_k * z_sk          z_sk ~ Normal(0, 1)   the effect (non-centred)
    mu_a ~ Normal(0, 2.5)    sigma_a ~ HalfNormal(1)
    d_k ~ Normal(0, 1)       tau_k ~ HalfNormal(0.5)
    successes ~ Binomial(trials, logit^-1(alpha_s + delta_sk))   (delta = 0 for control)

``d_k``: odds ratios within about x7 either way, generous for a product change; ``tau_k``:
segments may differ by a few tenths of log-odds (learned from the segments: the tests'
figures barely move under HalfNormal(50)); ``mu_a``, ``sigma_a``: base rates of 0.7% to 99%.
:func:`read_out` returns both read-outs side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import xlogy
from numpyro.diagnostics import effective_sample_size
from scipy.special import expit, logit

from workbench import nuts
from workbench.errors import InputError
from workbench.experiments import beta_posterior

THRESHOLD = 0.95  # P(effect > 0) at which a segment is a winner (<= 1 - it: a loser)
LEVELS = (0.05, 0.95)  # the 90% credible interval


@dataclass(frozen=True)
class Effect:
    """One read-out of a treatment arm's effect over control in one segment: ``(mean, lo,
    hi)``, a 90% interval, on the log-odds scale and as a difference of rates; ``winner``:
    P(effect > 0) >= the threshold; ``loser``: P(effect > 0) <= 1 - threshold."""

    log_odds: tuple[float, float, float]
    rate_diff: tuple[float, float, float]  # treatment - control
    prob_positive: float
    winner: bool
    loser: bool


@dataclass(frozen=True)
class SegmentEffect:
    """A treatment arm in a segment: its counts and both read-outs side by side."""

    segment: str
    arm: str
    trials: int  # the treatment arm's trials in the segment
    control_trials: int
    pooled: Effect
    unpooled: Effect


@dataclass(frozen=True)
class SegmentReadout:
    """Both read-outs of every (segment, treatment arm), in segment then arm order;
    ``overall``: per treatment arm the pooled overall effect ``d``, the spread ``tau``
    across segments (log-odds, ``(mean, lo, hi)``) and P(d > 0); ``diagnostics``: NUTS's
    divergences and the least effective sample size of ``d`` and ``tau``."""

    control: str
    threshold: float
    effects: list[SegmentEffect]
    overall: list[dict[str, Any]]
    diagnostics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model(trials: Any, successes: Any = None) -> None:
    """The hierarchical model of the module docstring; column 0 of ``trials`` (segments,
    arms) is the control arm. ``successes=None`` draws from the prior predictive."""
    segments, arms = trials.shape
    mu_a = numpyro.sample("mu_a", dist.Normal(0.0, 2.5))
    sigma_a = numpyro.sample("sigma_a", dist.HalfNormal(1.0))
    d = numpyro.sample("d", dist.Normal(0.0, 1.0).expand([arms - 1]).to_event(1))
    tau = numpyro.sample("tau", dist.HalfNormal(0.5).expand([arms - 1]).to_event(1))
    a = numpyro.sample("a", dist.Normal(0.0, 1.0).expand([segments]).to_event(1))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([segments, arms - 1]).to_event(2))
    alpha = numpyro.deterministic("alpha", mu_a + sigma_a * a)
    delta = numpyro.deterministic("delta", d + tau * z)
    logits = jnp.concatenate([alpha[:, None], alpha[:, None] + delta], axis=1)
    if successes is None:
        numpyro.sample("obs", dist.Binomial(jnp.asarray(trials, jnp.int32), logits=logits)
                       .to_event(2))
        return
    # The Binomial log-likelihood less its value at the observed rates, -n KL(rate | p):
    # Binomial.log_prob sums terms of size n log n that cancel, which in float32 would put
    # errors of nats into NUTS's energy at millions of trials.
    rate = successes / jnp.maximum(trials, 1.0)
    numpyro.factor("obs", jnp.sum(trials * (
        rate * jax.nn.log_sigmoid(logits) + (1 - rate) * jax.nn.log_sigmoid(-logits)
        - xlogy(rate, rate) - xlogy(1 - rate, 1 - rate))))


Fit = Callable[[jax.Array, jax.Array, jax.Array], tuple[dict[str, jax.Array], jax.Array]]


def sampler(*, warmup: int = 500, samples: int = 1000, target_accept: float = 0.8) -> Fit:
    """One NUTS chain for :func:`pooled_draws`, a jitted ``(rng_key, trials, successes) ->
    (draws, diverging)`` (:func:`workbench.nuts.chain`). Reuse it: it compiles once per
    shape of the counts, where ``MCMC(..., jit_model_args=True)`` compiled its loop again
    on every ``run`` (5 s)."""
    return jax.jit(nuts.chain(model, warmup=warmup, samples=samples,
                              target_accept=target_accept, deterministic=True))


def validate(successes: Any, trials: Any, control: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The counts as float arrays shaped (segments, arms), or an :class:`InputError` that
    says what was expected."""
    try:
        s, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"successes and trials must be numeric arrays shaped (segments, "
                         f"arms): {exc}") from None
    if s.shape != n.shape or s.ndim != 2:
        raise InputError(f"successes and trials must have the same 2-D shape (segments, "
                         f"arms); got {s.shape} and {n.shape}")
    if s.shape[0] < 1 or s.shape[1] < 2:
        raise InputError(f"expected at least one segment and two arms; got shape {s.shape}")
    if not (np.isfinite(s).all() and np.isfinite(n).all()):
        raise InputError("successes and trials must be finite counts; got NaN or infinity")
    if (s < 0).any() or (n < 0).any() or (s != np.round(s)).any() or (n != np.round(n)).any():
        raise InputError("successes and trials must be non-negative whole numbers")
    if (s > n).any():
        seg, arm = np.argwhere(s > n)[0]
        raise InputError(f"successes must not exceed trials; segment {seg}, arm {arm} has "
                         f"{s[seg, arm]:.0f} successes of {n[seg, arm]:.0f} trials")
    if isinstance(control, bool) or not isinstance(control, int | np.integer) \
            or not 0 <= control < s.shape[1]:
        raise InputError(f"control must be an arm index in 0..{s.shape[1] - 1}; got {control!r}")
    return s, n


def _key(rng_key: jax.Array | int) -> jax.Array:
    return jax.random.PRNGKey(rng_key) if isinstance(rng_key, int | np.integer) else rng_key


def pooled_draws(rng_key: jax.Array | int, successes: np.ndarray, trials: np.ndarray, *,
                 fit: Fit | None = None) -> dict[str, np.ndarray]:
    """Posterior draws of the hierarchical model given counts (segments, arms) with the
    control arm in column 0: ``alpha`` (samples, segments), ``delta`` (samples, segments,
    arms - 1), ``d`` and ``tau`` (samples, arms - 1), and ``diverging`` (samples,).
    ``fit``: a :func:`sampler` (a new one, compiled for this call, by default)."""
    fit = fit or sampler()
    draws, diverging = fit(_key(rng_key), jnp.asarray(trials, jnp.float32),
                           jnp.asarray(successes, jnp.float32))
    return {k: np.asarray(draws[k], float) for k in ("alpha", "delta", "d", "tau")} | {
        "diverging": np.asarray(diverging)}


def unpooled_draws(rng_key: jax.Array | int, successes: np.ndarray, trials: np.ndarray, *,
                   samples: int = 4000) -> np.ndarray:
    """Rate draws (samples, segments, arms): an independent Beta(1, 1)-Binomial posterior
    per segment and arm, sampled in closed form."""
    seed = np.asarray(jax.random.key_data(_key(rng_key)), np.uint32).ravel()
    alpha, beta = beta_posterior(successes, trials)
    return np.random.default_rng(seed).beta(alpha, beta, size=(samples, *alpha.shape))


def _interval(x: np.ndarray) -> tuple[float, float, float]:
    lo, hi = np.quantile(x, LEVELS)
    return float(x.mean()), float(lo), float(hi)


def _effect(log_odds: np.ndarray, rate_diff: np.ndarray, threshold: float) -> Effect:
    p = float((log_odds > 0).mean())
    return Effect(_interval(log_odds), _interval(rate_diff), p, p >= threshold,
                  p <= 1 - threshold)


def read_out(rng_key: jax.Array | int, successes: Any, trials: Any, *, control: int = 0,
             segments: Sequence[str] | None = None, arms: Sequence[str] | None = None,
             threshold: float = THRESHOLD, fit: Fit | None = None) -> SegmentReadout:
    """The pooled and unpooled read-outs of every segment and treatment arm of a binary
    metric.

    Parameters
    ----------
    rng_key : jax.Array or int
        The key (or a seed for one), split between the two read-outs.
    successes, trials : array_like
        Counts shaped (segments, arms): successes <= trials, whole and non-negative.
    control : int
        The control arm's index.
    segments, arms : sequence of str, optional
        Names (default: ``"segment 0"``... and ``"arm 0"``...).
    threshold : float
        P(effect > 0) at which a segment's arm is a winner, in (0.5, 1).
    fit : callable, optional
        A :func:`sampler` to reuse across fits of one shape (one is made otherwise).

    Returns
    -------
    SegmentReadout
        Per segment and treatment arm, both read-outs; the overall effect per arm.
    """
    s, n = validate(successes, trials, control)
    n_seg, n_arms = s.shape
    segments = list(segments) if segments is not None else [f"segment {i}"
                                                             for i in range(n_seg)]
    arms = list(arms) if arms is not None else [f"arm {k}" for k in range(n_arms)]
    if len(segments) != n_seg or len(arms) != n_arms:
        raise InputError(f"expected {n_seg} segment names and {n_arms} arm names; got "
                         f"{len(segments)} and {len(arms)}")
    if not 0.5 < threshold < 1:
        raise InputError(f"threshold must be in (0.5, 1); got {threshold!r}")
    order = [control] + [k for k in range(n_arms) if k != control]  # control first
    s, n = s[:, order], n[:, order]
    key_pooled, key_unpooled = jax.random.split(_key(rng_key))
    pooled = pooled_draws(key_pooled, s, n, fit=fit)
    rates = unpooled_draws(key_unpooled, s, n, samples=len(pooled["d"]))

    alpha = pooled["alpha"][:, :, None]
    pooled_diff = expit(alpha + pooled["delta"]) - expit(alpha)
    logits = logit(rates)
    effects = []
    for i in range(n_seg):
        for j, k in enumerate(order[1:]):
            effects.append(SegmentEffect(
                segment=segments[i], arm=arms[k], trials=int(n[i, j + 1]),
                control_trials=int(n[i, 0]),
                pooled=_effect(pooled["delta"][:, i, j], pooled_diff[:, i, j], threshold),
                unpooled=_effect(logits[:, i, j + 1] - logits[:, i, 0],
                                 rates[:, i, j + 1] - rates[:, i, 0], threshold)))
    overall = [{"arm": arms[k], "d": _interval(pooled["d"][:, j]),
                "tau": _interval(pooled["tau"][:, j]),
                "prob_positive": float((pooled["d"][:, j] > 0).mean())}
               for j, k in enumerate(order[1:])]
    ess = effective_sample_size(np.concatenate([pooled["d"], pooled["tau"]], axis=1)[None])
    diagnostics = {"divergences": int(pooled["diverging"].sum()),
                   "draws": len(pooled["d"]), "min_ess": float(np.min(ess))}
    return SegmentReadout(control=arms[control], threshold=threshold, effects=effects,
                          overall=overall, diagnostics=diagnostics)
