"""Figure (k): segment read-outs of a binary metric, pooled against unpooled
(``workbench.segments.read_out``), on simulated experiments at a larger N than ``make
test``'s (``workbench.segment_sim``, the simulation behind ``tests/test_segments.py``).

Two scenarios, N simulations each, of 20 segments (30 to 3,000 trials per arm) × 2 arms:
no effect anywhere, and a small common effect of 0.1 log-odds in every segment. Each is
read out both ways; a false call is a segment declared to differ from the one true effect.
Per-simulation rows (``SCENARIO.json``) go to the work directory.

    .venv/bin/python benchmarks/bench_segments.py [--quick] [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from workbench import segment_sim, segments

sys.path.insert(0, str(Path(__file__).parent))

QUICK = {"simulations": 10}
SCENARIOS = (("no effect", 0.0), ("small common effect", 0.1))
KINDS = {"winner": "false winners", "any": "false winners or losers"}  # no effect
KINDS_EFFECT = {"any": "segments whose 90% interval misses the effect",
                "sign": "losers (opposite sign)"}


def run(workdir: Path, *, simulations: int = 100, seed: int = 10, warmup: int = 500,
        samples: int = 1000, log: Any = print) -> dict[str, Any]:
    """Both scenarios, ``simulations`` each (scenario ``j`` with seed ``seed + j``), read
    out with one sampler of ``warmup`` and ``samples`` draws (``segments.sampler``'s
    defaults); the summaries and times by scenario."""
    workdir.mkdir(parents=True, exist_ok=True)
    fit = segments.sampler(warmup=warmup, samples=samples)
    out: dict[str, Any] = {"config": {"simulations": simulations, "seed": seed,
                                      "warmup": warmup, "samples": samples,
                                      "sizes": segment_sim.SIZES.tolist(),
                                      "threshold": segments.THRESHOLD}, "scenarios": {}}
    for j, (name, effect) in enumerate(SCENARIOS):
        started = time.perf_counter()
        rows, summary = segment_sim.run(effect, simulations=simulations, seed=seed + j,
                                        fit=fit)
        seconds = time.perf_counter() - started
        (workdir / f"{name.replace(' ', '-')}.json").write_text(json.dumps(rows))
        out["scenarios"][name] = summary | {"seed": seed + j, "seconds": round(seconds, 1)}
        any_ = summary["calls"]["any"]
        log(f"  {name}: false calls pooled {any_['pooled']['total']}, unpooled "
            f"{any_['unpooled']['total']} (sign test p {any_['sign_test_p']:.1e}); overall "
            f"effect covered in {summary['covered']} of {simulations}; "
            f"{summary['divergences']} divergences; {seconds:.0f} s")
    return out


def model_block() -> str:
    """The hierarchical model as ``workbench.segments``' docstring writes it."""
    block = (segments.__doc__ or "").split("::\n\n", 1)[-1].split("\n\n", 1)[0]
    return textwrap.dedent(block)


def _pair(calls: dict[str, Any], key: str, fmt: str = "{}") -> str:
    return f"{fmt.format(calls['pooled'][key])} / {fmt.format(calls['unpooled'][key])}"


def render(r: dict[str, Any], command: str) -> str:
    """The RESULTS.md section."""
    from run import machine_note, table

    c = r["config"]
    rows = []
    for name, s in r["scenarios"].items():
        for kind, label in (KINDS if s["effect"] == 0 else KINDS_EFFECT).items():
            calls = s["calls"][kind]
            rows.append([f"{name} ({s['effect']:g})",
                         f"{s['simulations']} × {s['segments']}", label,
                         _pair(calls, "total"), _pair(calls, "share", "{:.3f}"),
                         _pair(calls, "with_any"),
                         f"{calls['fewer']} / {calls['more']}",
                         f"{calls['sign_test_p']:.1e}",
                         f"{s['covered']} of {s['simulations']}", str(s["divergences"])])
    wins = "; ".join(f"{name}: pooled {s['wins']['pooled']}, unpooled "
                     f"{s['wins']['unpooled']}" for name, s in r["scenarios"].items()
                     if s["effect"] > 0)
    seconds = sum(s["seconds"] for s in r["scenarios"].values())
    return f"""
## (k) Segment read-outs: pooled against unpooled

Command: `{command}`{machine_note(r, 'jax', 'numpyro')}.

Reading each of many segments on its own (independent Beta(1, 1)-Binomial posteriors per
arm) and calling a segment a winner at P(effect > 0) ≥ {c['threshold']}, about one segment in
twenty is a "winner" by chance when nothing works anywhere. `workbench.segments.read_out` also
fits one hierarchical model to every segment's counts: a segment's effect is the overall effect
plus a deviation the data must support, so small segments shrink toward the overall effect
(log-odds, per segment `s` and treatment arm `k`; one NUTS chain, {c['warmup']} warmup,
{c['samples']} draws):

```
{model_block()}
```

Per scenario, {c['simulations']} simulated experiments of {len(c['sizes'])} segments
({c['sizes'][0]} to {c['sizes'][-1]} trials per arm) × 2 arms, base rates uniform on 5% to 30%,
the same true effect in every segment (`workbench.segment_sim`, seeds {c['seed']} and
{c['seed'] + 1}; `make test` runs 40 per scenario on seeds 1 and 2 in `tests/test_segments.py`).
With no effect, a winner is a false call, and a loser a false call of the other sign; with a
common effect of 0.1, a segment is wrongly singled out when its 90% interval misses 0.1 (its
losers are a part of those). Figures are pooled / unpooled; "fewer / more": simulations in which
pooling made fewer (more) false calls than not pooling; sign test: one-sided, that it makes
fewer. Coverage: the overall effect's 90% interval holds the truth. Divergences: post-warmup,
summed over the simulations.

""" + table(["scenario", "simulations × segments", "false call", "count", "share of segments",
             "simulations with any", "fewer / more", "sign test p", "overall effect covered",
             "divergences"], rows) + f"""

True winners found (of {c['simulations'] * len(c['sizes'])} segments, all truly better): {wins}.
Time: {seconds:.0f} s for both scenarios (the sampler compiled once, simulations one after
another).
"""


def main() -> None:
    from run import standalone

    standalone("bench_segments.py", run, render, QUICK, "bench-segments")


if __name__ == "__main__":
    main()
