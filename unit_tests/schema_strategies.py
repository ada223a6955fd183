"""Hypothesis strategies for adversarial tool schemas, each drawn with whether a valid value exists.

Schemas are built as ``(schema, satisfiable)`` pairs, so the property suite knows the answer by
construction: enums and constants that conflict with their type or length, crossed bounds, anyOf/oneOf
of disjoint branches, nested objects and arrays, unicode names and local ``$defs``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from langchain_toolprm import SearchConfig, SearchResult, run_search

Drawn = tuple[dict[str, Any], bool]

_NAMES = st.text(st.characters(codec="utf-8", categories=("L", "N"), include_characters="_-é中ß"),
                 min_size=1, max_size=6)
# A value of each type, and one of another type that conflicts with it.
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=4),
    "integer": st.integers(-50, 50),
    "number": st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(),
    "null": st.none(),
}
_OTHER = {"string": "integer", "integer": "string", "number": "boolean", "boolean": "null", "null": "string"}


@st.composite
def _plain(draw: st.DrawFn) -> Drawn:
    kind = draw(st.sampled_from(sorted(_VALUES)))
    schema: dict[str, Any] = {"type": kind}
    if kind == "string" and draw(st.booleans()):
        low = draw(st.integers(0, 3))
        schema.update(minLength=low, maxLength=low + draw(st.integers(0, 3)))
    if kind in ("integer", "number") and draw(st.booleans()):
        low = draw(st.integers(-10, 10))
        schema.update(minimum=low, maximum=low + draw(st.integers(0, 20)))
    return schema, True


@st.composite
def _enum(draw: st.DrawFn) -> Drawn:
    """An enum whose members may conflict with the type or the length; satisfiable iff one fits."""
    kind = draw(st.sampled_from(["string", "integer", "number", "boolean"]))
    schema: dict[str, Any] = {"type": kind}
    good = draw(st.lists(_VALUES[kind], max_size=3))
    if kind == "string" and draw(st.booleans()):
        schema["minLength"] = 2
        short = draw(st.lists(st.text(max_size=1), max_size=2))  # members too short for minLength 2
        good = [g for g in good if len(g) >= 2]
        bad = short + draw(st.lists(_VALUES[_OTHER[kind]], max_size=2))
    else:
        bad = draw(st.lists(_VALUES[_OTHER[kind]], max_size=2))
    members = draw(st.permutations(good + bad))
    unique: list[Any] = []
    for member in members:
        if not any(member == u and type(member) is type(u) for u in unique):
            unique.append(member)
    if draw(st.booleans()) and len(unique) == 1:
        return {**{k: v for k, v in schema.items()}, "const": unique[0]}, bool(good)
    schema["enum"] = unique
    return schema, bool(good)


@st.composite
def _crossed(draw: st.DrawFn) -> Drawn:
    low, high = draw(st.sampled_from([("minLength", "maxLength"), ("minimum", "maximum"), ("minItems", "maxItems")]))
    kind = {"minLength": "string", "minimum": "number", "minItems": "array"}[low]
    value = draw(st.integers(1, 5))
    return {"type": kind, low: value, high: value - 1}, False


_LEAVES = st.one_of(_plain(), _plain(), _enum(), _crossed())


def _extend(children: st.SearchStrategy[Drawn]) -> st.SearchStrategy[Drawn]:
    @st.composite
    def obj(draw: st.DrawFn) -> Drawn:
        props = draw(st.dictionaries(_NAMES, children, max_size=3))
        required = [p for p in props if draw(st.booleans())]
        schema = {"type": "object", "properties": {p: s for p, (s, _) in props.items()}, "required": required}
        if draw(st.booleans()):
            schema["additionalProperties"] = False
        return schema, all(props[p][1] for p in required)

    @st.composite
    def arr(draw: st.DrawFn) -> Drawn:
        items, ok = draw(children)
        at_least = draw(st.integers(0, 1))
        schema = {"type": "array", "items": items, "maxItems": 3}
        if at_least:
            schema["minItems"] = 1
        return schema, ok or not at_least

    @st.composite
    def union(draw: st.DrawFn) -> Drawn:
        # branches of distinct top types, so at most one of them matches any value (oneOf stays satisfiable)
        kinds = draw(st.lists(st.sampled_from(["string", "integer", "boolean", "null"]), min_size=1, max_size=3,
                              unique=True))  # not integer with number: they overlap
        branches = [draw(_enum() if draw(st.booleans()) and k != "null" else _plain()) for k in kinds]
        branches = [({**s, "type": k} if "enum" not in s and "const" not in s else s, ok)
                    for k, (s, ok) in zip(kinds, branches, strict=True)]
        distinct = {s["type"]: (s, ok) for s, ok in branches}
        key = draw(st.sampled_from(["anyOf", "oneOf"]))
        return {key: [s for s, _ in distinct.values()]}, any(ok for _, ok in distinct.values())

    return st.one_of(obj(), arr(), union())


SCHEMAS: st.SearchStrategy[Drawn] = st.recursive(_LEAVES, _extend, max_leaves=5)


@st.composite
def tools(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """An OpenAI tool dict, and whether every parameter can take a value (else bind must refuse it)."""
    params = draw(st.dictionaries(_NAMES, SCHEMAS, min_size=1, max_size=3))
    required = [p for p in params if draw(st.booleans())] or [next(iter(params))]
    properties = {p: s for p, (s, _) in params.items()}
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if draw(st.booleans()):  # move one parameter's schema into $defs, as MCP tools write them
        moved = draw(st.sampled_from(sorted(properties)))
        parameters["$defs"] = {"Moved": properties[moved]}
        properties[moved] = {"$ref": "#/$defs/Moved"}
    name = draw(st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=8))
    return ({"type": "function", "function": {"name": f"t_{name}", "description": "A generated tool.",
                                              "parameters": parameters}},
            all(ok for _, ok in params.values()))


def tiny_searches(tool: dict[str, Any], policy: Any, seed: int) -> Iterator[tuple[str, SearchResult]]:
    """The suite's tiny-model searches of ``tool`` under ``tool_choice="required"``: greedy, then beam (N=2, M=2).

    Shared by the property suite and `benchmarks/schema_sweep.py`, so both check the same thing.
    """
    for strategy in ("greedy", "beam"):
        config = SearchConfig(strategy=strategy, num_beams=2, beam_width=2, max_value_tokens=16, max_steps=64,
                              seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield strategy, run_search("Call the tool.", [tool], policy=policy, tool_choice="required", config=config)
