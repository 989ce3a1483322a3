"""Posterior draws of a mean by Rubin's Bayesian bootstrap, in bounded memory.

The Bayesian bootstrap's posterior of the mean of values ``x_1..x_n`` is the law of
``sum_i w_i x_i`` with ``w ~ Dirichlet(1, ..., 1)``. Its mean is the sample mean and its
variance, exactly, is

    Var = sum_i (x_i - mean)^2 / (n (n + 1)) = m2 / (n (n + 1))

(``Var w_i = (n - 1) / (n^2 (n + 1))``, ``Cov(w_i, w_j) = -1 / (n^2 (n + 1))``, and the
deviations sum to zero). :func:`mean_draws` uses:

- at most :data:`workbench.aggregates.N_EXACT` values: the exact bootstrap,
  :func:`bayesian_bootstrap`, drawn in blocks of samples so that memory is
  ``block x n``, not ``samples x n``. Each block draws Exp(1) variates row by row and
  normalises them by their sequential sum, which is how ``Generator.dirichlet`` draws
  Dirichlet(1, ..., 1) (a Gamma(1) is an Exp(1)): the draws are the same numbers as
  ``rng.dirichlet(np.ones(n), size=samples) @ x``, from the same seeded generator;
- more values: the large-sample limit, ``Normal(mean, m2 / (n (n + 1)))``, with the exact
  variance above. The weighted mean is a ratio of sums of independent Exp(1)-weighted
  terms, asymptotically Normal; its skewness shrinks as ``1 / sqrt(n)``, so at
  ``n = N_EXACT`` the limit's 5% and 95% quantiles stand within a few hundredths of a
  posterior standard deviation of the exact ones (tests/test_aggregates.py checks this).
"""

from __future__ import annotations

import numpy as np

from workbench.aggregates import N_EXACT, Score

BLOCK = 512  # samples drawn at a time by the exact bootstrap


def bayesian_bootstrap(values: np.ndarray, samples: int, rng: np.random.Generator, *,
                       block: int = BLOCK) -> np.ndarray:
    """Posterior draws of the mean of ``values`` (exact; memory ``block x len(values)``)."""
    x = np.asarray(values, float)
    if len(x) == 0:
        return np.full(samples, np.nan)
    out = np.empty(samples)
    for start in range(0, samples, block):
        weights = rng.standard_exponential((min(block, samples - start), len(x)))
        total = np.cumsum(weights, axis=1)[:, -1]  # sequential, as dirichlet's
        weights *= (1.0 / total)[:, None]
        out[start:start + len(weights)] = weights @ x
    return out


def normal_limit(n: int, mean: float, m2: float, samples: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Draws from the bootstrap's large-sample limit, Normal(mean, m2 / (n (n + 1)))."""
    if n == 0:
        return np.full(samples, np.nan)
    return rng.normal(mean, np.sqrt(m2 / (n * (n + 1.0))), size=samples)


def mean_draws(score: Score, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Posterior draws of a score's mean: exact while its values are kept (at most
    N_EXACT), else the Normal limit."""
    m = score.moments
    if score.values is not None and len(score.values) == m.n and m.n <= N_EXACT:
        return bayesian_bootstrap(np.asarray(score.values, float), samples, rng)
    return normal_limit(m.n, m.mean, m.m2, samples, rng)
