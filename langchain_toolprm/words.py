"""Identifiers and values read as words: how call names and values are set against a request's text.

The rule PRM grounds a call in the request's words (`prm.rules`) and the coverage check asks which of
them a call copies (`search.copying`); both read ``getCurrentTime`` and ``get_current_time`` as the
same words, and a nested value as its leaves.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["leaves", "split_identifier"]

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def split_identifier(text: str) -> str:
    """``getCurrentTime`` and ``get_current_time`` as ``get Current Time`` and ``get current time``."""
    return _CAMEL.sub(" ", text).replace("_", " ")


def leaves(value: Any) -> list[Any]:
    """The leaves of a JSON value: what its dicts and lists hold, in order."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]
