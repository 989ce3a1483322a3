"""Simulated segment experiments with one true effect, and the false segment calls that
each read-out of :func:`workbench.segments.read_out` makes on them.

Twenty segments of 30 to 3,000 trials per arm (a few small, a few large), base rates uniform
on 5% to 30%, and the same treatment effect (log-odds) in every segment: with no effect, a
segment declared a winner is a false call; with a common effect, a segment said to differ
from it is. :func:`run` reads out ``simulations`` such experiments both ways and sums the
false calls; ``tests/test_segments.py`` and ``benchmarks/bench_segments.py`` use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from workbench import segments
from workbench.segments import Effect, Fit

SEGMENTS = 20
# trials per arm and segment, 30 to 3000: a few small segments, a few large
SIZES = np.round(np.geomspace(30, 3000, SEGMENTS)).astype(int)
READOUTS = ("pooled", "unpooled")


def simulate(rng: np.random.Generator, effect: float | Sequence[float],
             sizes: Sequence[int] = SIZES, arms: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``(successes, trials)`` shaped (segments, arms), control in column 0: base
    rates uniform on 5%..30% per segment, every treatment arm ``effect`` (log-odds, one per
    treatment arm) above it in every segment; ``sizes``: trials per arm of each segment."""
    base = rng.uniform(0.05, 0.3, len(sizes))
    logit = np.log(base / (1 - base))
    effects = np.broadcast_to(np.concatenate([[0.0], np.atleast_1d(effect)]), (arms,))
    trials = np.repeat(np.asarray(sizes)[:, None], arms, axis=1)
    return rng.binomial(trials, 1 / (1 + np.exp(-(logit[:, None] + effects)))), trials


def kinds(effect: float) -> tuple[str, str]:
    """The kinds of false call :func:`false_calls` counts for a true ``effect``."""
    return ("winner", "any") if effect == 0 else ("sign", "any")


def false_calls(effects: Sequence[Effect], effect: float) -> dict[str, int]:
    """False segment calls of one read-out (every segment's ``pooled`` or ``unpooled``
    effect), given the one true ``effect`` of every segment.

    ``effect == 0``: every segment declared a winner (P(effect > 0) >= the threshold) is
    false; ``any`` also counts losers (P(effect > 0) <= 1 - it), a false call of the other
    sign. ``effect > 0``: every segment is truly better, so a false call is a segment said
    to have a different effect: declared a loser (``sign``: the opposite sign) or with a
    90% interval that excludes the true common effect (``any``, which includes ``sign``).
    """
    if effect == 0:
        return {"winner": sum(e.winner for e in effects),
                "any": sum(e.winner or e.loser for e in effects)}
    return {"sign": sum(e.loser for e in effects),
            "any": sum(not e.log_odds[1] <= effect <= e.log_odds[2] for e in effects)}


def run(effect: float, *, simulations: int, seed: int, fit: Fit | None = None,
        sizes: Sequence[int] = SIZES) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read out ``simulations`` simulated experiments (two arms, ``effect`` in every
    segment) both ways.

    Parameters
    ----------
    effect : float
        The true treatment effect, log-odds, the same in every segment (>= 0).
    simulations : int
        How many experiments; simulation ``i`` draws its counts from
        ``np.random.default_rng([seed, i])`` and is read out with seed ``i``.
    seed : int
        The scenario's seed.
    fit : callable, optional
        A :func:`workbench.segments.sampler`, reused across simulations (it compiles once).
    sizes : sequence of int
        Trials per arm of each segment.

    Returns
    -------
    rows : list of dict
        Per simulation: both read-outs' false calls (:func:`false_calls`), ``wins`` (the
        segments each declared winners), ``covered`` (the overall effect's 90% interval
        holds the truth) and the pooled fit's ``divergences``.
    summary : dict
        :func:`summarize` of the rows.
    """
    fit = fit or segments.sampler()
    rows = []
    for i in range(simulations):
        successes, trials = simulate(np.random.default_rng([seed, i]), effect, sizes)
        out = segments.read_out(i, successes, trials, fit=fit)
        by = {m: [getattr(e, m) for e in out.effects] for m in READOUTS}
        d = out.overall[0]["d"]
        rows.append({m: false_calls(by[m], effect) for m in READOUTS} | {
            "wins": [sum(e.winner for e in by[m]) for m in READOUTS],
            "covered": bool(d[1] <= effect <= d[2]),
            "divergences": out.diagnostics["divergences"]})
    return rows, summarize(rows, effect, len(sizes))


def summarize(rows: Sequence[dict[str, Any]], effect: float,
              segment_count: int = SEGMENTS) -> dict[str, Any]:
    """Totals over simulations (JSON-able).

    ``calls``, per kind of false call (:func:`kinds`) and read-out: the ``total``, its
    ``share`` of the simulations × segments, and the simulations ``with_any``; ``fewer``
    and ``more``: simulations where pooling made fewer (more) such calls than not pooling,
    and ``sign_test_p``, one-sided, that it makes fewer (1.0 when none differ). Then the
    true ``wins`` of each read-out, the overall effect's 90% interval ``covered`` the truth
    in how many simulations, and the pooled fits' ``divergences``.
    """
    calls: dict[str, Any] = {}
    for kind in kinds(effect):
        counts = {m: np.array([r[m][kind] for r in rows]) for m in READOUTS}
        fewer = int((counts["pooled"] < counts["unpooled"]).sum())
        more = int((counts["pooled"] > counts["unpooled"]).sum())
        calls[kind] = {m: {"total": int(c.sum()),
                           "share": float(c.sum() / (len(rows) * segment_count)),
                           "with_any": int((c > 0).sum())} for m, c in counts.items()} | {
            "fewer": fewer, "more": more,
            "sign_test_p": float(stats.binomtest(fewer, fewer + more, 0.5,
                                                 alternative="greater").pvalue)
            if fewer + more else 1.0}
    return {"effect": effect, "simulations": len(rows), "segments": segment_count,
            "calls": calls,
            "wins": {m: int(sum(r["wins"][j] for r in rows)) for j, m in enumerate(READOUTS)},
            "covered": int(sum(r["covered"] for r in rows)),
            "divergences": int(sum(r["divergences"] for r in rows))}
