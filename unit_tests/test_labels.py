"""Step labels against a reference: order-free parallel calls, BFCL's optional rule, equivalence."""

from __future__ import annotations

from langchain_toolprm.data.labels import ReferenceMatcher, label_path, same_value
from langchain_toolprm.data.rollouts import labelled_length
from langchain_toolprm.grammar import Action, Grammar
from langchain_toolprm.tools import to_tool_specs

TOOLS = [
    {"name": "weather", "description": "Weather in a city.", "parameters": {
        "type": "object", "required": ["city"],
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]},
                       "days": {"type": "number"}}}},
    {"name": "book", "description": "Book a table.", "parameters": {
        "type": "object", "required": ["where"],
        "properties": {"where": {"type": "string"}, "options": {"type": "object"}}}},
]
SPECS = to_tool_specs(TOOLS)
GRAMMAR = Grammar(SPECS)


def path(*calls: dict) -> list[Action]:
    actions = GRAMMAR.actions_for_calls(list(calls))
    assert actions is not None
    return actions


def test_reference_path_is_all_positive() -> None:
    reference = [{"weather": {"city": ["Paris"], "unit": ["c", ""]}}]
    assert all(label_path(reference, path({"name": "weather", "arguments": {"city": "Paris", "unit": "c"}})))


def test_wrong_function_is_negative_from_there_on() -> None:
    reference = [{"weather": {"city": ["Paris"]}}]
    labels = label_path(reference, path({"name": "book", "arguments": {"where": "Paris"}}))
    assert labels == [False] * len(labels)


def test_wrong_value_is_negative_at_the_value() -> None:
    reference = [{"weather": {"city": ["Paris"]}}]
    actions = path({"name": "weather", "arguments": {"city": "Rome"}})
    assert label_path(reference, actions) == [True, True, False, False, False, False]


def test_parallel_calls_match_in_any_order() -> None:
    reference = [{"weather": {"city": ["Paris"]}}, {"weather": {"city": ["Rome"]}}]
    swapped = path({"name": "weather", "arguments": {"city": "Rome"}},
                   {"name": "weather", "arguments": {"city": "Paris"}})
    assert all(label_path(reference, swapped))
    only_one = path({"name": "weather", "arguments": {"city": "Rome"}})
    assert label_path(reference, only_one)[-1] is False  # finishing with a call missing


def test_extra_call_is_negative() -> None:
    reference = [{"weather": {"city": ["Paris"]}}]
    actions = path({"name": "weather", "arguments": {"city": "Paris"}}, {"name": "book", "arguments": {"where": "x"}})
    labels = label_path(reference, actions)
    assert labels[:5] == [True] * 5 and labels[5] is False  # the second FUNC_NAME


def test_optional_rule_and_unlisted_parameters() -> None:
    reference = [{"weather": {"city": ["Paris"], "unit": ["", "c"]}}]
    assert all(label_path(reference, path({"name": "weather", "arguments": {"city": "Paris"}})))
    assert all(label_path(reference, path({"name": "weather", "arguments": {"unit": "c", "city": "Paris"}})))
    unlisted = label_path(reference, path({"name": "weather", "arguments": {"city": "Paris", "days": 3}}))
    assert unlisted[3] is False  # ARG_NAME days: BFCL rejects parameters the answer does not list
    must = [{"weather": {"city": ["Paris"], "unit": ["c"]}}]
    early_end = label_path(must, path({"name": "weather", "arguments": {"city": "Paris"}}))
    assert early_end[3] is False  # ARG_END before the listed, non-optional unit


def test_exact_match_and_equivalence() -> None:
    reference = [{"weather": {"city": ["New York"], "days": [2.0]}}]
    spelled = path({"name": "weather", "arguments": {"city": "new york", "days": 2}})
    assert label_path(reference, spelled)[2] is False
    assert all(label_path(reference, spelled, SPECS, equivalence=True))
    assert same_value(2, 2.0) and not same_value(True, 1) and not same_value("1", 1)


def test_no_call_reference() -> None:
    assert label_path([], [Action.finish()]) == [True]
    labels = label_path([], path({"name": "weather", "arguments": {"city": "Paris"}}))
    assert labels[0] is False


def test_nested_dict_acceptable_values() -> None:
    reference = [{"book": {"where": ["Roma"], "options": [{"time": ["8pm", "20:00"], "size": ["", 2]}]}}]
    ok = path({"name": "book", "arguments": {"where": "Roma", "options": {"time": "20:00"}}})
    assert all(label_path(reference, ok))
    bad = path({"name": "book", "arguments": {"where": "Roma", "options": {"time": "9pm"}}})
    assert label_path(reference, bad)[4] is False


def test_matcher_correct_and_labelled_length() -> None:
    reference = [{"weather": {"city": ["Paris"]}}]
    matcher = ReferenceMatcher(reference)
    good = path({"name": "weather", "arguments": {"city": "Paris"}})
    assert matcher.correct(good) and not matcher.correct(good[:-1])
    wrong_end = [*good[:1], Action.end_args(), Action.end_call(), Action.finish()]
    labels = matcher.label(wrong_end)
    assert labels == [True, False, False, False]
    assert labelled_length(wrong_end, labels) == 3  # the forced FUNC_END after the wrong step counts
    assert labelled_length(good, matcher.label(good)) == len(good)
