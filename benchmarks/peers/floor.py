"""The framework floor: a BentoML async endpoint that does no work (same JSON shape)."""

from __future__ import annotations

from typing import Any

import bentoml


@bentoml.service(name="floor", workers=1)
class Floor:
    @bentoml.api(route="/predict")
    async def predict(self, instances: list[Any], model: str | None = None) -> dict[str, Any]:
        return {"model": "floor", "predictions": [{"mean": 0.0} for _ in instances]}
