"""What a request says about its unit: the unit's id (:func:`check_unit`, the key of the
sticky assignment) and its attributes (:func:`check_attributes`), such as a country or a
device, which the read-out can break a binary metric down by (``segment_by`` in the
experiment config; :mod:`workbench.segments`).

Attributes are a flat object of short strings, stored with each prediction. They are
checked before anything is routed or logged, and a bad one is refused with what was
expected.
"""

from __future__ import annotations

import json
import re
from typing import Any

from workbench.errors import InputError

MAX_UNIT = 256  # the unit column's width
MAX_ATTRIBUTES = 8  # per request
MAX_VALUE = 128  # characters of an attribute's value
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")  # an attribute's name (segment_by)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

EXPECTED_ATTRIBUTES = (f"an object of at most {MAX_ATTRIBUTES} attributes, e.g. "
                       '{"country": "DE", "device": "ios"}: names of letters, digits, '
                       "'_', '.' or '-' (at most 64 characters), values strings, numbers or "
                       f"booleans of at most {MAX_VALUE} characters, no control characters")


def check_unit(unit: Any, what: str = "unit") -> str:
    """The unit's id as a string, or :class:`InputError` that says what was expected."""
    if isinstance(unit, bool) or not isinstance(unit, str | int) or unit == "" or \
            len(str(unit)) > MAX_UNIT or "\x00" in str(unit):
        raise InputError(f"unit must be a non-empty string or integer (at most {MAX_UNIT} "
                         "characters, no NUL)", detail={"expected": f"the {what} this request "
                                                                    "is for"})
    return str(unit)


def check_attributes(attributes: Any) -> dict[str, str] | None:
    """The unit's attributes as ``{name: value}`` strings (None when not sent), or
    :class:`InputError`. Numbers and booleans are kept as their JSON text (``3``,
    ``true``), so the same attribute sent either way is one segment."""
    if attributes is None:
        return None
    if not isinstance(attributes, dict):
        raise InputError(f"attributes must be an object, got {type(attributes).__name__}",
                         detail={"expected": EXPECTED_ATTRIBUTES})
    if len(attributes) > MAX_ATTRIBUTES:
        raise InputError(f"too many attributes: {len(attributes)}",
                         detail={"expected": EXPECTED_ATTRIBUTES})
    out: dict[str, str] = {}
    for name, value in attributes.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InputError(f"invalid attribute name {str(name)[:70]!r}",
                             detail={"expected": EXPECTED_ATTRIBUTES})
        text = _text(value)
        if text is None:
            raise InputError(f"invalid value of attribute {name!r}: {str(value)[:70]!r}",
                             detail={"expected": EXPECTED_ATTRIBUTES})
        out[name] = text
    return out


def stored(text: Any) -> Any:
    """Attributes as stored (JSON text, or None), decoded; None where they are not JSON:
    they come from clients, and a read never fails on them."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return None


def value_of(attributes: Any, name: str | None) -> str | None:
    """The value of attribute ``name`` in a stored attributes object (None when the row has
    none, or the object is not one this module wrote): stored data never fails a read."""
    if name is None or not isinstance(attributes, dict):
        return None
    value = attributes.get(name)
    return value if isinstance(value, str) and value else None


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    if not 0 < len(text) <= MAX_VALUE or _CONTROL.search(text):
        return None
    return text
