"""Where the Predictor meets its features: which rows a request predicts on, and the
startup check that the feature definitions are still the ones a model was trained on.

:class:`~workbench.serving.ModelServer` calls these only for a model trained from a
feature service (see :mod:`workbench.features`, :mod:`workbench.feature_lookup`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from workbench.errors import InputError
from workbench.feature_lookup import OnlineFeatures
from workbench.features import FeatureSpec

logger = logging.getLogger("workbench.features")


def for_posterior(posterior: Any) -> OnlineFeatures | None:
    """The online features of a model trained from a feature service, else None."""
    if not posterior.features:
        return None
    return OnlineFeatures(FeatureSpec.from_dict(posterior.features), posterior.x_loc)


async def request_rows(features: OnlineFeatures | None, tag: str, *, instances: Any,
                       entities: Any, service: Any, max_rows: int
                       ) -> tuple[Any, list[dict[str, Any]] | None]:
    """The rows a request predicts on: its ``instances``, or its ``entities`` resolved
    through the model's feature service (with a note per row)."""
    trained = features.spec.service if features is not None else None
    if service is not None and service != trained:
        raise InputError(f"model {tag} was trained on " + (
            f"feature service {trained!r}" if trained else "raw features (no feature service)")
            + f", not {service!r}", detail={"expected": trained})
    if entities is None:
        if instances is None:
            raise InputError("send instances (rows of feature values) or entities (rows "
                             "of entity keys)", detail={"expected": {"instances": [["..."]]}})
        return instances, None
    if instances is not None:
        raise InputError("send either instances or entities, not both",
                         detail={"hint": "request-time values go inside each entity row"})
    if features is None:
        raise InputError(f"model {tag} was not trained from a feature service; send "
                         "instances", detail={"expected": {"instances": [["..."]]}})
    return await features.resolve(entities, max_rows=max_rows)


def skew_error(served: Sequence[Any]) -> str | None:
    """Check each served model's feature definitions (startup): the error that keeps the
    service not ready under the ``refuse`` policy, else None (mismatches logged)."""
    errors = []
    for s in served:
        if s.features is None:
            continue
        problems = s.features.check()
        for problem in problems:
            logger.error("workbench: %s: %s", s.tag, problem)
        if problems and s.features.policy.skew == "refuse":
            errors.append(f"{s.tag}: " + "; ".join(problems))
    if not errors:
        return None
    return ("feature definitions changed since training (training/serving skew): "
            + " | ".join(errors) + "; retrain, restore the definitions, or set "
            "WORKBENCH_FEATURE_SKEW=warn to serve anyway")
