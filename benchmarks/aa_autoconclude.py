"""The auto-conclude rule under continuous monitoring: A/A false-conclusion rates and the
power to conclude a planted lift, from ``workbench.decision.simulate_aa``.

    .venv/bin/python benchmarks/aa_autoconclude.py [--experiments 1000] [--json out.json]

Every row simulates ``--experiments`` binary experiments; outcomes arrive in batches per
arm and the rule is evaluated after every batch until it concludes or the horizon is
reached. Rows: the default rule on the reference schedule (2 arms at 10%, a check every
100 outcomes per arm up to 10,000), other base rates, 3 arms, finer checks, a longer
horizon, the default without its loss limit and a naive rule (P(best) >= 0.95 alone, from
100 outcomes), then a +10% relative lift on the last arm. The ``time`` column is the
simulation's wall time (one process, one core). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

from workbench.decision import AutoConclude, simulate_aa

DEFAULT = AutoConclude()
NO_LOSS = replace(DEFAULT, max_expected_loss=float("inf"))
NAIVE = AutoConclude(prob_best=0.95, max_expected_loss=float("inf"), min_outcomes=100)

# (label, rule, simulate_aa keywords)
ROWS: list[tuple[str, AutoConclude, dict[str, Any]]] = [
    ("default", DEFAULT, {}),
    ("default", DEFAULT, {"rate": 0.02}),
    ("default", DEFAULT, {"rate": 0.3}),
    ("default", DEFAULT, {"arms": 3}),
    ("default", DEFAULT, {"batch": 20}),
    ("default", DEFAULT, {"batch": 200, "horizon": 20_000}),
    ("default, no loss limit", NO_LOSS, {}),
    ("naive: P(best) >= 0.95 alone", NAIVE, {}),
    ("default", DEFAULT, {"lift": 0.1}),
    ("default", DEFAULT, {"lift": 0.1, "batch": 200, "horizon": 20_000}),
    ("default", DEFAULT, {"lift": 0.1, "arms": 3, "batch": 200, "horizon": 20_000}),
]


def rule_text(rule: AutoConclude) -> str:
    loss = "—" if rule.max_expected_loss == float("inf") else f"{rule.max_expected_loss:.1%}"
    return f"{rule.prob_best} / {loss} / {rule.min_outcomes}"


def row(label: str, rule: AutoConclude, result: dict[str, Any], seconds: float) -> str:
    lo, hi = result["false_rate_ci"]
    correct = "—" if result["correct_rate"] is None else f"{result['correct_rate']:.3f}"
    if result["outcomes_median"] is None:
        at = seen = realised = "—"
    else:
        at = f"{result['outcomes_median']:.0f} / {result['outcomes_mean']:.0f}"
        seen = f"{result['posterior_loss']:.4%}"
        realised = f"{result['realised_loss_relative']:.2%}"
    return (f"| {label} | {rule_text(rule)} | {result['arms']} | {result['rate']} | "
            f"{result['lift']:+.0%} | {result['batch']} × {result['checks_max']} | "
            f"**{result['false_rate']:.3f}** [{lo:.3f}, {hi:.3f}] | {correct} | "
            f"{result['concluded']:.3f} | {at} | {seen} | {realised} | "
            f"{result['checks_mean']:.1f} | {seconds:.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every result to this file")
    args = parser.parse_args()
    print("| rule | P(best) / max loss / min outcomes | arms | base rate | lift | "
          "checks (batch × max) | false rate [95% CI] | correct | concluded | "
          "outcomes/arm at conclusion (median / mean) | expected loss seen (of control) | "
          "realised loss (of control) | checks run (mean) | time |")
    print("|" + "---|" * 14)
    results = []
    for label, rule, kwargs in ROWS:
        start = time.perf_counter()
        result = simulate_aa(rule, experiments=args.experiments, samples=args.samples,
                             seed=args.seed, **kwargs)
        print(row(label, rule, result, time.perf_counter() - start), flush=True)
        results.append({"label": label, **result})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
