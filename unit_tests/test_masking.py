"""Function masking: consistent in tools, references, conversation and trajectories; seeded; invertible."""

from __future__ import annotations

import random

from langchain_toolprm.data.labels import label_path
from langchain_toolprm.data.masking import Mask, make_mask, mask_actions, mask_example, random_identifier
from langchain_toolprm.data.rollouts import prepare
from langchain_toolprm.data.sources import Example
from langchain_toolprm.grammar import StepTag

TOOLS = [
    {"name": "get_weather", "description": "Weather in a city.", "parameters": {
        "type": "object", "required": ["city"],
        "properties": {"city": {"type": "string", "description": "The city."},
                       "unit": {"type": "string", "enum": ["c", "f"]}}}},
    {"name": "book.table", "description": "Book a table.", "parameters": {
        "type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}},
]
EXAMPLE = Example(
    id="q1",
    source="test",
    messages=[
        {"role": "user", "content": "Weather in Paris, then book."},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "name": "get_weather"},
        {"role": "user", "content": "Now book in Paris."},
    ],
    tools=TOOLS,
    reference=[{"book.table": {"city": ["Paris"]}}, {"get_weather": {"city": ["Paris"], "unit": ["", "c"]}}],
)


def test_identifiers_are_valid_and_seeded() -> None:
    names = [random_identifier(random.Random(7)) for _ in range(3)]
    assert len(set(names)) == 1
    assert names[0].isidentifier()


def test_mask_is_consistent_everywhere() -> None:
    masked, mask = mask_example(EXAMPLE, seed=0)
    weather, book = mask.function("get_weather"), mask.function("book.table")
    assert {t["name"] for t in masked.tools} == {weather, book}
    assert weather != "get_weather" and weather.isidentifier()
    tool = next(t for t in masked.tools if t["name"] == weather)
    city = mask.parameter("get_weather", "city")
    assert tool["parameters"]["required"] == [city]
    assert tool["description"] == "Weather in a city."
    assert tool["parameters"]["properties"][city]["description"] == "The city."
    assert masked.reference[1] == {weather: {city: ["Paris"], mask.parameter("get_weather", "unit"): ["", "c"]}}
    call = masked.messages[1]["tool_calls"][0]["function"]
    assert call == {"name": weather, "arguments": {city: "Paris"}}
    assert masked.messages[2]["name"] == weather
    assert masked.messages[0]["content"] == EXAMPLE.messages[0]["content"]  # the query is not rewritten


def test_mask_is_seeded_per_query_and_invertible() -> None:
    _, first = mask_example(EXAMPLE, seed=0)
    _, again = mask_example(EXAMPLE, seed=0)
    _, other = mask_example(EXAMPLE, seed=1)
    assert first.to_json() == again.to_json()
    assert first.functions != other.functions
    inverse = first.inverse()
    assert inverse.function(first.function("get_weather")) == "get_weather"
    assert inverse.parameter(first.function("get_weather"), first.parameter("get_weather", "city")) == "city"
    assert Mask.from_json(first.to_json()) == first


def test_masked_trajectories_keep_their_labels() -> None:
    ready = prepare(EXAMPLE)
    assert ready is not None
    masked, mask = mask_example(EXAMPLE, seed=3)
    masked_ready = prepare(masked)
    assert masked_ready is not None
    actions = mask_actions(ready.reference, mask)
    assert actions == masked_ready.reference
    assert [a.tag for a in actions] == [a.tag for a in ready.reference]
    names = [a.name for a in actions if a.tag in (StepTag.FUNC_NAME, StepTag.ARG_NAME)]
    assert "get_weather" not in names and "city" not in names
    wrong = [*ready.reference[:2], ready.reference[2].__class__(StepTag.ARG_VALUE, value_json='"Rome"')]
    assert label_path(EXAMPLE.reference, wrong) == label_path(masked.reference, mask_actions(wrong, mask))


def test_parameter_names_unique_within_a_function() -> None:
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {f"p{i}": {} for i in range(50)}}}]
    mask = make_mask(tools, random.Random(0))
    assert len(set(mask.parameters["f"].values())) == 50
