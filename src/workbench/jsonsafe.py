"""Values made safe for JSON: what a response carries must never fail to encode (a 500
raised while answering a 4xx, or a NaN diagnostic, would hide the real answer)."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (which JSON cannot carry) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """``value`` as JSON can carry it: non-finite floats as None, anything JSON does not
    know (sets, numpy scalars, ...) as its ``repr``."""
    import json

    return finite(json.loads(json.dumps(value, default=repr)))
