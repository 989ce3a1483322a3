"""Figure (a): posterior-predictive summary compute, workbench.predict against the classic
``jax.jit(Predictive)`` + ``jnp.quantile`` on the same posterior, in the same process.

    .venv/bin/python benchmarks/bench_compute.py [--repeats 50] [--json out.json]

(``make bench`` runs it through ``benchmarks/run.py``.)

Both compute, per row, the mean, standard deviation and central 90% interval of the
probability of the positive class over 1000 posterior draws of a 30-feature logistic
regression; results must agree to 1e-5. Medians and interquartile ranges over repeats.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import Predictive

from workbench.artifact import Posterior
from workbench.predict import Predictor

DRAWS, FEATURES = 1000, 30


def posterior(seed: int = 0, draws: int = DRAWS) -> Posterior:
    """A 30-feature logistic regression's posterior of ``draws`` known draws."""
    rng = np.random.default_rng(seed)
    samples = {"intercept": rng.normal(0.3, 0.2, (1, draws)).astype(np.float32),
               "coef": rng.normal(0.0, 0.4, (1, draws, FEATURES)).astype(np.float32)}
    return Posterior(model="logistic", kind="binary", options={"prior_scale": 1.0},
                     feature_names=tuple(f"x{i}" for i in range(FEATURES)),
                     target_names=("no", "yes"), samples=samples,
                     x_loc=np.zeros(FEATURES), x_scale=np.ones(FEATURES))


def classic(post: Posterior) -> Any:
    """What the usual template does: Predictive over the draws, then jnp.quantile."""
    def model(X: Any, y: Any = None) -> None:
        b = numpyro.sample("intercept", dist.Normal(0.0, 2.5))
        w = numpyro.sample("coef", dist.Normal(0.0, 1.0).expand([FEATURES]).to_event(1))
        p = numpyro.deterministic("p", jax.nn.sigmoid(b + X @ w))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("obs", dist.Bernoulli(probs=p), obs=y)

    predictive = Predictive(model, posterior_samples=post.flat_samples(),
                            return_sites=["p"])

    @jax.jit
    def summary(key: Any, X: Any) -> Any:
        p = predictive(key, X)["p"]
        lo, hi = jnp.quantile(p, jnp.array([0.05, 0.95]), axis=0)
        return p.mean(0), p.std(0), lo, hi

    return summary


def interleaved(a: Any, b: Any, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Time ``a`` and ``b`` alternately (ABAB...), ``repeats`` times each, after a warm call."""
    a(), b()  # compile / warm
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((a, times[0]), (b, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return spread(times[0]), spread(times[1])


def spread(seconds: list[float]) -> dict[str, float]:
    q1, med, q3 = np.percentile(np.array(seconds) * 1e3, [25, 50, 75])
    return {"median_ms": float(med), "iqr_ms": float(q3 - q1), "repeats": len(seconds)}


def machine() -> dict[str, str]:
    return {"python": platform.python_version(), "jax": jax.__version__,
            "numpyro": numpyro.__version__,
            "cpu": platform.processor() or platform.machine(), "devices": str(jax.devices())}


def run(repeats: int = 50) -> dict[str, Any]:
    """Figure (a) for 1 and 256 rows; raises if the two answers differ by 1e-5 or more."""
    post = posterior()
    ours = Predictor(post)
    ours.warmup()
    peer = classic(post)
    key = jax.random.PRNGKey(0)
    out: dict[str, Any] = {"machine": machine(), "figures": {}}
    for rows in (1, 256):
        X = np.random.default_rng(rows).normal(size=(rows, FEATURES)).astype(np.float32)
        mine = ours.summarize(X, 0.9)
        theirs = [np.asarray(a) for a in peer(key, X)]
        diff = max(float(np.max(np.abs(mine[k] - v))) for k, v in
                   zip(("mean", "std", "lower", "upper"), theirs, strict=True))
        assert diff < 1e-5, f"results differ by {diff}"
        a, b = interleaved(lambda X=X: ours.summarize(X, 0.9),
                           lambda X=X: jax.block_until_ready(peer(key, X)), repeats)
        out["figures"][f"{rows} rows x {DRAWS} draws"] = {
            "workbench": a, "jit(Predictive)+jnp.quantile": b,
            "speedup": b["median_ms"] / a["median_ms"], "max_abs_difference": diff}
    return out


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args()
    out = run(args.repeats)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)
    return out


if __name__ == "__main__":
    main()
