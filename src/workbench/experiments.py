"""The Bayesian read-out of an experiment: pure functions over its events.

Per arm, the metric's posterior, the probability to be best, the expected loss (what
choosing this arm costs, in metric units, if another is in fact better), the credible
interval of the lift over control, and a decision against the configured threshold:

- ``binary``: the outcome rate, Beta-Binomial in closed form (uniform prior);
- ``continuous``: the outcome mean, a NumPyro model (Normal per arm, on sufficient
  statistics, so NUTS compiles once);
- ``log_score`` / ``brier``: each arm's mean log predictive density (higher is better) or
  Brier score (lower is better) of its served predictions on the observed outcomes, with
  a Bayesian bootstrap for the uncertainty.

Also the sample-ratio-mismatch test of the realised split against the weights, interval
coverage (regression) and a reliability table (classifiers) per arm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special, stats

from workbench.calibration import class_index, coverage, observations, reliability

if TYPE_CHECKING:
    from workbench.config import ExperimentConfig
    from workbench.events import Events

DRAWS = 20_000
SRM_ALPHA = 0.001


@dataclass
class ArmReadout:
    arm: str
    model: str
    predictions: int
    outcomes: int
    mean: float | None  # posterior mean of the metric
    interval: tuple[float, float] | None  # 90% credible interval of the metric
    prob_best: float | None
    expected_loss: float | None
    lift: dict[str, Any] | None  # over control: mean, lo, hi, relative (for rates/means)
    is_control: bool = False
    weight: float | None = None
    density: dict[str, list[float]] | None = None  # the posterior's density, for plots


@dataclass
class Readout:
    experiment: str
    metric: str
    higher_is_better: bool
    arms: list[ArmReadout]
    decision: dict[str, Any]
    srm: dict[str, Any] | None
    coverage: dict[str, dict[str, Any]] = field(default_factory=dict)
    reliability: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    skipped: int = 0  # stored outcomes the metric cannot take (older versions), not counted
    counted: str = ""  # which events count (see workbench.readout)
    state: dict[str, Any] | None = None  # the experiment's live state when read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- closed forms and Monte Carlo -----------------------------------------------------------

def beta_posterior(successes: np.ndarray, trials: np.ndarray, prior: tuple[float, float] = (
        1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Beta(alpha, beta) per arm after ``successes`` of ``trials`` (conjugate update)."""
    s, n = np.asarray(successes, float), np.asarray(trials, float)
    return prior[0] + s, prior[1] + n - s


def prob_b_beats_a(a_alpha: float, a_beta: float, b_alpha: float, b_beta: float) -> float:
    """P(p_B > p_A) for independent Beta posteriors, exactly (integer ``b_alpha``)."""
    i = np.arange(int(b_alpha))
    log_terms = (special.betaln(a_alpha + i, a_beta + b_beta) - np.log(b_beta + i)
                 - special.betaln(1 + i, b_beta) - special.betaln(a_alpha, a_beta))
    return float(np.exp(special.logsumexp(log_terms)))


def prob_best(draws: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """P(arm is best) from posterior ``draws`` shaped ``(samples, arms)``."""
    scores = draws if higher_is_better else -draws
    return np.bincount(np.argmax(scores, axis=1), minlength=draws.shape[1]) / len(draws)


def expected_loss(draws: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """E[max over arms - this arm] (in metric units, >= 0) per arm."""
    scores = draws if higher_is_better else -draws
    return (scores.max(axis=1, keepdims=True) - scores).mean(axis=0)


def lift(draws: np.ndarray, control: int, *, relative: bool) -> list[dict[str, float]]:
    """The lift of each arm over ``control``: relative ((x - c) / c) or absolute (x - c)."""
    c = draws[:, [control]]
    diff = (draws - c) / np.abs(c) if relative else draws - c
    lo, hi = np.quantile(diff, [0.05, 0.95], axis=0)
    return [{"mean": float(m), "lo": float(a), "hi": float(b), "relative": relative}
            for m, a, b in zip(diff.mean(axis=0), lo, hi, strict=True)]


def srm(observed: dict[str, int], weights: dict[str, float]) -> dict[str, Any] | None:
    """Chi-square test of the realised split against the weights (sample ratio mismatch).

    ``weights`` are the expected shares (normalised here): the configured weights, or,
    when they changed during the experiment, each arm's weight summed over its events.
    """
    arms = [a for a, w in weights.items() if w > 0 or observed.get(a, 0) > 0]
    counts = np.array([observed.get(a, 0) for a in arms], float)
    total = counts.sum()
    if total < 20 or len(arms) < 2:
        return None
    expected = np.array([weights[a] for a in arms]) / sum(weights.values()) * total
    p = float(stats.chisquare(counts, expected).pvalue)
    return {"p_value": p, "mismatch": p < SRM_ALPHA, "alpha": SRM_ALPHA,
            "observed": dict(zip(arms, counts.astype(int).tolist(), strict=True)),
            "expected": dict(zip(arms, expected.round(1).tolist(), strict=True))}


def decide(arms: list[str], prob: np.ndarray, loss: np.ndarray, outcomes: list[int],
           config: ExperimentConfig) -> dict[str, Any]:
    """Declare the arm whose probability to be best reaches the threshold, once every arm
    has ``min_outcomes`` outcomes; otherwise keep running."""
    d = config.decision
    if min(outcomes) < d.min_outcomes:
        return {"winner": None, "status": "collecting",
                "reason": f"waiting for {d.min_outcomes} outcomes per arm "
                          f"(fewest so far: {min(outcomes)})",
                "threshold": d.prob_best}
    best = int(np.argmax(prob))
    if prob[best] >= d.prob_best:
        return {"winner": arms[best], "status": "decided",
                "reason": f"P({arms[best]} is best) = {prob[best]:.3f} >= {d.prob_best}; "
                          f"expected loss {loss[best]:.4g}",
                "threshold": d.prob_best}
    return {"winner": None, "status": "running",
            "reason": f"no arm reaches P(best) >= {d.prob_best} (highest: {arms[best]} at "
                      f"{prob[best]:.3f})", "threshold": d.prob_best}


# -- per-request scores -----------------------------------------------------------------

def log_score(row: dict[str, Any], value: Any) -> float:
    """Log predictive density of ``value`` under a served row."""
    if "probabilities" in row:
        p = list(row["probabilities"].values())[class_index(row, value)]
        return float(np.log(max(p, 1e-12)))
    return float(stats.norm.logpdf(float(value), row["mean"], max(row["std"], 1e-12)))


def brier(row: dict[str, Any], value: Any) -> float:
    """Brier score of a classifier's probabilities against the observed class."""
    probs = np.array(list(row["probabilities"].values()))
    onehot = np.zeros_like(probs)
    onehot[class_index(row, value)] = 1.0
    return float(np.sum((probs - onehot) ** 2))


def bayesian_bootstrap(values: np.ndarray, samples: int, rng: np.random.Generator
                       ) -> np.ndarray:
    """Posterior draws of the mean of ``values`` (Rubin's Bayesian bootstrap)."""
    if len(values) == 0:
        return np.full(samples, np.nan)
    weights = rng.dirichlet(np.ones(len(values)), size=samples)
    return weights @ values


def continuous_draws(groups: list[np.ndarray], samples: int, seed: int) -> np.ndarray:
    """Posterior draws of each group's mean: Normal(mu_k, sigma_k) per group, fitted with
    NUTS on sufficient statistics (standardised; weakly informative priors)."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    pooled = np.concatenate([g for g in groups if len(g)]) if any(len(g) for g in groups) \
        else np.zeros(1)
    loc, scale = float(pooled.mean()), float(pooled.std() or 1.0)
    n = np.array([len(g) for g in groups], np.float32)
    mean = np.array([((g - loc) / scale).mean() if len(g) else 0.0 for g in groups], np.float32)
    ss = np.array([(((g - loc) / scale - m) ** 2).sum() if len(g) else 0.0
                   for g, m in zip(groups, mean, strict=True)], np.float32)

    def model(n: Any, mean: Any, ss: Any) -> None:
        with numpyro.plate("arms", n.shape[0]):
            mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
            sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
        # The Normal likelihood through its sufficient statistics (n, mean, sum of squares).
        numpyro.factor("obs", jnp.sum(-n * jnp.log(sigma)
                                      - (ss + n * (mean - mu) ** 2) / (2 * sigma**2)))

    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=samples, num_chains=1,
                progress_bar=False, jit_model_args=True)
    mcmc.run(jax.random.PRNGKey(seed), jnp.asarray(n), jnp.asarray(mean), jnp.asarray(ss))
    return np.asarray(mcmc.get_samples()["mu"]) * scale + loc


# -- the read-out ---------------------------------------------------------------------------

def metric_values(events: Events, metric: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(arm, value) per observed row: the outcome (binary, continuous) or the score of the
    served prediction (``log_score``, ``brier``); and how many stored outcomes the metric
    cannot take (written by older versions, which did not check): skipped, not fatal."""
    arms, rows, values = observations(events)
    keep, out, skipped = [], [], 0
    for k, (row, value) in enumerate(zip(rows, values, strict=True)):
        try:
            if metric == "binary":
                v = float(value)
                ok = not isinstance(value, str) and v in (0.0, 1.0)
            elif metric == "continuous":
                v = float(value)
                ok = not isinstance(value, str | bool) and np.isfinite(v)
            else:
                v = (log_score if metric == "log_score" else brier)(row, value)
                ok = bool(np.isfinite(v))
        except (TypeError, ValueError, IndexError, KeyError):
            ok = False
        if ok:
            keep.append(k)
            out.append(v)
        else:
            skipped += 1
    return arms[keep] if keep else np.zeros(0, dtype=object), np.asarray(out, float), skipped


def metric_draws(events: Events, config: ExperimentConfig, *, samples: int = DRAWS,
                 seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Posterior draws ``(samples, arms)`` of the configured metric, and outcomes per arm."""
    draws, counts, _ = _draws(events, config, samples=samples, seed=seed)
    return draws, counts


def _draws(events: Events, config: ExperimentConfig, *, samples: int, seed: int
           ) -> tuple[np.ndarray, list[int], int]:
    names = [a.name for a in config.arms]
    arms, y, skipped = metric_values(events, config.metric)
    rng = np.random.default_rng(seed)
    per_arm = [np.flatnonzero(arms == a) for a in names]
    counts = [len(i) for i in per_arm]
    if config.metric == "binary":
        alpha, beta = beta_posterior(np.array([y[i].sum() for i in per_arm]), np.array(counts))
        return rng.beta(alpha, beta, size=(samples, len(names))), counts, skipped
    if config.metric == "continuous":
        return (continuous_draws([y[i] for i in per_arm], min(samples, 4000), seed), counts,
                skipped)
    draws = np.stack([bayesian_bootstrap(y[i], samples, rng) for i in per_arm], axis=1)
    return draws, counts, skipped


def analyze(events: Events, config: ExperimentConfig, *, weights: dict[str, float] | None = None,
            samples: int = DRAWS, seed: int = 0, expected: dict[str, float] | None = None,
            served: Events | None = None) -> Readout:
    """The full read-out of ``events`` (primary arms; the shadow is scored beside them).

    ``expected``: each arm's expected share of traffic for the sample-ratio test (default:
    the configured weights). ``served``: the events to score calibration on, by the arm
    that served them (default: ``events``). :func:`workbench.readout.read_out` passes both.
    """
    names = [a.name for a in config.arms]
    higher = config.metric != "brier"
    primary = events.mask(np.isin(events.arm, names) & (events.status != "shadow"))
    draws, counts, skipped = _draws(primary, config, samples=samples, seed=seed)
    control = names.index(config.control_arm.name)
    observed = np.isfinite(draws).all(axis=0)
    prob = prob_best(np.where(observed, draws, -np.inf if higher else np.inf),
                     higher_is_better=higher)
    loss = expected_loss(np.nan_to_num(draws), higher_is_better=higher)
    lifts = lift(draws, control, relative=config.metric in ("binary", "continuous"))
    n_served = {a: int(np.sum(primary.arm == a)) for a in names}
    arms_out = []
    for k, arm in enumerate(config.arms):
        col = draws[:, k]
        has = counts[k] > 0 and np.isfinite(col).all()
        arms_out.append(ArmReadout(
            arm=arm.name, model=arm.model, predictions=n_served[arm.name], outcomes=counts[k],
            mean=float(col.mean()) if has else None,
            interval=tuple(map(float, np.quantile(col, [0.05, 0.95]))) if has else None,
            prob_best=float(prob[k]) if has else None,
            expected_loss=float(loss[k]) if has else None,
            lift=lifts[k] if has and k != control and counts[control] > 0 else None,
            is_control=k == control, weight=(weights or config.weights).get(arm.name),
            density=_density(col) if has else None))
    srm_result = srm(n_served, expected or config.weights) if config.mode == "split" \
        else None
    scored = events if served is None else served
    return Readout(
        experiment=config.name, metric=config.metric, higher_is_better=higher, arms=arms_out,
        decision=decide(names, prob, loss, counts, config), srm=srm_result,
        coverage=coverage(scored), reliability=reliability(scored), skipped=skipped)


def _density(col: np.ndarray, points: int = 60) -> dict[str, list[float]]:
    """A kernel density estimate of a posterior, for the dashboard."""
    lo, hi = np.quantile(col, [0.001, 0.999])
    if not hi > lo:
        return {"x": [float(lo)], "y": [1.0]}
    grid = np.linspace(lo, hi, points)
    kde = stats.gaussian_kde(col[:: max(1, len(col) // 4000)])
    return {"x": grid.tolist(), "y": kde(grid).tolist()}
