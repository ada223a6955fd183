import json
from collections.abc import Sequence

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from langchain_toolprm import RulePRM, SearchConfig, StepTag, run_search
from langchain_toolprm.messages import latest_request, to_chat_messages
from langchain_toolprm.search.config import Coverage, Guidance
from langchain_toolprm.search.copying import adds_words, call_words, request_words
from langchain_toolprm.search.coverage import CoverageScorer
from unit_tests.engine_fakes import TargetPolicy, TargetSession
from unit_tests.test_search import TOOLS

WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}
TIME = {"name": "get_time", "arguments": {"city": "Paris"}}


class _Reader(TargetSession):
    """Reads a request back after call lists: each tool it asks for that the list does not name costs 10 nats."""

    def __init__(self, asks: Sequence[str], seen: list[str]):
        super().__init__("", TargetPolicy([]).fmt)
        self.asks, self.seen = asks, seen

    def token_logprobs(self, items):
        self.usage.add(len(items))
        self.seen.extend(text for text, _ in items)
        return [[-10.0 * sum(name not in text for name in self.asks), -1.0] for text, _ in items]


class _ReadingPolicy(TargetPolicy):
    """Writes ``calls``; its sessions without tools (the coverage check's) read the request as `_Reader`."""

    def __init__(self, calls, asks, **kwargs):
        super().__init__(calls, **kwargs)
        self.asks, self.seen = asks, []

    def session(self, messages, specs, *, seed=None):
        return _Reader(self.asks, self.seen) if not specs else super().session(messages, specs, seed=seed)


Q = [{"role": "user", "content": "The weather and the time in Paris, please."}]


@pytest.mark.parametrize("prm", [None, RulePRM()])
@pytest.mark.parametrize(("coverage", "expected"), [(None, [WEATHER]), (Coverage(), [WEATHER, TIME])])
def test_a_list_that_leaves_out_a_part_of_the_request_loses(prm, coverage, expected):
    """The policy would stop after the first of the two calls the request asks for (a stop bias of 5).

    One beam only: without the check, the finished one-call list takes the beam's place and the search
    ends there; with it, a finished list waits aside, the beam writes the second call, and the list
    that leaves the time unexplained pays for its 10 nats beyond the margin.
    """
    policy = _ReadingPolicy([WEATHER, TIME], asks=["get_weather", "get_time"])
    config = SearchConfig(num_beams=1, stop_bias=5.0, coverage=coverage, guidance=Guidance(policy_sure=None),
                          relevance=None)  # it would read in the same tool-less sessions
    result = run_search(Q, TOOLS, policy=policy, prm=prm, config=config)
    assert result.calls == expected and result.finished
    assert bool(policy.seen) == (coverage is not None)
    assert ([WEATHER] in [a.calls for a in result.alternatives]) == (coverage is not None)  # ranked, and lost
    if coverage is not None:
        assert result.score is not None if prm is not None else result.score is None


def test_a_call_that_explains_nothing_new_ends_its_beam():
    """The policy goes on to a second call the request does not ask for: it adds nothing, so its beam dies.

    Without the check the stop bias is off and the policy's preference for the second call wins.
    """
    policy = _ReadingPolicy([WEATHER, TIME], asks=["get_weather"])
    base = SearchConfig(stop_bias=0.0, guidance=Guidance(policy_sure=None), coverage=None)
    plain = run_search(Q, TOOLS, policy=policy, prm=RulePRM(), config=base)
    assert plain.calls == [WEATHER, TIME]
    assert _ended_after_get_time(plain)
    result = run_search(Q, TOOLS, policy=policy, prm=RulePRM(), config=base.model_copy(update={"coverage": Coverage()}))
    assert result.calls == [WEATHER]
    assert any(n.tag is StepTag.FUNC_NAME and n.text.endswith("get_time") for n in result.trace.walk())
    assert not _ended_after_get_time(result)  # written, read back, dropped before its list could end


def _ended_after_get_time(result) -> bool:
    """Whether the search explored the end of a list below a ``get_time`` call."""
    return any(n.tag is StepTag.TOTAL_FINISH for call in result.trace.walk()
               if call.tag is StepTag.FUNC_NAME and call.text.endswith("get_time") for n in call.walk())


def test_within_the_margin_the_policy_and_the_prm_decide():
    """A shortfall smaller than the margin costs nothing: the policy's stop (bias 5) stands."""
    policy = _ReadingPolicy([WEATHER, TIME], asks=["get_weather", "get_time"])
    config = SearchConfig(stop_bias=5.0, coverage=Coverage(margin=15.0), guidance=Guidance(policy_sure=None))
    assert run_search(Q, TOOLS, policy=policy, prm=RulePRM(), config=config).calls == [WEATHER]


def test_greedy_ignores_the_coverage_check():
    policy = _ReadingPolicy([WEATHER, TIME], asks=["get_weather", "get_time"])
    config = SearchConfig(strategy="greedy", stop_bias=5.0, coverage=Coverage())
    assert run_search(Q, TOOLS, policy=policy, config=config).calls == [WEATHER]
    assert policy.seen == []


def test_the_scorer_reads_the_latest_request_after_the_calls_already_made():
    messages = to_chat_messages([
        HumanMessage("Hello"),
        AIMessage("Hi."),
        HumanMessage("Weather and time in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("sunny", tool_call_id="c1"),
    ])
    assert latest_request(messages) == "Weather and time in Paris?"
    charged = TargetSession("", TargetPolicy([]).fmt)
    policy = _ReadingPolicy([], asks=["get_weather", "get_time"])
    scorer = CoverageScorer(policy, messages, charged, seed=0)
    assert scorer.scores([[TIME], []]) == [-1.0, -11.0]  # the earlier call counts in both lists
    assert scorer.scores([[TIME]]) == [-1.0] and len(policy.seen) == 2  # read once, then remembered
    assert policy.seen[1].startswith('{"name": "get_weather", "arguments": {"city": "Paris"}}\n')
    assert charged.usage.tokens == 2  # the side session's work is the search's


@pytest.mark.parametrize("messages", [[{"role": "user", "content": "   "}], [{"role": "system", "content": "Hi"}]])
def test_a_request_without_text_reads_nothing(messages):
    policy = _ReadingPolicy([], asks=["get_time"])
    scorer = CoverageScorer(policy, messages, TargetSession("", TargetPolicy([]).fmt), seed=0)
    assert scorer.scores([[TIME], []]) == [0.0, 0.0] and policy.seen == []


def test_coverage_settings_refuse_what_cannot_work():
    with pytest.raises(ValueError, match="weight"):
        Coverage(weight=0.0)
    with pytest.raises(ValueError, match="margin"):
        Coverage(margin=-1.0)


@pytest.mark.parametrize(("count_only", "city"), [(True, "Lyon"), (False, "Paris")])
def test_lists_of_one_length_are_ranked_by_the_policy_unless_whole_lists_are_compared(count_only, city):
    """The policy writes Lyon where the request says Paris (its sampled alternative): a value, not a count.

    Compared whole, the list that copies the request's word reads it 10 nats likelier and wins; compared
    only with longer lists, lists of one call are ranked by the policy, as without the check.
    """
    lyon = {"name": "get_weather", "arguments": {"city": "Lyon", "unit": "c"}}
    policy = _ReadingPolicy([lyon], asks=['"Paris"'], wrong_value=' "Paris"')
    config = SearchConfig(coverage=Coverage(count_only=count_only), guidance=Guidance(policy_sure=None),
                          relevance=None)
    result = run_search(Q, TOOLS, policy=policy, prm=None, config=config)
    assert [call["arguments"]["city"] for call in result.calls] == [city]
    assert {"Lyon", "Paris"} <= {a.calls[0]["arguments"]["city"] for a in [result, *result.alternatives] if a.calls}


@pytest.mark.parametrize(("request_text", "second", "kept"), [
    # the second call copies only "weather" and "paris", copied already; the unit is no word of the request
    ("The weather in Paris, please.", {"name": "get_weather", "arguments": {"city": "Paris", "unit": "f"}}, False),
    ("The weather and the time in Paris, please.", TIME, True),  # "time": its function's name
])
def test_by_words_a_call_goes_on_only_where_it_copies_a_new_word_of_the_request(request_text, second, kept):
    """``drop_on="words"``: the read-back says the second call adds 10 nats either way; the words decide.

    Its drop reads nothing: the only lists read are the finished ones the final ranking compares.
    """
    policy = _ReadingPolicy([WEATHER, second], asks=["get_weather", json.dumps(second)])
    config = SearchConfig(stop_bias=0.0, guidance=Guidance(policy_sure=None), relevance=None,
                          coverage=Coverage(drop_on="words"))
    result = run_search([{"role": "user", "content": request_text}], TOOLS, policy=policy, prm=RulePRM(),
                        config=config)
    assert result.calls == ([WEATHER, second] if kept else [WEATHER])
    # read only where it finished (the ranking); the gain drop would have read it whole, and kept it
    assert any(text.startswith(json.dumps(WEATHER) + "\n" + json.dumps(second)) for text in policy.seen) == kept
    gain = run_search([{"role": "user", "content": request_text}], TOOLS, policy=policy, prm=RulePRM(),
                      config=config.model_copy(update={"coverage": Coverage()}))
    assert gain.calls == [WEATHER, second]


def test_the_words_a_call_copies():
    request = request_words("Book 2 tickets to São Paulo for the 3.5 hour concert, and what's the weather there?")
    assert {"book", "ticket", "são", "paulo", "hour", "concert", "weather", "2", "3", "5"} <= set(request)
    assert not {"the", "and", "for", "what"} & set(request)  # function words say nothing about the parts
    call = {"name": "bookConcert_tickets", "arguments": {"city": "Sao Paulo", "count": 2.0, "seats": [{"n": 3}],
                                                         "refundable": True, "note": None}}
    # the name split at "_" and at camel case, values only (not parameter names), a whole float as an integer,
    # every word by its stem
    assert set(call_words(call)) == {"book", "concert", "ticket", "sao", "paulo", "2", "3"}
    assert adds_words(request, [], call)
    made = {"name": "book_tickets", "arguments": {"where": "paulo", "what": "concert", "n": "2 3"}}
    assert not adds_words(request, [made], call)
    assert not adds_words(request, [], {"name": "reserve", "arguments": {"city": "Lisbon", "flag": False}})


def test_by_words_a_call_of_another_function_on_the_same_values_adds_its_name():
    request = request_words("The final velocity and the distance traveled, from 20 m/s at 5 m/s2 for 6 s.")
    values = {"initial_velocity": 20, "acceleration": 5, "time": 6}
    first = {"name": "kinematics.final_velocity", "arguments": values}
    assert adds_words(request, [first], {"name": "kinematics.distance_traveled", "arguments": values})
    assert not adds_words(request, [first], {"name": "kinematics.final_velocity", "arguments": {**values, "time": 5}})


def test_numbers_are_read_apart_from_their_units():
    """"10km" in a request is the number a call copies as 10: a call on it adds a word."""
    request = request_words("Walking times for 5km and 10km routes, and for a 3x2 grid.")
    first = {"name": "walking_time", "arguments": {"distance": 5, "unit": "km"}}
    assert adds_words(request, [first], {"name": "walking_time", "arguments": {"distance": 10.0, "unit": "km"}})
    assert {"5", "10", "3", "2"} <= set(request)


@pytest.mark.parametrize("per_call", [False, True])
def test_words_are_counted_a_call_that_copies_a_number_twice_adds(per_call):
    """BFCL parallel_64's shape: the fourth equation's numbers (1, 2, 1) are a subset of the second's (1, -3, 2)."""
    request = request_words("Solve a = 2, b = 5, c = 3; then a = 1, b = -3, c = 2; then a = 1, b = 2, c = 1.")
    assert request["1"] == 3
    earlier = [{"name": "solve_quadratic", "arguments": {"a": 2, "b": 5, "c": 3}},
               {"name": "solve_quadratic", "arguments": {"a": 1, "b": -3, "c": 2}}]
    assert adds_words(request, earlier, {"name": "solve_quadratic", "arguments": {"a": 1, "b": 2, "c": 1}},
                      per_call=per_call)
    assert not adds_words(request, earlier, {"name": "solve_quadratic", "arguments": {"a": 2, "b": 1, "c": 3}},
                          per_call=per_call)
    # a call copies a word at most as often as the request says it: "9" is said once
    once = request_words("Solve a = 9, b = 4, c = 4.")
    made = [{"name": "solve_quadratic", "arguments": {"a": 9, "b": 4, "c": 4}}]
    assert not adds_words(once, made, {"name": "solve_quadratic", "arguments": {"a": 9, "b": 9, "c": 4}},
                          per_call=per_call)


def test_words_are_matched_by_their_stems():
    request = request_words("Get the nutritional facts of the recipes, and the temperatures of the cities.")
    assert adds_words(request, [], {"name": "recipe_nutrition_info", "arguments": {"q": "pasta"}})
    assert adds_words(request, [], {"name": "city_temperature", "arguments": {}})


CROSS = "The weather and the time in Paris and in Rome."


@pytest.mark.parametrize(("per_call", "kept"), [(False, False), (True, True)])
def test_per_call_a_cross_product_s_last_call_goes_on(per_call, kept):
    """Each word of "the time in Rome" was copied by an earlier call, but no earlier call copied both."""
    request = request_words(CROSS)
    earlier = [{"name": "get_weather", "arguments": {"city": city}} for city in ("Paris", "Rome")]
    earlier.append({"name": "get_time", "arguments": {"city": "Paris"}})
    assert adds_words(request, earlier, {"name": "get_time", "arguments": {"city": "Rome"}}, per_call=per_call) == kept


@pytest.mark.parametrize("per_call", [False, True])
def test_a_repeated_call_or_one_that_copies_no_word_of_the_request_adds_nothing(per_call):
    request = request_words(CROSS)
    first = {"name": "get_time", "arguments": {"city": "Rome"}}
    assert not adds_words(request, [first], {"name": "get_time", "arguments": {"city": "Rome", "tz": "CET"}},
                          per_call=per_call)
    assert not adds_words(request, [first], {"name": "reserve", "arguments": {"city": "Lisbon"}}, per_call=per_call)
    assert not adds_words(request, [], {"name": "reserve", "arguments": {"city": "Lisbon"}}, per_call=per_call)


def test_call_words_in_a_search_keeps_the_cross_product_s_last_call():
    """``drop_on="call_words"`` in a beam search: a cross product's fourth call goes on, where ``"words"`` drops it."""
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}},
             {"name": "get_weather", "arguments": {"city": "Rome"}},
             {"name": "get_time", "arguments": {"city": "Paris"}},
             {"name": "get_time", "arguments": {"city": "Rome"}}]
    found = {}
    for drop_on in ("words", "call_words"):
        policy = _ReadingPolicy(calls, asks=[c["name"] for c in calls])
        config = SearchConfig(stop_bias=0.0, guidance=Guidance(policy_sure=None), relevance=None,
                              coverage=Coverage(drop_on=drop_on))
        found[drop_on] = run_search([{"role": "user", "content": CROSS}], TOOLS, policy=policy, prm=RulePRM(),
                                    config=config).calls
    assert found == {"words": calls[:3], "call_words": calls}


def test_by_words_the_calls_already_made_count_as_earlier_calls():
    messages = to_chat_messages([
        HumanMessage("Weather and time in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("sunny", tool_call_id="c1"),
    ])
    scorer = CoverageScorer(_ReadingPolicy([], asks=[]), messages, TargetSession("", TargetPolicy([]).fmt), seed=0)
    # "weather" and "paris" were copied by the call made before the results; "time" was not
    assert not scorer.adds_words([{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}])
    assert scorer.adds_words([TIME])
    blank = CoverageScorer(_ReadingPolicy([], asks=[]), [{"role": "user", "content": " "}],
                           TargetSession("", TargetPolicy([]).fmt), seed=0)
    assert blank.adds_words([TIME, TIME])  # no request: nothing can be told, nothing is dropped
