"""The framework floor: a BentoML async endpoint that does no work (same JSON shape).

It declares its media type as the Predictor does, so that BentoML takes the same (cheapest)
response path for both and the ratio measures the Predictor's own work.
"""

from __future__ import annotations

from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType

JSON = Annotated[dict[str, Any], ContentType("application/json")]


@bentoml.service(name="floor", workers=1)
class Floor:
    @bentoml.api(route="/predict")
    async def predict(self, instances: list[Any], model: str | None = None) -> JSON:
        return {"model": "floor", "predictions": [{"mean": 0.0} for _ in instances]}
