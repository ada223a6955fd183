"""Free argument values: where a sampled JSON value ends, and how it is read and checked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["read_value", "value_end"]

_DECODER = json.JSONDecoder()
_STARTS = set('"-0123456789[{tfn')
_NUMBER_TAIL = set("0123456789.eE+-")


def value_end(text: str) -> int | None:
    """Where the first JSON value in ``text`` ends, or ``None`` while it may still grow.

    Strings, arrays and objects end at their closing character; numbers and literals only once a
    following character shows they are over (``12`` may become ``123``). Text that cannot start a
    JSON value ends at once, so a sample that went astray stops costing tokens.
    """
    start = len(text) - len(text.lstrip())
    if start == len(text):
        return None
    if text[start] not in _STARTS:
        return len(text)
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    if isinstance(value, str | list | dict):
        return end
    # A number or literal is over only at a delimiter: "26." may still become "26.2", "1e" "1e5".
    if end < len(text) and text[end] not in _NUMBER_TAIL:
        return end
    return None


def read_value(text: str, schema: Mapping[str, Any]) -> tuple[bool, Any]:
    """Decode a sampled value and bring common near-misses into the schema's type.

    A small model writes ``"5"`` for an integer or ``5`` for a string; the intent is clear and the
    schema check that follows still decides. Returns ``(ok, value)``.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False, None
    kind = schema.get("type")
    if kind in ("integer", "number") and isinstance(value, str):
        try:
            number = json.loads(value)
        except json.JSONDecodeError:
            return True, value
        if isinstance(number, int | float) and not isinstance(number, bool):
            return True, number
    if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return True, json.dumps(value)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return True, int(value)
    return True, value
