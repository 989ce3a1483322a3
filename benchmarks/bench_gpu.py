"""The work a GPU is for, against the same machine's CPU (issue 17; results: GPU.md).

1. Batch scoring: ``--rows`` rows (1,000,000) × ``--draws`` posterior draws (2,000) of a
   30-feature logistic regression through the batch engine's Predictor
   (:func:`workbench.score.batch_predictor`, chunks of 8,192 rows), in rows × draws per
   second, on each device; the two devices' answers are compared.
2. NUTS with ``--chains`` (32) vectorized chains (``chain_method="vectorized"``) on a
   hierarchical logistic regression over ``--nuts-rows`` rows (100,000) in 50 groups, the
   same seed and settings on each device; seconds and effective samples per second.

    .venv/bin/python benchmarks/bench_gpu.py [--quick] [--out benchmarks/GPU.md]

Without a GPU it runs the CPU side only (what this machine can check). ``--out`` replaces
the section this script writes in that file and keeps the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

SECTION = "## Batch scoring and NUTS at scale (`benchmarks/bench_gpu.py`)"


def devices() -> dict[str, Any]:
    out = {"cpu": jax.devices("cpu")[0]}
    with contextlib.suppress(RuntimeError):  # no GPU backend here
        out["gpu"] = jax.devices("gpu")[0]
    return out


def scoring(device: Any, rows: int, draws: int, chunk: int = 8192) -> dict[str, Any]:
    from bench_compute import posterior

    from workbench.score import batch_predictor

    X = np.random.default_rng(1).normal(size=(rows, 30)).astype(np.float32)
    with jax.default_device(device):
        predictor = batch_predictor(posterior(draws=draws), chunk_rows=chunk)
        predictor.predict(X[:chunk])  # warm
        started = time.perf_counter()
        means = [predictor.predict(X[i:i + chunk]).mean for i in range(0, rows, chunk)]
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rate": rows * draws / seconds, "mean": np.concatenate(means)}


def hierarchical(X: Any, group: Any, groups: int, y: Any = None) -> None:
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    with numpyro.plate("groups", groups):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    coef = numpyro.sample("coef", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    logits = mu + tau * z[group] + X @ coef
    with numpyro.plate("rows", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def nuts(device: Any, rows: int, chains: int, warmup: int, samples: int) -> dict[str, Any]:
    from numpyro.infer import MCMC, NUTS

    rng = np.random.default_rng(2)
    groups = 50
    X = rng.normal(size=(rows, 10)).astype(np.float32)
    group = rng.integers(0, groups, rows)
    logits = 0.2 + 0.5 * rng.normal(size=groups)[group] + X @ rng.normal(0, 0.5, 10)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    with jax.default_device(device):
        mcmc = MCMC(NUTS(hierarchical), num_warmup=warmup, num_samples=samples,
                    num_chains=chains, chain_method="vectorized", progress_bar=False)
        args = (jnp.asarray(X), jnp.asarray(group), groups, jnp.asarray(y))
        started = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(0), *args)
        jax.block_until_ready(mcmc.get_samples())
        seconds = time.perf_counter() - started
    import arviz as az

    ess = float(az.ess(np.asarray(mcmc.get_samples(group_by_chain=True)["mu"])))
    return {"seconds": seconds, "ess_mu": ess, "ess_per_s": ess / seconds}


def report(args: argparse.Namespace) -> str:
    found = devices()
    score = {name: scoring(dev, args.rows, args.draws) for name, dev in found.items()}
    fits = {name: nuts(dev, args.nuts_rows, args.chains, args.warmup, args.samples)
            for name, dev in found.items()}
    cpu_s, cpu_f = score["cpu"], fits["cpu"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [SECTION, "", f"Command: `{args.command}` on {platform.node()} "
             f"({', '.join(str(d) for d in found.values())}), JAX {jax.__version__}, "
             f"NumPyro {numpyro.__version__}, {when}.",
             "", "| work | " + " | ".join(found) + " | GPU / CPU |", "|---|" + "---|" * (
                 len(found) + 1)]
    ratio = (lambda a, b: f"{a / b:.1f}×") if "gpu" in found else (lambda a, b: "—")
    lines.append(f"| scoring {args.rows:,} rows × {args.draws:,} draws (rows × draws/s) | "
                 + " | ".join(f"{s['rate'] / 1e6:.1f} M ({s['seconds']:.1f} s)"
                              for s in score.values())
                 + f" | {ratio(score.get('gpu', cpu_s)['rate'], cpu_s['rate'])} |")
    lines.append(f"| NUTS, {args.chains} vectorized chains, {args.nuts_rows:,} rows, "
                 f"{args.warmup}+{args.samples} (seconds; ESS of mu per s) | "
                 + " | ".join(f"{f['seconds']:.1f} s; {f['ess_per_s']:.1f}/s"
                              for f in fits.values())
                 + f" | {ratio(cpu_f['seconds'], fits.get('gpu', cpu_f)['seconds'])} |")
    if "gpu" in found:
        diff = float(np.max(np.abs(score["gpu"]["mean"] - cpu_s["mean"])))
        lines += ["", f"GPU and CPU scores agree to {diff:.1e} (largest difference of a "
                  "row's mean)."]
    else:
        lines += ["", "No GPU on this machine: the CPU column only."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--draws", type=int, default=2_000)
    parser.add_argument("--nuts-rows", type=int, default=100_000)
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--quick", action="store_true",
                        help="20,000 rows × 200 draws; NUTS 4 chains, 5,000 rows, 100+100")
    parser.add_argument("--out", help="replace this script's section of that file")
    args = parser.parse_args()
    args.command = "python benchmarks/bench_gpu.py" + " --quick" * args.quick
    if args.quick:
        args.rows, args.draws, args.nuts_rows, args.chains = 20_000, 200, 5_000, 4
        args.warmup = args.samples = 100
    text = report(args)
    print(text)
    if args.out:
        path = Path(args.out)
        old = path.read_text() if path.exists() else ""
        kept = old.split(SECTION)[0].rstrip() if SECTION in old else old.rstrip()
        path.write_text((kept + "\n\n" if kept else "") + text)


if __name__ == "__main__":
    main()
