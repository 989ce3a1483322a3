"""CUPED: variance reduction of a read-out with a pre-period covariate (Deng, Xu, Kohavi and
Walker, 2013), from the fold's joint moments alone.

Each unit's outcome Y is replaced by ``Y - theta (X - mean(X))``, X its value of the
metric before the experiment (sent with the feedback). X is measured before assignment,
so it cannot depend on the arm: the adjusted arm means keep their expectations (the lift
is unbiased) while the variance of each falls by the share of Y's variance that X
explains, a factor ``1 - rho^2`` at the best theta. That theta is the within-arm pooled
regression slope ``sum_k cov_k(X, Y) / sum_k var_k(X)`` (pooled across arms, so one
adjustment serves every arm; within arms, so a treatment effect does not leak into it).

Adjusted per arm: ``n``, mean ``ybar_k - theta (xbar_k - xbar)`` (``xbar``: over every
arm), and sum of squared deviations ``m2_y - 2 theta c_xy + theta^2 m2_x`` -- the
:class:`~workbench.aggregates.Moments` the ``continuous`` read-out's model takes.

It applies only where every outcome of the metric has a covariate (in every arm): a mix
would compare adjusted with unadjusted units. Otherwise the read-out is left as it is and
says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from workbench.aggregates import CoMoments, Fold, Moments

METRICS = ("continuous",)  # the read-outs adjusted (binary stays the exact Beta posterior)


def adjust(fold: Fold, arms: Sequence[str], metric: str
           ) -> tuple[list[Moments] | None, dict[str, Any] | None]:
    """The CUPED-adjusted moments of each arm's outcomes, and what the adjustment did.

    Parameters
    ----------
    fold
        The experiment's sufficient statistics (its ``cuped`` joint moments).
    arms
        The arms, in the read-out's order.
    metric
        The read-out's metric; only those in :data:`METRICS` are adjusted.

    Returns
    -------
    moments : list of Moments or None
        Per arm, the adjusted moments; None where the read-out stays unadjusted.
    info : dict or None
        None without any covariate; else ``applied`` and, when applied, ``theta``,
        ``rho`` (the pooled within-arm correlation of X and Y), ``variance_reduction``
        (the share of the outcomes' within-arm variance removed) and ``outcomes`` (with
        a covariate); when not applied, ``reason``.
    """
    pairs = [fold.cuped.get(a, CoMoments()) for a in arms]
    with_covariate = sum(c.n for c in pairs)
    if not with_covariate:
        return None, None
    if metric not in METRICS:
        return None, {"applied": False, "outcomes": with_covariate,
                      "reason": f"CUPED adjusts the {', '.join(METRICS)} metric; "
                                f"the {metric} read-out is left unadjusted"}
    observed = [fold.observed(metric, a) for a in arms]
    if [c.n for c in pairs] != observed:
        return None, {"applied": False, "outcomes": with_covariate,
                      "reason": f"only {with_covariate} of {sum(observed)} outcomes came with "
                                "a covariate; CUPED needs one with every outcome"}
    m2_x, m2_y = sum(c.m2_x for c in pairs), sum(c.m2_y for c in pairs)
    if not np.isfinite([m2_x, m2_y, *(c.cxy for c in pairs)]).all():  # stored before bounds
        return None, {"applied": False, "outcomes": with_covariate,
                      "reason": "the covariates' moments overflow (values too large)"}
    if not (m2_x > 0 and m2_y > 0):
        return None, {"applied": False, "outcomes": with_covariate,
                      "reason": "the covariate (or the outcome) does not vary within arms"}
    cxy = sum(c.cxy for c in pairs)
    theta = cxy / m2_x
    x_bar = sum(c.n * c.mean_x for c in pairs) / with_covariate
    moments = [Moments(c.n, c.mean_y - theta * (c.mean_x - x_bar),
                       max(c.m2_y - 2 * theta * c.cxy + theta * theta * c.m2_x, 0.0))
               if c.n else Moments() for c in pairs]
    reduction = 1.0 - sum(m.m2 for m in moments) / m2_y
    return moments, {"applied": True, "outcomes": with_covariate, "theta": float(theta),
                     "rho": float(cxy / np.sqrt(m2_x * m2_y)),
                     "variance_reduction": float(reduction)}


__all__ = ["METRICS", "adjust"]
