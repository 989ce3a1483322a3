"""Values made safe for JSON: what a response carries must never fail to encode (a 500
raised while answering a 4xx, or a NaN diagnostic, would hide the real answer)."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


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
    return finite(json.loads(json.dumps(value, default=repr)))


def dumps(value: Any) -> str:
    """JSON text of ``value`` for a JSON column (the event store's serializer): orjson, a
    tenth of :func:`json.dumps`' time for a row of floats (the event log writes one per
    request), NaN and infinity as null; what orjson cannot take (integers past 64 bits)
    through :func:`json.dumps`."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(finite(value))
