"""The workbench: Bayesian models in production.

Fit NumPyro models, keep self-describing posteriors in BentoML's model store, serve their
posterior predictive with uncertainty, and A/B test model versions.

Submodules load on first use, so ``workbench models list`` and the servers do not pay
for JAX, ArviZ or BentoML until they need them.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# ArviZ 0.x announces its 1.0 refactor on import; we pin <1 on purpose.
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*",
                        category=FutureWarning)

_EXPORTS = {
    "DiagnosticsWarning": "workbench.fit",
    "SamplerConfig": "workbench.fit",
    "ModelSpec": "workbench.models",
    "get_spec": "workbench.models",
    "register": "workbench.models",
    "registered": "workbench.models",
    "Posterior": "workbench.artifact",
    "load": "workbench.artifact",
    "save": "workbench.artifact",
    "Prediction": "workbench.predict",
    "Predictor": "workbench.predict",
}
_EXPORTS |= {"read_out": "workbench.readout"}
_SUBMODULES = ("artifact", "comparison", "control", "datasets", "decision", "errors", "events",
               "fit", "keys", "models", "predict", "readout", "store")
_SUBMODULES += ("sbc",)

__all__ = [
    "DiagnosticsWarning", "ModelSpec", "Posterior", "Prediction", "Predictor", "SamplerConfig",
    "__version__", "artifact", "comparison", "control", "datasets", "decision", "errors",
    "events", "fit", "get_spec", "keys", "load", "models", "predict", "read_out", "readout",
    "register", "registered", "save", "store",
]
__all__ += ["sbc"]

if TYPE_CHECKING:
    from workbench import (
        artifact,
        comparison,
        control,
        datasets,
        decision,
        errors,
        events,
        fit,
        keys,
        models,
        predict,
        readout,
        sbc,
        store,
    )
    from workbench.artifact import Posterior, load, save
    from workbench.fit import DiagnosticsWarning, SamplerConfig
    from workbench.models import ModelSpec, get_spec, register, registered
    from workbench.predict import Prediction, Predictor
    from workbench.readout import read_out


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"workbench.{name}")
    else:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    globals()[name] = value
    return value
