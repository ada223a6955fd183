import math

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from langchain_toolprm import Coverage, Relevance, RulePRM, SearchConfig, run_search
from langchain_toolprm.messages import to_chat_messages
from langchain_toolprm.search.config import Guidance
from langchain_toolprm.search.relevance import RelevanceScorer, describe
from langchain_toolprm.tools import to_tool_specs
from unit_tests.engine_fakes import TargetPolicy, TargetSession, target_text
from unit_tests.test_search import TOOLS

WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}
Q = [{"role": "user", "content": "What is the weather in Paris? Give the unit c."}]
_ALONE = -12.0
"""The request's log-probability after no description at all."""


class _Reader(TargetSession):
    """Reads the request after a tool's description: ``gains`` nats above ``_ALONE`` per tool name."""

    def __init__(self, gains: dict[str, float], seen: list[str]):
        super().__init__("", TargetPolicy([]).fmt)
        self.gains, self.seen = gains, seen

    def token_logprobs(self, items):
        self.usage.add(len(items))
        self.seen.extend(text for text, _ in items)
        return [[_ALONE + next((g for name, g in self.gains.items() if f"Function: {name}(" in text), 0.0), 0.0]
                for text, _ in items]


class _Calling(TargetSession):
    """Writes its target; a call opens the turn with probability 0.9, an answer in text with 0.1."""

    def opening_logprob(self, assistant_text, openings):
        return math.log(0.9)


class _ReadingPolicy(TargetPolicy):
    """Writes ``calls`` (`_Calling`); its sessions without tools (the check's) read the request as `_Reader`."""

    def __init__(self, calls, gains):
        super().__init__(calls)
        self.gains, self.seen = gains, []

    def session(self, messages, specs, *, seed=None):
        if not specs:
            return _Reader(self.gains, self.seen)
        return _Calling(target_text(self.fmt, self.calls) if self.calls else "", self.fmt)


def _config(relevance, **kwargs):
    return SearchConfig(relevance=relevance, guidance=Guidance(policy_sure=None), **kwargs)


@pytest.mark.parametrize("prm", [None, RulePRM()])
@pytest.mark.parametrize(("relevance", "expected"), [(None, [WEATHER]), (Relevance(), [])])
def test_a_tool_that_explains_nothing_of_the_request_is_not_called(prm, relevance, expected):
    """The policy would call get_weather (p = 0.9 of a call); its description makes the request 8 nats less likely.

    With the check the call costs 8 log-odds and answering in text wins; without it the policy calls.
    """
    policy = _ReadingPolicy([WEATHER], gains={"get_weather": -8.0, "get_time": -8.0})
    result = run_search(Q, TOOLS, policy=policy, prm=prm, config=_config(relevance))
    assert result.calls == expected and result.finished
    assert bool(policy.seen) == (relevance is not None)


def test_one_tool_the_request_is_about_frees_every_call():
    """The check decides "call or answer?", not which tool: the policy's get_weather stands beside get_time."""
    policy = _ReadingPolicy([WEATHER], gains={"get_weather": -8.0, "get_time": 15.0})
    result = run_search(Q, TOOLS, policy=policy, prm=RulePRM(), config=_config(Relevance()))
    assert result.calls == [WEATHER]
    assert len(policy.seen) == 3  # each tool and the request alone, read once for the whole search


def test_the_threshold_and_the_weight_set_the_price():
    """A gain of -1 costs 1 log-odds at the defaults (the policy's 9 to 1 for a call stands), 3 at weight 3."""
    policy = _ReadingPolicy([WEATHER], gains={"get_weather": -1.0, "get_time": -1.0})
    assert run_search(Q, TOOLS, policy=policy, config=_config(Relevance())).calls == [WEATHER]
    assert run_search(Q, TOOLS, policy=policy, config=_config(Relevance(weight=3.0))).calls == []
    assert run_search(Q, TOOLS, policy=policy, config=_config(Relevance(threshold=2.0))).calls == []


def test_greedy_and_required_calls_ignore_the_check():
    policy = _ReadingPolicy([WEATHER], gains={"get_weather": -8.0, "get_time": -8.0})
    greedy = _config(Relevance(), strategy="greedy")
    assert run_search(Q, TOOLS, policy=policy, config=greedy).calls == [WEATHER]
    # A call is required: answering in text is not an alternative, so nothing is read.
    assert run_search(Q, TOOLS, policy=policy, config=_config(Relevance()), tool_choice="required").calls == [WEATHER]
    assert policy.seen == []


def test_a_turn_that_answers_tool_results_reads_nothing():
    messages = to_chat_messages([
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("sunny", tool_call_id="c1"),
    ])
    policy = _ReadingPolicy([], gains={"get_weather": -8.0})
    scorer = RelevanceScorer(policy, messages, to_tool_specs(TOOLS), Relevance(), TargetSession("", policy.fmt), 0)
    assert scorer.request is None and scorer.penalty() == 0.0 and policy.seen == []


def test_the_scorer_reads_each_tool_once_and_charges_the_search():
    specs = to_tool_specs(TOOLS)
    charged = TargetSession("", TargetPolicy([]).fmt)
    policy = _ReadingPolicy([], gains={"get_weather": -2.0, "get_time": -4.5})
    scorer = RelevanceScorer(policy, to_chat_messages(Q), specs, Relevance(threshold=1.0, weight=2.0), charged, 0)
    assert scorer.gains() == {"get_weather": -2.0, "get_time": -4.5}
    assert scorer.penalty() == -6.0  # the best tool's shortfall (3 nats), twice
    assert len(policy.seen) == 3 and charged.usage.tokens == 3  # read once, then remembered; paid by the search
    assert describe(specs[0]) + "Request: " == "Function: get_weather(city, unit): Weather in a city\nRequest: "
    assert sorted(policy.seen) == sorted([describe(spec) + "Request: " for spec in specs] + ["Request: "])


@pytest.mark.parametrize("messages", [[{"role": "user", "content": "   "}], [{"role": "system", "content": "Hi"}]])
def test_a_request_without_text_reads_nothing(messages):
    policy = _ReadingPolicy([], gains={"get_weather": -8.0})
    scorer = RelevanceScorer(policy, messages, to_tool_specs(TOOLS), Relevance(), TargetSession("", policy.fmt), 0)
    assert scorer.penalty() == 0.0 and policy.seen == []


def test_a_long_description_is_cut_where_it_stops_saying_what_the_tool_is_for():
    spec = to_tool_specs([{"name": "api", "description": "Fetches a page. " + "x" * 1000, "parameters": {}}])[0]
    assert describe(spec) == "Function: api(): Fetches a page. " + "x" * 384 + "\n"


def test_relevance_settings_refuse_what_cannot_work():
    with pytest.raises(ValueError, match="weight"):
        Relevance(weight=0.0)
    with pytest.raises(ValueError, match="extra"):
        Relevance(margin=1.0)


def test_the_eval_command_carries_the_check_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SearchConfig] = []

    def capture(config):
        seen.append(config.search)
        raise SystemExit(0)

    monkeypatch.setattr("langchain_toolprm.evaluation.runner.run_eval", capture)
    from langchain_toolprm.cli import main

    args = ["eval", "--data", "d", "--output", "o", "--no-progress"]
    for extra, expected in [([], Relevance()), (["--no-relevance"], None),
                            (["--relevance-threshold", "2", "--relevance-weight", "0.5"],
                             Relevance(threshold=2.0, weight=0.5))]:
        with pytest.raises(SystemExit):
            main([*args, *extra])
        assert seen[-1].relevance == expected and seen[-1].coverage is None
    with pytest.raises(SystemExit):
        main([*args, "--coverage", "--coverage-margin", "5"])
    assert seen[-1].coverage == Coverage(margin=5.0) and seen[-1].relevance == Relevance()
    with pytest.raises(SystemExit):
        main([*args, "--coverage", "--no-coverage-count-only"])
    assert seen[-1].coverage == Coverage(count_only=False)
    with pytest.raises(SystemExit):
        main([*args, "--coverage", "--coverage-drop-on", "words"])
    assert seen[-1].coverage == Coverage(drop_on="words")


def test_the_eval_command_refuses_an_unknown_drop_signal(capsys: pytest.CaptureFixture[str]) -> None:
    from langchain_toolprm.cli import main

    with pytest.raises(SystemExit):
        main(["eval", "--data", "d", "--output", "o", "--coverage", "--coverage-drop-on", "tokens"])
    assert "--coverage-drop-on: invalid choice: 'tokens'" in capsys.readouterr().err
