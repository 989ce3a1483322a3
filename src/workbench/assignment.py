"""Which arm a unit sees: a deterministic salted hash, and Thompson-sampling weights.

``assign(experiment, unit, weights)`` hashes ``(experiment, salt, unit)`` with SHA-256 to a
point in [0, 1) and walks the cumulative weights: the same unit gets the same arm for as
long as the weights stay the same, and the split follows the weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np


def bucket(experiment: str, unit: str, salt: str = "") -> float:
    """A uniform point in [0, 1) fixed by the experiment, its salt and the unit."""
    digest = hashlib.sha256(f"{experiment}\x1f{salt}\x1f{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(experiment: str, unit: str, weights: Mapping[str, float], salt: str = "") -> str:
    """The arm of ``unit`` under ``weights`` (normalised here; order is the config's)."""
    total = sum(weights.values())
    point = bucket(experiment, unit, salt) * total
    cumulative = 0.0
    for arm, weight in weights.items():
        cumulative += weight
        if point < cumulative:
            return arm
    return next(reversed(list(weights)))


def thompson_weights(draws: np.ndarray, arms: list[str], *, min_weight: float,
                     higher_is_better: bool = True) -> dict[str, float]:
    """Allocation by Thompson sampling: each arm's probability of being best under the
    metric's posterior ``draws`` (``(samples, arms)``), floored at ``min_weight``."""
    scores = draws if higher_is_better else -draws
    best = np.bincount(np.argmax(scores, axis=1), minlength=len(arms)) / len(scores)
    floored = min_weight + (1.0 - min_weight * len(arms)) * best
    return {arm: float(w) for arm, w in zip(arms, floored, strict=True)}
