"""The model card that ``GET /metadata`` serves for each model: what to send, what comes
back (with a real sample answer), diagnostics, held-out scores, buckets and device; plus
what was built and how long the process took to be ready.
"""

from __future__ import annotations

import platform
import time
from typing import Any

from workbench import __version__
from workbench.artifact import Posterior
from workbench.jsonsafe import finite
from workbench.lineup import Served
from workbench.predict import DEFAULT_MASS


def describe(served: Served) -> dict[str, Any]:
    """One model's card, as `/metadata` lists it under ``models``."""
    p, pred = served.posterior, served.predictor
    sample = sample_row(p)
    output: dict[str, Any] = {"mean": "float", "std": "float", "interval": ["float", "float"]}
    if p.kind != "regression":
        output |= {"probabilities": {t: "float" for t in p.target_names},
                   "label": f"one of {list(p.target_names)}"}
    if pred.ood is not None:
        output |= {"distance": "float (from the training inputs, in standard deviations)",
                   "ood": f"bool (distance > {pred.ood.threshold:.3g}: a training row's "
                          f"chance {pred.ood.rate:g})"}
    return {
        "tag": served.tag,
        "aliases": served.aliases,
        "model": p.model,
        "kind": p.kind,
        "features": list(p.feature_names),
        "targets": list(p.target_names),
        "input": {"type": "object", "instances": f"list of rows; each a list of "
                  f"{len(p.feature_names)} finite numbers in feature order, or an object "
                  "keyed by feature name", "interval_mass": "number in (0, 1), default 0.9",
                  "draws": f"integer 0..{pred.max_draws}", "model": "tag, name or alias"},
        "output": {"model": "tag", "interval_mass": "float", "predictions": [output]},
        "sample_input": {"instances": [sample], "model": served.tag},
        "sample_output": {"model": served.tag, "interval_mass": DEFAULT_MASS,
                          "predictions": served.sample_output},
        "diagnostics": finite(p.diagnostics),  # one chain has no R-hat: NaN, served as null
        "scores": finite(p.scores),
        "sampler": p.sampler,
        "data": p.data,
        "draws": p.n_draws,
        "buckets": list(pred.buckets),
        "device": pred.device,
    } | ({"feature_service": served.features.describe()} if served.features else {})


def sample_output(served: Served) -> list[dict[str, Any]]:
    """A real answer for /metadata: the prediction for :func:`sample_row`."""
    return served.predictor.predict([sample_row(served.posterior)]).records()


def sample_row(posterior: Posterior) -> list[float]:
    """A typical input row: the training mean of each feature (rounded for display)."""
    return [round(float(v), 4) for v in posterior.x_loc]


def build_info() -> dict[str, Any]:
    import jax
    import numpyro

    return {"workbench": __version__, "jax": jax.__version__, "numpyro": numpyro.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "jax_backend": jax.default_backend()}


def seconds_since_process_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()
