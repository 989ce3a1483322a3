"""Exact answers that the tests check the read-outs' Monte Carlo against."""

from __future__ import annotations

import numpy as np
from scipy import special


def prob_b_beats_a(a_alpha: float, a_beta: float, b_alpha: float, b_beta: float) -> float:
    """P(p_B > p_A) for independent Beta posteriors, exactly (integer ``b_alpha``)."""
    i = np.arange(int(b_alpha))
    log_terms = (special.betaln(a_alpha + i, a_beta + b_beta) - np.log(b_beta + i)
                 - special.betaln(1 + i, b_beta) - special.betaln(a_alpha, a_beta))
    return float(np.exp(special.logsumexp(log_terms)))
