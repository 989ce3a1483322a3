"""Figure (j): simulation-based calibration of every shipped model at a larger N than
``make test``'s (``workbench.sbc``, the code behind ``workbench check-calibration``).

For each of ``logistic``, ``softmax`` (3 classes), ``linear`` and ``linear`` with
``robust=true``: N datasets drawn from the prior predictive on a 30 × 3 synthetic design,
each fitted with one NUTS chain (200 warmup, 99 draws kept, thinned by 3), the ranks of the
true parameters tested for uniformity (chi-square, 20 bins, Bonferroni over the model's
parameters at α = 0.01). Rank histograms (``MODEL.png``) and ranks (``MODEL.json``) go to
the work directory.

    .venv/bin/python benchmarks/bench_sbc.py [--quick] [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jax

from workbench import sbc

sys.path.insert(0, str(Path(__file__).parent))

QUICK = {"simulations": 200}


def label(model: str, options: dict[str, Any]) -> str:
    return model + "".join(f" {k}={v}".lower() for k, v in options.items())


def run(workdir: Path, *, simulations: int = 1000, seed: int = 0,
        log: Any = print) -> dict[str, Any]:
    """Calibrate every shipped model with ``simulations`` simulations; figures by model."""
    config = sbc.SBCConfig(simulations=simulations)
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"config": {"simulations": simulations, "seed": seed,
                                      "rows": config.rows, "features": config.features,
                                      "warmup": config.warmup, "draws": config.draws,
                                      "thin": config.thin, "bins": config.n_bins,
                                      "alpha": config.alpha}, "models": {}}
    for model, options in sbc.SHIPPED:
        name = label(model, options)
        result = sbc.check(jax.random.PRNGKey(seed), model, options=options, config=config)
        slug = name.replace(" ", "-").replace("=", "-")
        sbc.figure(result).savefig(workdir / f"{slug}.png", dpi=100)
        (workdir / f"{slug}.json").write_text(json.dumps(result.to_dict()))
        out["models"][name] = {
            "passed": result.passed, "seconds": round(result.seconds, 1),
            "divergences": result.divergences, "p_values": result.p_values,
            "min_adjusted_p": min(result.adjusted.values())}
        log(f"  {name}: {'calibrated' if result.passed else 'NOT calibrated'}, min adjusted "
            f"p {min(result.adjusted.values()):.3g}, {result.divergences} divergences, "
            f"{result.seconds:.1f} s")
    return out


def render(r: dict[str, Any], command: str) -> str:
    """The RESULTS.md section."""
    from run import machine_note, table

    c = r["config"]
    rows = [[name, str(len(m["p_values"])), f"{min(m['p_values'].values()):.3g}",
             f"{m['min_adjusted_p']:.3g}", "calibrated" if m["passed"] else "**NOT calibrated**",
             str(m["divergences"]), f"{m['seconds']:.0f} s"]
            for name, m in r["models"].items()]
    detail = [[name, ", ".join(f"{k} {p:.2f}" for k, p in m["p_values"].items())]
              for name, m in r["models"].items()]
    return f"""
## (j) Simulation-based calibration (`workbench check-calibration`)

Command: `{command}`{machine_note(r, 'jax', 'numpyro')}.

Per model, {c['simulations']} datasets drawn from its prior predictive on a {c['rows']} ×
{c['features']} standardised synthetic design (seed {c['seed']}), each fitted with one NUTS chain
({c['warmup']} warmup, {c['draws']} draws kept, one step in {c['thin']}); the rank of each true
scalar parameter among its draws, tested for uniformity by a chi-square over {c['bins']} bins,
Bonferroni-corrected over the model's parameters at α = {c['alpha']}. `make test` runs the same
at 100 simulations (`tests/test_sbc.py`), with a planted prior mismatch that must fail.
Divergences: post-warmup divergent transitions, summed over the
{c['simulations']} × {c['draws'] * c['thin']} of each model. Time: simulating, compiling the
sampler once per model, and fitting one simulation after another.

""" + table(["model", "parameters", "min p", "min adjusted p", "verdict", "divergences",
             "time"], rows) + "\n\nUncorrected p-values per parameter:\n\n" + table(
        ["model", "p-values"], detail) + "\n"


def main() -> None:
    from run import standalone

    standalone("bench_sbc.py", run, render, QUICK, "bench-sbc")


if __name__ == "__main__":
    main()
