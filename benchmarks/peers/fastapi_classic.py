"""Peer 1, the classic template: a FastAPI app (uvicorn) that loads the posterior draws at
startup and calls NumPyro ``Predictive`` on them for every request, then summarises the
predicted outcome draws with NumPy. Same posterior as the Predictor (``BENCH_MODEL``, a
model-store reference), same model function, same request and response shape.

    BENCH_MODEL=champion uvicorn fastapi_classic:app --app-dir benchmarks/peers

As in NumPyro's tutorials, the prediction is the draws of the observed site (``obs``):
for a binary outcome, Bernoulli draws whose mean estimates P(positive).
"""

from __future__ import annotations

import os
from functools import partial

import jax
import numpy as np
from fastapi import FastAPI
from numpyro.infer import Predictive
from pydantic import BaseModel

from workbench import store
from workbench.models import get_spec

posterior = store.get(os.environ.get("BENCH_MODEL", "champion"))
model = partial(get_spec(posterior.model).fn, **posterior.options)
samples = posterior.flat_samples()
x_loc, x_scale = posterior.x_loc, np.where(posterior.x_scale > 0, posterior.x_scale, 1.0)
app = FastAPI()


class PredictRequest(BaseModel):
    instances: list[list[float]]
    interval_mass: float = 0.9


@app.post("/predict")
def predict(request: PredictRequest) -> dict:
    X = (np.asarray(request.instances, np.float32) - x_loc) / x_scale
    predictive = Predictive(model, posterior_samples=samples, return_sites=["obs"])
    draws = np.asarray(predictive(jax.random.PRNGKey(0), X.astype(np.float32))["obs"])
    tail = (1.0 - request.interval_mass) / 2.0
    lower, upper = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    return {"model": posterior.name, "interval_mass": request.interval_mass,
            "predictions": [{"mean": float(m), "std": float(s), "interval": [float(lo),
                                                                              float(hi)]}
                            for m, s, lo, hi in zip(draws.mean(0), draws.std(0), lower, upper,
                                                    strict=True)]}


@app.get("/readyz")
def readyz() -> dict:
    return {"ready": True}
