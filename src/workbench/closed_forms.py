"""GrowthBook's published read-out formulas, written out: the exact chance to win and
expected loss (risk) of two arms, against which the read-out's Monte Carlo is checked.

- **Beta posteriors** (a binary metric, as GrowthBook's original Bayesian engine): the
  chance that B beats A by Evan Miller's sum, and the expected loss of choosing either arm
  by Chris Stucchio's closed form, which reduces it to four such sums.
- **A Gaussian posterior of the lift** (gbstats' effect Bayesian test): the chance to win
  ``1 - Phi(0; mu, sigma)`` and the risk of control and of treatment from the means of the
  posterior truncated at zero (gbstats' ``get_risk``).

For two arms with independent posteriors these are the read-out's numbers
(:mod:`workbench.experiments`): P(B is best) is the chance that B wins, and the expected
loss of an arm, ``E[max over arms - this arm]``, is its risk.

References
----------
.. [1] E. Miller, "Formulas for Bayesian A/B Testing" (2015),
   https://www.evanmiller.org/bayesian-ab-testing.html
.. [2] C. Stucchio, "Bayesian A/B Testing at VWO" (2015), section 4, the expected loss of
   two Beta posteriors.
.. [3] GrowthBook, gbstats ``bayesian/tests.py``: ``chance_to_win`` and ``get_risk``
   (https://github.com/growthbook/growthbook, ``packages/stats/gbstats``).
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats


def beta_prob_greater(alpha_x: float, beta_x: float, alpha_y: float, beta_y: float
                      ) -> float:
    """P(X > Y) for independent X ~ Beta(alpha_x, beta_x), Y ~ Beta(alpha_y, beta_y).

    Evan Miller's sum [1]_, in log space, over ``alpha_x`` terms.

    Parameters
    ----------
    alpha_x, beta_x
        X's Beta parameters; ``alpha_x`` must be a positive integer (the sum's length),
        as it is for successes counted on a uniform (or any integer) prior.
    alpha_y, beta_y
        Y's Beta parameters (any positive numbers).

    Returns
    -------
    float
        The probability, in [0, 1].

    Raises
    ------
    ValueError
        ``alpha_x`` is not a positive integer.
    """
    if alpha_x != int(alpha_x) or alpha_x < 1:
        raise ValueError(f"alpha_x must be a positive integer for Evan Miller's sum, "
                         f"got {alpha_x!r}")
    i = np.arange(int(alpha_x), dtype=float)
    log_terms = (special.betaln(alpha_y + i, beta_y + beta_x) - np.log(beta_x + i)
                 - special.betaln(1 + i, beta_x) - special.betaln(alpha_y, beta_y))
    return float(min(1.0, np.exp(special.logsumexp(log_terms))))


def beta_chance_to_win(alpha_a: float, beta_a: float, alpha_b: float, beta_b: float
                       ) -> float:
    """P(B > A): the chance that treatment B beats control A, exactly [1]_.

    Parameters
    ----------
    alpha_a, beta_a
        Control's Beta posterior.
    alpha_b, beta_b
        Treatment's Beta posterior (``alpha_b`` a positive integer).

    Returns
    -------
    float
        The probability that B's rate is higher.
    """
    return beta_prob_greater(alpha_b, beta_b, alpha_a, beta_a)


def beta_expected_loss(alpha_a: float, beta_a: float, alpha_b: float, beta_b: float
                       ) -> tuple[float, float]:
    """The expected loss of choosing A and of choosing B, exactly (Stucchio [2]_).

    ``E[max(B - A, 0)]`` and ``E[max(A - B, 0)]``. Since ``x f(x; a, b)`` is
    ``a / (a + b)`` times the density of Beta(a + 1, b), each is a difference of two
    chances to win:
    ``E[max(A - B, 0)] = a_A/(a_A+b_A) P(A' > B) - a_B/(a_B+b_B) P(A > B')``
    with ``A' ~ Beta(a_A + 1, b_A)`` and ``B' ~ Beta(a_B + 1, b_B)``.

    Parameters
    ----------
    alpha_a, beta_a
        Control's Beta posterior (``alpha_a`` a positive integer).
    alpha_b, beta_b
        Treatment's Beta posterior (``alpha_b`` a positive integer).

    Returns
    -------
    tuple of float
        (loss of choosing A, loss of choosing B), in rate units, each >= 0.
    """
    mean_a, mean_b = alpha_a / (alpha_a + beta_a), alpha_b / (alpha_b + beta_b)
    loss_b = (mean_a * beta_prob_greater(alpha_a + 1, beta_a, alpha_b, beta_b)
              - mean_b * beta_prob_greater(alpha_a, beta_a, alpha_b + 1, beta_b))
    loss_a = (mean_b * beta_prob_greater(alpha_b + 1, beta_b, alpha_a, beta_a)
              - mean_a * beta_prob_greater(alpha_b, beta_b, alpha_a + 1, beta_a))
    return max(loss_a, 0.0), max(loss_b, 0.0)


def gaussian_chance_to_win(mean: float, sd: float, *, inverse: bool = False) -> float:
    """gbstats' chance to win from a Normal posterior of the lift (treatment - control).

    Parameters
    ----------
    mean, sd
        The lift's posterior mean and standard deviation (``sd`` > 0).
    inverse
        True where lower is better (gbstats' inverse metrics, such as the Brier score).

    Returns
    -------
    float
        ``1 - Phi(0; mean, sd)``, or ``Phi(0; mean, sd)`` for an inverse metric.
    """
    win = float(stats.norm.sf(0.0, loc=mean, scale=sd))
    return 1.0 - win if inverse else win


def truncated_normal_mean(mu: float, sigma: float, lo: float, hi: float) -> float:
    """``E[X | lo < X < hi]`` for X ~ Normal(mu, sigma).

    Parameters
    ----------
    mu, sigma
        The Normal's mean and standard deviation (``sigma`` > 0).
    lo, hi
        The truncation bounds (``-inf`` / ``inf`` for none).

    Returns
    -------
    float
        The truncated distribution's mean.
    """
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    return float(stats.truncnorm.mean(a, b, loc=mu, scale=sigma))


def gaussian_risk(mean: float, sd: float) -> tuple[float, float]:
    """gbstats' ``get_risk``: the risk of control and of treatment from a Normal posterior
    of the lift (treatment - control).

    Risk of control is ``P(lift > 0) E[lift | lift > 0]`` (what keeping control loses if
    treatment is better); risk of treatment is ``-P(lift < 0) E[lift | lift < 0]``. For a
    metric where lower is better, swap them (as gbstats does for inverse metrics).

    Parameters
    ----------
    mean, sd
        The lift's posterior mean and standard deviation (``sd`` > 0).

    Returns
    -------
    tuple of float
        (risk of control, risk of treatment), in the lift's units, each >= 0.
    """
    p_control_better = float(stats.norm.cdf(0.0, loc=mean, scale=sd))
    positive = truncated_normal_mean(mean, sd, 0.0, np.inf) if p_control_better < 1 else 0.0
    negative = truncated_normal_mean(mean, sd, -np.inf, 0.0) if p_control_better > 0 else 0.0
    return (1.0 - p_control_better) * positive, -p_control_better * negative


__all__ = ["beta_chance_to_win", "beta_expected_loss", "beta_prob_greater",
           "gaussian_chance_to_win", "gaussian_risk", "truncated_normal_mean"]
