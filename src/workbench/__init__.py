"""The workbench: Bayesian models in production.

Fit NumPyro models, keep self-describing posteriors in BentoML's model store, serve their
posterior predictive with uncertainty, and A/B test model versions.
"""

from __future__ import annotations

import warnings

__version__ = "0.1.0"

# ArviZ 0.x announces its 1.0 refactor on import; we pin <1 on purpose.
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*",
                        category=FutureWarning)

from workbench import datasets, errors, store  # noqa: E402
from workbench.artifact import Posterior, load, save  # noqa: E402
from workbench.fit import DiagnosticsWarning, SamplerConfig, fit  # noqa: E402
from workbench.models import ModelSpec, get_spec, register, registered  # noqa: E402
from workbench.predict import Prediction, Predictor, predict  # noqa: E402

__all__ = [
    "DiagnosticsWarning",
    "ModelSpec",
    "Posterior",
    "Prediction",
    "Predictor",
    "SamplerConfig",
    "__version__",
    "datasets",
    "errors",
    "fit",
    "get_spec",
    "load",
    "predict",
    "register",
    "registered",
    "save",
    "store",
]
