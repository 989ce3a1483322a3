"""The Bayesian read-out of an experiment: pure functions over its events.

Per arm, the metric's posterior, the probability to be best, the expected loss (what
choosing this arm costs, in metric units, if another is in fact better), the credible
interval of the lift over control, the probability that the arm improves on control by
more than ``decision.min_effect`` (a region of practical equivalence), and a decision
against the configured threshold. For two arms, P(best) and the expected loss are
GrowthBook's chance to win and risk (:mod:`workbench.closed_forms`, checked by the tests):

- ``binary``: the outcome rate, Beta-Binomial in closed form (uniform prior);
- ``continuous``: the outcome mean, a NumPyro model (Normal per arm, on sufficient
  statistics, so NUTS compiles once); on CUPED-adjusted outcomes where every outcome came
  with a pre-period covariate (:mod:`workbench.cuped`);
- ``log_score`` / ``brier``: each arm's mean log predictive density (higher is better) or
  Brier score (lower is better) of its served predictions on the observed outcomes, with
  a Bayesian bootstrap for the uncertainty (exact up to ``aggregates.N_EXACT`` outcomes
  per arm, its Normal limit above: :mod:`workbench.bootstrap`).

Every read-out is computed from sufficient statistics (:mod:`workbench.aggregates`), so its
memory does not grow with the number of events: :func:`analyze` folds events in memory,
:func:`workbench.readout.read_out` folds the event store in chunks; both end in
:func:`summarize`.

Also the sample-ratio-mismatch test of the realised split against the weights, interval
coverage (regression) and a reliability table (classifiers) per arm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

# brier, log_score and bayesian_bootstrap have been public here from the start
from workbench import cuped
from workbench.aggregates import Fold, Moments, Score
from workbench.bootstrap import bayesian_bootstrap as bayesian_bootstrap
from workbench.bootstrap import mean_draws
from workbench.folding import fold_events
from workbench.observations import brier as brier
from workbench.observations import log_score as log_score

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
    # P(improvement over control > decision.min_effect): lift > it (brier: -lift > it)
    prob_min_effect: float | None = None
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
    # predictions (every status but shadow) and outcomes read, pruned ones included; and
    # what `workbench events prune` folded into the aggregate (None: nothing pruned)
    totals: dict[str, int] = field(default_factory=dict)
    pruned: dict[str, Any] | None = None
    min_effect: float = 0.0  # the configured decision.min_effect (see prob_min_effect)
    # CUPED's theta, rho and variance reduction (None: no covariates; workbench.cuped)
    cuped: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- closed forms and Monte Carlo -----------------------------------------------------------

def beta_posterior(successes: np.ndarray, trials: np.ndarray, prior: tuple[float, float] = (
        1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Beta(alpha, beta) per arm after ``successes`` of ``trials`` (conjugate update)."""
    s, n = np.asarray(successes, float), np.asarray(trials, float)
    return prior[0] + s, prior[1] + n - s


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


def prob_min_effect(draws: np.ndarray, control: int, min_effect: float, *, relative: bool,
                    higher_is_better: bool = True) -> np.ndarray:
    """P(an arm improves on ``control`` by more than ``min_effect``) per arm.

    The improvement is the lift of :func:`lift` (relative or absolute), negated where
    lower is better; ``min_effect`` 0 gives the chance to beat control.
    """
    c = draws[:, [control]]
    diff = (draws - c) / np.abs(c) if relative else draws - c
    return ((diff if higher_is_better else -diff) > min_effect).mean(axis=0)


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


# -- posterior draws from sufficient statistics ------------------------------------------------

def continuous_draws(moments: list[Moments], samples: int, seed: int) -> np.ndarray:
    """Posterior draws of each group's mean: Normal(mu_k, sigma_k) per group, fitted with
    NUTS on its sufficient statistics (count, mean, sum of squared deviations),
    standardised by the pooled mean and standard deviation; weakly informative priors."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    pooled = Moments()
    for m in moments:
        pooled = pooled.merge(m)
    loc = pooled.mean if pooled.n else 0.0
    scale = float(np.sqrt(pooled.m2 / pooled.n)) if pooled.n else 0.0
    scale = scale or 1.0
    n = np.array([m.n for m in moments], np.float32)
    mean = np.array([(m.mean - loc) / scale if m.n else 0.0 for m in moments], np.float32)
    ss = np.array([m.m2 / scale**2 if m.n else 0.0 for m in moments], np.float32)

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


def fold_draws(fold: Fold, config: ExperimentConfig, *, samples: int = DRAWS, seed: int = 0
               ) -> tuple[np.ndarray, list[int]]:
    """Posterior draws ``(samples, arms)`` of the configured metric from a fold's
    sufficient statistics, and the outcomes per arm."""
    names = [a.name for a in config.arms]
    metric = config.metric
    counts = [fold.observed(metric, a) for a in names]
    rng = np.random.default_rng(seed)
    if metric == "binary":
        alpha, beta = beta_posterior(np.array([fold.binary.get(a, [0, 0])[0] for a in names]),
                                     np.array(counts))
        return rng.beta(alpha, beta, size=(samples, len(names))), counts
    if metric == "continuous":
        adjusted, _ = cuped.adjust(fold, names, metric)
        moments = adjusted or [fold.continuous.get(a, Moments()) for a in names]
        return continuous_draws(moments, min(samples, 4000), seed), counts
    return np.stack([mean_draws(fold.scores[metric].get(a, Score()), samples, rng)
                     for a in names], axis=1), counts


# -- the read-out ---------------------------------------------------------------------------

def analyze(events: Events, config: ExperimentConfig, *, weights: dict[str, float] | None = None,
            samples: int = DRAWS, seed: int = 0, expected: dict[str, float] | None = None,
            served: Events | None = None) -> Readout:
    """The full read-out of ``events`` in memory (primary arms; a shadow is scored beside
    them): every status but ``shadow`` counts, each event under its assigned arm.

    ``expected``: each arm's expected share of traffic for the sample-ratio test (default:
    the configured weights). ``served``: the events to score calibration on, by the arm
    that served them (default: ``events``). The events are folded
    (:func:`workbench.folding.fold_events`) and read out by :func:`summarize`, as the
    event store's are by :func:`workbench.readout.read_out`.
    """
    fold = fold_events(events, counted=_statuses(events), served=served)
    return summarize(fold, config, weights=weights, samples=samples, seed=seed,
                     expected=expected)


def _statuses(events: Events) -> tuple[str, ...]:
    return tuple(s for s in dict.fromkeys(events.status.tolist()) if s != "shadow")


def summarize(fold: Fold, config: ExperimentConfig, *, weights: dict[str, float] | None = None,
              samples: int = DRAWS, seed: int = 0, expected: dict[str, float] | None = None
              ) -> Readout:
    """The read-out of a fold (see :func:`analyze` for ``weights`` and ``expected``)."""
    names = [a.name for a in config.arms]
    higher = config.metric != "brier"
    draws, counts = fold_draws(fold, config, samples=samples, seed=seed)
    control = names.index(config.control_arm.name)
    observed = np.isfinite(draws).all(axis=0)
    prob = prob_best(np.where(observed, draws, -np.inf if higher else np.inf),
                     higher_is_better=higher)
    loss = expected_loss(np.nan_to_num(draws), higher_is_better=higher)
    relative = config.metric in ("binary", "continuous")
    lifts = lift(draws, control, relative=relative)
    beyond = prob_min_effect(draws, control, config.decision.min_effect, relative=relative,
                             higher_is_better=higher)
    n_served = {a: fold.served(a) for a in names}
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
            density=_density(col) if has else None,
            prob_min_effect=float(beyond[k]) if has and k != control and counts[control] > 0
            else None))
    srm_result = srm(n_served, expected or config.weights) if config.mode == "split" \
        else None
    return Readout(
        experiment=config.name, metric=config.metric, higher_is_better=higher, arms=arms_out,
        decision=decide(names, prob, loss, counts, config), srm=srm_result,
        coverage=fold.coverage_table(), reliability=fold.reliability_table(),
        skipped=sum(fold.skipped.get(config.metric, {}).get(a, 0) for a in names),
        totals={"predictions": fold.total(), "outcomes": fold.total(outcomes=True,
                                                                      shadow=True)},
        min_effect=config.decision.min_effect, cuped=cuped.adjust(fold, names, config.metric)[1])


def _density(col: np.ndarray, points: int = 60) -> dict[str, list[float]]:
    """A kernel density estimate of a posterior, for the dashboard."""
    lo, hi = np.quantile(col, [0.001, 0.999])
    if not hi > lo:
        return {"x": [float(lo)], "y": [1.0]}
    grid = np.linspace(lo, hi, points)
    kde = stats.gaussian_kde(col[:: max(1, len(col) // 4000)])
    return {"x": grid.tolist(), "y": kde(grid).tolist()}
