"""Figure (d): MCMC fit time of the demo's model with the demo's settings (logistic
regression on breast_cancer, NUTS, 2 chains x 500 warmup + 1000 draws), ``workbench.fit``
against NumPyro's ``MCMC(NUTS)`` alone on the same standardised training rows.

    .venv/bin/python benchmarks/bench_fit.py [--repeats 2] [--json out.json]

The workbench also computes diagnostics (R-hat, ESS) and held-out scores; the peer only
samples. Runs alternate (workbench, peer, workbench, peer, ...), after one small untimed
fit of each, so that neither pays the process's one-off costs (JAX's backend start,
imports such as ArviZ's ~3 s) for the other.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from functools import partial
from typing import Any

import jax
import numpy as np

from workbench import datasets
from workbench.artifact import Posterior
from workbench.fit import DiagnosticsWarning, SamplerConfig, fit
from workbench.models import get_spec

DEMO = SamplerConfig(warmup=500, samples=1000, chains=2, seed=0)  # workbench.demo.run's


def ours(config: SamplerConfig = DEMO) -> Posterior:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        return fit("logistic", datasets.load("breast_cancer"), name="bench-demo",
                   config=config, progress=False)


def peer(config: SamplerConfig = DEMO) -> dict[str, Any]:
    """NumPyro alone: the same split, standardisation, model and sampler settings."""
    from numpyro.infer import MCMC, NUTS

    data = datasets.load("breast_cancer")
    train, _ = datasets.split(data, test_fraction=config.test_fraction, seed=config.seed)
    loc, scale = train.X.mean(axis=0), train.X.std(axis=0)
    Xs = ((train.X - loc) / np.where(scale > 0, scale, 1.0)).astype(np.float32)
    mcmc = MCMC(NUTS(partial(get_spec("logistic").fn, prior_scale=1.0),
                     target_accept_prob=config.target_accept,
                     max_tree_depth=config.max_tree_depth),
                num_warmup=config.warmup, num_samples=config.samples,
                num_chains=config.chains, chain_method="sequential", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(config.seed), Xs, train.y.astype(np.int32))
    return jax.block_until_ready(mcmc.get_samples())


def spread(seconds: list[float]) -> dict[str, Any]:
    q1, med, q3 = np.percentile(seconds, [25, 50, 75])
    return {"median_s": float(med), "iqr_s": float(q3 - q1), "repeats": len(seconds),
            "all_s": [round(s, 2) for s in seconds]}


def run(repeats: int = 2, config: SamplerConfig = DEMO, log: Any = print
        ) -> tuple[dict[str, Any], Posterior]:
    """Time both ``repeats`` times, alternating; returns the figure and our first posterior."""
    mine: list[float] = []
    theirs: list[float] = []
    posterior: Posterior | None = None
    tiny = SamplerConfig(warmup=20, samples=20, chains=config.chains, seed=config.seed)
    ours(tiny), peer(tiny)  # one-off costs, untimed
    for r in range(repeats):
        start = time.perf_counter()
        fitted = ours(config)
        mine.append(time.perf_counter() - start)
        posterior = posterior or fitted
        start = time.perf_counter()
        peer(config)
        theirs.append(time.perf_counter() - start)
        log(f"  (d) fit {r + 1}/{repeats}: workbench.fit {mine[-1]:.1f}s, "
            f"NumPyro MCMC alone {theirs[-1]:.1f}s")
    assert posterior is not None
    a, b = spread(mine), spread(theirs)
    figure = {"settings": {"warmup": config.warmup, "samples": config.samples,
                           "chains": config.chains, "chain_method":
                           posterior.sampler.get("chain_method")},
              "workbench.fit": a, "numpyro MCMC alone": b,
              "ratio": a["median_s"] / b["median_s"],
              "diagnostics": {k: posterior.diagnostics[k] for k in
                              ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences")}}
    return figure, posterior


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    figure, _ = run(args.repeats)
    text = json.dumps(figure, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
