import pytest

from langchain_toolprm.grammar import Action, Call, Grammar, StepTag, ToolChoice
from langchain_toolprm.tools import to_tool_specs

TOOLS = [
    {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}, "flag": {"type": "boolean"}},
        "required": ["city"]}},
    {"name": "ping", "parameters": {"type": "object", "properties": {}}},
]


def grammar(**kw):
    return Grammar(to_tool_specs(TOOLS), **kw)


def test_legal_actions_through_one_call():
    g = grammar()
    s = g.initial()
    d = g.decision(s)
    assert d.tag is StepTag.FUNC_NAME
    assert set(d.actions) == {Action.call("get_weather"), Action.call("ping"), Action.finish()}
    s = g.apply(s, Action.call("get_weather"))
    d = g.decision(s)
    assert Action.end_args() not in d.actions  # required "city" missing
    assert {a.name for a in d.actions} == {"city", "unit", "flag"}
    s = g.apply(s, Action.arg("city"))
    d = g.decision(s)
    assert d.free and d.value_schema == {"type": "string"}
    with pytest.raises(ValueError, match="Illegal"):
        g.apply(s, Action.set_value(3))
    s = g.apply(s, Action.set_value("Paris"))
    s = g.apply(s, Action.arg("unit"))
    d = g.decision(s)
    assert not d.free and {a.value for a in d.actions} == {"c", "f"}
    s = g.apply(s, Action.set_value("f"))
    s = g.apply(s, Action.arg("flag"))
    assert {a.value for a in g.decision(s).actions} == {True, False}
    s = g.apply(s, Action.set_value(True))
    d = g.decision(s)
    assert d.actions == (Action.end_args(),) and d.forced
    s = g.apply(s, Action.end_args())
    assert g.decision(s).forced and g.decision(s).tag is StepTag.FUNC_END
    s = g.apply(s, Action.end_call())
    assert s.call_dicts() == [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "f", "flag": True}}]
    s = g.apply(s, Action.finish())
    assert s.done
    with pytest.raises(ValueError, match="finished"):
        g.decision(s)


def test_tool_choice_modes():
    names = ["get_weather", "ping"]
    assert grammar(tool_choice=ToolChoice.parse("none", names)).decision(grammar().initial()).actions == (
        Action.finish(),)
    required = grammar(tool_choice=ToolChoice.parse("any", names))
    assert Action.finish() not in required.decision(required.initial()).actions
    forced = grammar(tool_choice=ToolChoice.parse({"type": "function", "function": {"name": "ping"}}, names))
    s = forced.initial()
    assert forced.decision(s).actions == (Action.call("ping"),)
    s = forced.walk([Action.call("ping"), Action.end_args(), Action.end_call()])[-1]
    assert forced.decision(s).actions == (Action.finish(),)
    with pytest.raises(ValueError, match="not a bound tool"):
        ToolChoice.parse("nope", names)
    with pytest.raises(ValueError, match="Unsupported"):
        ToolChoice.parse(3.5, names)


def test_max_calls_and_duplicates():
    g = grammar(max_calls=2)
    one = [Action.call("ping"), Action.end_args(), Action.end_call()]
    s = g.walk(one)[-1]
    # ping has no parameters, so its one call is made: it is not offered again (the branch would be dead)
    assert Action.call("ping") not in g.decision(s).actions
    assert Action.call("get_weather") in g.decision(s).actions
    s2 = g.walk([Action.call("get_weather"), Action.arg("city"), Action.set_value("A"), Action.end_args(),
                 Action.end_call(), Action.call("get_weather"), Action.arg("city"), Action.set_value("A")])[-1]
    assert Action.end_args() not in g.decision(s2).actions  # the same call again may not end
    path = g.actions_for_calls([{"name": "get_weather", "arguments": {"city": "A"}},
                                {"name": "get_weather", "arguments": {"city": "B"}}])
    s = g.walk(path[:-1])[-1]
    assert g.decision(s).actions == (Action.finish(),)  # max_calls reached



def test_calls_the_conversation_already_answered_are_not_made_again():
    """An agent that repeats a call whose result it holds loops; other arguments or functions stay open."""
    answered = frozenset({Call.of("get_weather", {"city": "A"}).key(), Call.of("ping", {}).key()})
    g = grammar(answered=answered)
    s = g.initial()
    assert set(g.decision(s).actions) == {Action.call("get_weather"), Action.finish()}
    s = g.walk([Action.call("get_weather"), Action.arg("city"), Action.set_value("A")])[-1]
    assert Action.end_args() not in g.decision(s).actions
    assert Action.arg("unit") in g.decision(s).actions  # the same function with more arguments is another call
    s = g.walk([Action.call("get_weather"), Action.arg("city"), Action.set_value("B")])[-1]
    assert Action.end_args() in g.decision(s).actions


def test_actions_for_calls_round_trip_and_rejects():
    g = grammar()
    calls = [{"name": "get_weather", "arguments": {"unit": "c", "city": "Rome"}}, {"name": "ping", "arguments": {}}]
    path = g.actions_for_calls(calls)
    assert path is not None and path[-1] == Action.finish()
    assert g.walk(path)[-1].call_dicts() == calls
    assert g.actions_for_calls([{"name": "nope", "arguments": {}}]) is None
    assert g.actions_for_calls([{"name": "get_weather", "arguments": {"unit": "k", "city": "x"}}]) is None
    assert g.actions_for_calls([{"name": "get_weather", "arguments": {}}]) is None
    assert g.actions_for_calls([]) == [Action.finish()]


def test_enumerated_values_are_only_those_that_validate():
    (spec,) = to_tool_specs([{"name": "f", "parameters": {"type": "object", "properties": {
        "p": {"type": "string", "enum": ["a", 1, "bb"], "minLength": 2}}, "required": ["p"]}}])
    g = Grammar([spec], ToolChoice("required"))
    state = g.apply(g.apply(g.initial(), Action.call("f")), Action.arg("p"))
    decision = g.decision(state)
    assert [a.value for a in decision.actions] == ["bb"] and decision.forced
    assert not g.is_legal(state, Action.set_value(1)) and not g.is_legal(state, Action.set_value("a"))


def test_anthropic_tool_choice_dicts():
    names = ["get_weather", "ping"]
    assert ToolChoice.parse({"type": "any"}, names) == ToolChoice("required")
    assert ToolChoice.parse({"type": "auto"}, names) == ToolChoice("auto")
    assert ToolChoice.parse({"type": "none"}, names) == ToolChoice("none")
    assert ToolChoice.parse({"type": "tool", "name": "ping"}, names) == ToolChoice("function", "ping")
    with pytest.raises(ValueError, match="not a bound tool"):
        ToolChoice.parse({"type": "tool", "name": "nope"}, names)
    with pytest.raises(ValueError, match="Unsupported"):
        ToolChoice.parse({"type": "sometimes"}, names)
