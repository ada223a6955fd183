"""Lark rules that write enum and const members as their exact JSON text, for the value grammars.

llguidance reads a JSON schema's numbers with an inexact float parser, so a member such as
``22.549442737217078`` comes out one unit in the last place off (docs/benchmarks.md, "Schema property
suite") and its grammar can write only a value the schema refuses. Here every ``enum`` and
``const`` becomes a choice of literal texts (`canonical_json` of each member that validates against
its schema), and the containers above it (objects, arrays, ``anyOf``, a ``oneOf`` of distinct types)
become Lark rules too; subschemas without members stay llguidance's ``%json``. A schema these rules
do not cover (``uniqueItems`` above a member, say) is left to ``%json`` whole. An optional property
with no valid value is left out (a lone ``%json`` rule of it would not compile).

Objects are written with their properties in schema order and no others, arrays with items of one
schema: a subset of the valid values, which is all a grammar must promise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from langchain_toolprm.grammar import canonical_json
from langchain_toolprm.tools import _unsatisfiable

__all__ = ["value_rule"]

_ANNOTATIONS = frozenset({"title", "description", "examples", "default", "$comment", "deprecated"})
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_KEYS = ("items", "additionalProperties", "not", "contains", "if", "then", "else")


def _has_members(node: Any) -> bool:
    """Whether an ``enum`` or ``const`` keyword occurs in ``node`` or any of its subschemas."""
    if not isinstance(node, Mapping):
        return False
    if "enum" in node or "const" in node:
        return True
    children = [*node.get("properties", {}).values(), *(node.get(k) for k in _SUBSCHEMA_KEYS)]
    children += [child for key in _SUBSCHEMA_LISTS for child in node.get(key, [])]
    return any(_has_members(child) for child in children)


def _compiles(body: str) -> bool:
    """Whether llguidance builds a grammar from the rule ``body`` (true where it is not installed here)."""
    try:
        import llguidance
    except ImportError:  # a client of a served model: the server checks the grammar
        return True
    return not llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(f"start: {body}"))


def _literal(text: str) -> str:
    """A Lark string literal of ``text``.

    Printable characters stand as they are; the rest (DEL and the C1 controls among them, which the Lark
    lexer refuses raw) as JSON escapes, surrogate pairs outside the Basic Multilingual Plane, which the
    lexer reads back to the same characters.
    """
    return '"' + "".join(json.dumps(c, ensure_ascii=not c.isprintable())[1:-1] for c in text) + '"'


class _Rules:
    """The Lark rules of one value, numbered as they are added."""

    def __init__(self, options: Mapping[str, Any]):
        self.lines: list[str] = []
        self._options = dict(options)

    def add(self, body: str) -> str:
        name = f"member_rule_{len(self.lines)}"
        self.lines.append(f"{name}: {body}")
        return name

    def json(self, schema: Mapping[str, Any]) -> str | None:
        """A ``%json`` rule, or ``None`` for a schema with no value (it cannot stand alone as a rule)."""
        body = "%json " + json.dumps({**schema, "x-guidance": self._options})
        return self.add(body) if _unsatisfiable(schema) is None and _compiles(body) else None


def _members(node: Mapping[str, Any], rules: _Rules) -> str | None:
    members = node["enum"] if "enum" in node else [node["const"]]
    validator = Draft202012Validator(dict(node))
    texts = list(dict.fromkeys(canonical_json(m) for m in members if validator.is_valid(m)))
    return rules.add(" | ".join(_literal(t) for t in texts)) if texts else None


def _distinct_types(branches: list[Any]) -> bool:
    """Whether no value can match two of ``branches`` (each one type, all different, not integer with number)."""
    kinds = [b.get("type") if isinstance(b, Mapping) else None for b in branches]
    return (all(isinstance(k, str) for k in kinds) and len(set(kinds)) == len(kinds)
            and not {"integer", "number"} <= set(kinds))


def _object(node: Mapping[str, Any], rules: _Rules) -> str | None:
    properties, required = node.get("properties", {}), node.get("required", [])
    if not set(required) <= set(properties):
        return None
    first: str | None = None  # the properties from here on, none written yet in this object
    rest: str | None = None  # the same, after one has been written (each then starts with ", ")
    for key, schema in reversed(list(properties.items())):
        value = _rule(schema, rules)
        if value is None:
            if key in required:
                return None
            continue  # an optional property this grammar cannot write is left out
        member = f"{_literal(json.dumps(key, ensure_ascii=False) + ': ')} {value}"
        tail = f" {rest}" if rest else ""
        if key in required:
            first, rest = rules.add(f"{member}{tail}"), rules.add(f'", " {member}{tail}')
        else:
            first = rules.add(f"({member}{tail}) | {first}" if first else f"({member}{tail})?")
            rest = rules.add(f'(", " {member})?{tail}')
    return rules.add(f'"{{" {first} "}}"' if first else '"{}"')


def _array(node: Mapping[str, Any], rules: _Rules) -> str | None:
    low, high = int(node.get("minItems", 0)), node.get("maxItems")
    item = _rule(node.get("items", {}), rules)
    if item is None or high == 0:
        return rules.add('"[]"') if low == 0 else None
    more = f'(", " {item}){{{max(low - 1, 0)},{"" if high is None else int(high) - 1}}}'
    return rules.add(f'"[" ({item} {more})? "]"' if low == 0 else f'"[" {item} {more} "]"')


def _rule(node: Any, rules: _Rules) -> str | None:
    """The rule of ``node``'s values, or ``None`` where these rules do not cover it."""
    if not isinstance(node, Mapping):
        return None
    if not _has_members(node):
        return rules.json(node)
    keys = set(node) - _ANNOTATIONS
    if "enum" in node or "const" in node:
        return _members(node, rules)
    if keys in ({"anyOf"}, {"oneOf"}) and (keys == {"anyOf"} or _distinct_types(node["oneOf"])):
        branches = [_rule(branch, rules) for branch in node[keys.pop()]]
        return None if None in branches else rules.add(" | ".join(b for b in branches if b))
    if node.get("type") == "object" and keys <= {"type", "properties", "required", "additionalProperties"}:
        return _object(node, rules)
    if node.get("type") == "array" and keys <= {"type", "items", "minItems", "maxItems"}:
        return _array(node, rules)
    return None


def value_rule(schema: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    """The Lark rules of a ``value`` of ``schema``: members as exact literals, the rest ``%json``.

    Args:
        schema: The value's JSON schema (references already inlined).
        options: llguidance's ``x-guidance`` options for every ``%json`` part.

    Returns:
        Lark text defining the rule ``value`` (and the rules it uses).

    """
    rules = _Rules(options)
    top = _rule(schema, rules) if _has_members(schema) else None
    if top is None:
        return "value: %json " + json.dumps({**schema, "x-guidance": dict(options)})
    return "\n".join([f"value: {top}", *rules.lines])
