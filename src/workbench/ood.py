"""How far a served row is from the rows its model was trained on.

:func:`summarize` keeps, in the artifact (``Posterior.inputs``), a compact summary of the
standardised training inputs:

- their covariance, shrunk a little toward the identity (constant or collinear features do
  not make it singular), stored as the Cholesky factor of its inverse: a row's **distance**
  is the Mahalanobis distance ``sqrt((x - m)' S^-1 (x - m))``, in standard deviations;
- the distances of *held-out* training rows (20-fold cross-fitting: each fold measured
  against the covariance of the others), sorted (at most ``KEEP`` quantiles of them): the
  threshold for a false-alarm rate ``r`` is their ``1 - r`` quantile, free of the optimism
  of distances to a covariance fitted on the very rows measured (with 30 features and 450
  rows that optimism is large);
- per feature, the training deciles' bin edges, for drift of served inputs
  (:mod:`workbench.drift`).

:class:`Detector` serves it: each row's distance and an ``ood`` flag (distance above the
threshold). A rate finer than one over the training rows cannot be honoured: the threshold
is then the largest held-out distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.artifact import safe_scale

FOLDS = 20
SHRINK = 0.05  # weight of the identity in the covariance (standardised features)
BINS = 10
TIE = 1e-5
KEEP = 2001  # held-out distances kept: all of them, or this many quantiles


def summarize(Xs: np.ndarray, *, seed: int = 0) -> dict[str, np.ndarray]:
    """The summary of standardised training rows ``Xs`` ``(rows, features)``: arrays
    ``loc``, ``factor``, ``held_out``, ``edges`` and ``shares`` (empty with under 3 rows)."""
    Xs = np.asarray(Xs, np.float64)
    n, d = Xs.shape
    if n < 3:
        return {}
    order = np.random.default_rng(seed).permutation(n)
    held_out = np.empty(n)
    for fold in np.array_split(order, min(FOLDS, n)):
        loc, factor = _fit(Xs[np.setdiff1d(order, fold)])
        held_out[fold] = _distance(Xs[fold], loc, factor)
    loc, factor = _fit(Xs)
    edges = np.quantile(Xs, np.linspace(0, 1, BINS + 1)[1:-1], axis=0).T  # (features, 9)
    return {"loc": loc, "factor": factor, "held_out": _kept(held_out), "edges": edges,
            "shares": np.stack([shares(Xs[:, j], edges[j]) for j in range(d)])}


def _kept(held_out: np.ndarray) -> np.ndarray:
    if len(held_out) <= KEEP:
        return np.sort(held_out)
    return np.quantile(held_out, np.linspace(0, 1, KEEP))


def _fit(Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean, and the lower Cholesky factor L of the shrunk covariance's inverse (S^-1 = LL')."""
    loc = Xs.mean(axis=0)
    cov = np.atleast_2d(np.cov(Xs, rowvar=False))
    cov = (1 - SHRINK) * cov + SHRINK * np.eye(len(cov)) * max(np.trace(cov) / len(cov), 1e-6)
    return loc, np.linalg.cholesky(np.linalg.inv(cov))


def _distance(Xs: np.ndarray, loc: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(((Xs - loc) @ factor) ** 2, axis=1))


def shares(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each bin's share of ``column`` (bins split at ``edges``, a value at an edge in the
    bin below). A value within ``TIE`` (relative) of an edge counts as at it: a discrete
    feature's values are edges, and a served row, logged in float32, lands a hair beside
    the training value it equals."""
    upper = np.asarray(edges, np.float64)
    upper = upper + TIE * np.maximum(1.0, np.abs(upper))
    counts = np.bincount(np.searchsorted(upper, column), minlength=len(edges) + 1)
    return counts / max(len(column), 1)


@dataclass(frozen=True)
class Detector:
    """The distance and ``ood`` flag of served rows, from an artifact's input summary.

    Parameters
    ----------
    loc, factor
        The standardised training mean and the inverse covariance's Cholesky factor.
    x_loc, x_scale
        The artifact's feature standardisation (served rows are raw).
    threshold
        Distances above it are flagged.
    rate
        The false-alarm rate asked for (a training row's chance to be flagged).
    """

    loc: np.ndarray
    factor: np.ndarray
    x_loc: np.ndarray
    x_scale: np.ndarray
    threshold: float
    rate: float

    @classmethod
    def from_summary(cls, summary: dict[str, np.ndarray], x_loc: np.ndarray, x_scale: np.ndarray,
                     *, rate: float) -> Detector | None:
        """None when the artifact has no summary (trained before it existed) or ``rate`` is
        0 (no flag)."""
        if not {"loc", "factor", "held_out"} <= set(summary) or not rate > 0:
            return None
        held_out = np.asarray(summary["held_out"])
        return cls(loc=np.asarray(summary["loc"]), factor=np.asarray(summary["factor"]),
                   x_loc=np.asarray(x_loc, np.float64),
                   x_scale=safe_scale(x_scale),
                   threshold=threshold(held_out, rate), rate=float(rate))

    def distance(self, X: np.ndarray) -> np.ndarray:
        """Each raw row's distance (float32, one per row)."""
        Xs = (np.asarray(X, np.float64) - self.x_loc) / self.x_scale
        far = np.finfo(np.float32).max  # a finite answer for any finite row
        return np.minimum(_distance(Xs, self.loc, self.factor), far).astype(np.float32)

    def flags(self, distance: np.ndarray) -> np.ndarray:
        return np.asarray(distance) > self.threshold

    def describe(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "false_alarm_rate": self.rate,
                "distance": "Mahalanobis, in standard deviations of the training inputs"}


def threshold(held_out: np.ndarray, rate: float) -> float:
    """The distance a held-out training row exceeds with probability ``rate`` (at most the
    largest held-out distance)."""
    return float(np.quantile(np.asarray(held_out, np.float64), 1.0 - rate))
