import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_toolprm.formats import (
    FencedJSONFormat,
    FormatError,
    HermesFormat,
    JSONListFormat,
    detect_format,
    get_format,
    parse_calls_lenient,
)
from langchain_toolprm.grammar import Grammar
from langchain_toolprm.tools import to_tool_specs

FORMATS = [HermesFormat("<|im_end|>"), JSONListFormat("<|im_end|>"), FencedJSONFormat("<|im_end|>")]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
call_lists = st.lists(
    st.builds(lambda name, args: {"name": name, "arguments": args},
              st.sampled_from(["f", "g.h", "weird name"]),
              st.dictionaries(st.sampled_from(["a", "b", "c d"]), json_values, max_size=3)),
    max_size=3,
).filter(lambda calls: len({json.dumps(c, sort_keys=True) for c in calls}) == len(calls))


def grammar_for(calls):
    props = {p: {} for c in calls for p in c["arguments"]}
    return Grammar(to_tool_specs([{"name": n, "parameters": {"type": "object", "properties": props}}
                                  for n in ("f", "g.h", "weird name")]))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@settings(max_examples=60, deadline=None)
@given(calls=call_lists)
def test_render_is_prefix_monotone_and_parses_back(fmt, calls):
    g = grammar_for(calls)
    path = g.actions_for_calls(calls)
    states = g.walk(path)
    texts = [fmt.render(s) for s in states]
    for before, after, action, state in zip(texts, texts[1:], path, states, strict=False):
        assert after == before + fmt.continuation(state, action)
    parsed = fmt.parse(texts[-1])
    assert parsed.calls == calls
    assert parse_calls_lenient(texts[-1]) == calls


def test_hermes_strict_vs_lenient_on_fenced_output():
    text = '```json\n{\n  "name": "math.hypot",\n  "arguments": {"x": 4, "y": 5}\n}\n```'
    assert HermesFormat().parse(text).calls == []
    assert parse_calls_lenient(text) == [{"name": "math.hypot", "arguments": {"x": 4, "y": 5}}]
    assert FencedJSONFormat().parse(text).calls == [{"name": "math.hypot", "arguments": {"x": 4, "y": 5}}]


def test_parse_errors_and_shapes():
    with pytest.raises(FormatError):
        HermesFormat().parse("<tool_call>\n{not json}\n</tool_call>")
    with pytest.raises(FormatError, match="Unclosed"):
        HermesFormat().parse("<tool_call>{")
    assert JSONListFormat().parse("Hello there").calls == []
    with pytest.raises(FormatError):
        JSONListFormat().parse("[{]")
    call = {"function": {"name": "f", "arguments": '{"a": 1}'}}
    assert parse_calls_lenient(json.dumps([call])) == [{"name": "f", "arguments": {"a": 1}}]
    assert parse_calls_lenient('x {"name": "f", "parameters": {"a": 2}} y') == [{"name": "f", "arguments": {"a": 2}}]


def test_detect_and_get():
    assert detect_format("... <tool_call> ...").name == "hermes"
    assert detect_format(None).name == "json_list"
    assert get_format("fenced_json", "<e>").end_of_turn == "<e>"
    with pytest.raises(ValueError, match="Unknown tool-call format"):
        get_format("xml")


def test_openings_lead_with_the_format_and_cover_every_way_to_start_a_call():
    from langchain_toolprm.formats import CALL_OPENINGS, FencedJSONFormat, HermesFormat, JSONListFormat

    assert HermesFormat().openings() == ("<tool_call>", "```json", "{", "[")
    assert FencedJSONFormat().openings() == ("```json", "<tool_call>", "{", "[")
    assert JSONListFormat().openings() == ("[{", "<tool_call>", "```json", "{")
    for fmt in (HermesFormat(), FencedJSONFormat(), JSONListFormat()):
        assert all(any(o.startswith(c) or c.startswith(o) for o in fmt.openings()) for c in CALL_OPENINGS)


def test_fenced_json_holds_the_list_in_one_fence_one_call_a_line():
    fmt = FencedJSONFormat("<|im_end|>")
    calls = [{"name": "f", "arguments": {"a": 1}}, {"name": "g.h", "arguments": {}}]
    g = grammar_for(calls)
    text = fmt.render(g.walk(g.actions_for_calls(calls))[-1])
    assert text == '```json\n{"name": "f", "arguments": {"a": 1}}\n{"name": "g.h", "arguments": {}}\n```<|im_end|>'
    # What models write besides: a fence per call, commas between the lines, a list.
    for written in ('```json\n{"name": "f", "arguments": {"a": 1}}\n```\n```json\n{"name": "g.h", "arguments": {}}\n```'
                    '<|im_end|>',
                    '```json\n{"name": "f", "arguments": {"a": 1}},\n{"name": "g.h", "arguments": {}}\n```',
                    '```json\n[{"name": "f", "arguments": {"a": 1}}, {"name": "g.h", "arguments": {}}]\n```'):
        assert fmt.parse(written).calls == calls
    with pytest.raises(FormatError, match="fenced block is not valid JSON"):
        fmt.parse('```json\n{"name": "f", "arguments": {"a": 1}}\n{"name": \n```')
