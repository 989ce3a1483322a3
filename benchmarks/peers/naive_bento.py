"""Peer 2, a naive BentoML service: default configuration, a synchronous API, ``jax.jit``
of NumPyro ``Predictive`` plus ``jnp.quantile`` over the draws, no shape buckets (each new
row count compiles on first use). Same posterior (``BENCH_MODEL``), model and JSON shape.

    BENCH_MODEL=champion bentoml serve naive_bento:Naive --working-dir benchmarks/peers
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import bentoml

with bentoml.importing():
    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.infer import Predictive

    from workbench import store
    from workbench.models import get_spec


@bentoml.service(name="naive")
class Naive:
    def __init__(self) -> None:
        self.posterior = store.get(os.environ.get("BENCH_MODEL", "champion"))
        model = partial(get_spec(self.posterior.model).fn, **self.posterior.options)
        predictive = Predictive(model, posterior_samples=self.posterior.flat_samples(),
                                return_sites=["obs"])

        @jax.jit
        def summary(key: Any, X: Any, q: Any) -> Any:
            draws = predictive(key, X)["obs"].astype(jnp.float32)
            lower, upper = jnp.quantile(draws, q, axis=0)
            return draws.mean(0), draws.std(0), lower, upper

        self.summary = summary
        self.x_loc = self.posterior.x_loc
        self.x_scale = np.where(self.posterior.x_scale > 0, self.posterior.x_scale, 1.0)

    @bentoml.api(route="/predict")
    def predict(self, instances: list[list[float]], interval_mass: float = 0.9
                ) -> dict[str, Any]:
        X = ((np.asarray(instances) - self.x_loc) / self.x_scale).astype(np.float32)
        tail = (1.0 - interval_mass) / 2.0
        mean, std, lower, upper = (np.asarray(a).tolist() for a in self.summary(
            jax.random.PRNGKey(0), X, jnp.array([tail, 1.0 - tail])))
        return {"model": self.posterior.name, "interval_mass": interval_mass,
                "predictions": [{"mean": m, "std": s, "interval": [lo, hi]}
                                for m, s, lo, hi in zip(mean, std, lower, upper, strict=True)]}
