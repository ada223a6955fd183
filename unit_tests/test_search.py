import math
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from langchain_toolprm import RulePRM, SearchConfig, StepTag, run_search
from langchain_toolprm.formats import FencedJSONFormat
from langchain_toolprm.lm import Sample
from langchain_toolprm.search.config import Guidance
from langchain_toolprm.search.engine import guided_scores
from langchain_toolprm.tools import to_tool_specs
from unit_tests.engine_fakes import (
    PreferPRM,
    RandomPolicy,
    TargetPolicy,
    TargetSession,
    UnsureOfRightStepsPRM,
    target_text,
)

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Time in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
]
Q = [{"role": "user", "content": "What is the weather in Paris? Give the unit c."}]
TARGET = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]


def test_beam_finds_the_policy_target_with_trace_and_cost():
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=RulePRM(),
                        config=SearchConfig(num_beams=2, beam_width=4, guidance=Guidance(policy_sure=None)))
    assert result.calls == TARGET and result.finished
    assert {StepTag.FUNC_NAME, StepTag.ARG_NAME, StepTag.ARG_VALUE, StepTag.ARG_END, StepTag.FUNC_END,
            StepTag.TOTAL_FINISH} <= result.trace.tags()
    assert any(not n.kept for n in result.trace.walk())  # something was pruned
    assert result.cost.policy_tokens > 0 and result.cost.policy_forwards > 0 and result.cost.prm_candidates > 0
    assert result.score is not None and 0 < result.score <= 1
    assert all(a.calls != TARGET for a in result.alternatives)


@pytest.mark.parametrize("config", [SearchConfig(aggregation="mean"),
                                    SearchConfig(guidance=Guidance(answer=10.0, call=10.0))])
def test_prm_overrules_the_policy(config):
    """Under a path aggregation, or under ``guided`` with the PRM's odds weighed above the policy's."""
    other = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=PreferPRM(function="get_time"), config=config)
    assert other.calls[0]["name"] == "get_time"
    wrong_value = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=PreferPRM(value="zzz"), config=config)
    assert wrong_value.calls[0]["arguments"]["city"] == "zzz"


def test_beam_stops_once_a_finished_answer_cannot_be_overtaken():
    """Under min aggregation a finished beam at 0.9 beats every beam already below it: no more rounds."""
    rounds: list[int] = []
    config = SearchConfig(num_beams=2, beam_width=4, aggregation="min")
    settled = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=PreferPRM(function="get_weather"),
                         config=config, on_step=lambda round_, nodes: rounds.append(round_))
    assert settled.calls == TARGET and settled.finished
    # "mean" can rise again, so the same search runs to the end of every beam
    rounds_mean: list[int] = []
    run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=PreferPRM(function="get_weather"),
               config=config.model_copy(update={"aggregation": "mean"}),
               on_step=lambda round_, nodes: rounds_mean.append(round_))
    assert len(rounds) < len(rounds_mean)


def test_relative_aggregation_lets_the_prm_decide_to_go_on():
    """The PRM prefers a second call to stopping (0.9 > 0.7) but scores that call's steps 0.6 each.

    ``min`` and ``prod`` then stop after one call, because every further step can only lower the
    path; ``relative`` compares the two at the state where they part, as the PRM does.
    """
    two = [*TARGET, {"name": "get_time", "arguments": {"city": "Paris"}}]
    prm = UnsureOfRightStepsPRM(second="get_time")
    calls = {}
    for how in ("min", "prod", "relative"):
        result = run_search(Q, TOOLS, policy=TargetPolicy(two), prm=prm,
                            config=SearchConfig(num_beams=2, beam_width=4, aggregation=how))
        assert result.finished
        calls[how] = [c["name"] for c in result.calls]
    assert calls["min"] == calls["prod"] == ["get_weather"]
    assert calls["relative"] == ["get_weather", "get_time"]


def test_guided_aggregation_follows_the_policy_where_the_prm_barely_differs():
    """The PRM slightly prefers stopping after one call (0.6 against 0.5); the policy is sure of a second.

    ``relative`` follows the PRM's slight preference; ``guided`` weighs it by the policy's probability.
    """
    two = [*TARGET, {"name": "get_time", "arguments": {"city": "Paris"}}]
    prm = UnsureOfRightStepsPRM(second="get_time", finish_after_one=0.6, second_call=0.5)
    calls = {}
    for how in ("relative", "guided"):
        result = run_search(Q, TOOLS, policy=TargetPolicy(two), prm=prm,
                            config=SearchConfig(num_beams=2, beam_width=4, aggregation=how))
        calls[how] = [c["name"] for c in result.calls]
    assert calls == {"relative": ["get_weather"], "guided": ["get_weather", "get_time"]}
    # the policy's probability times the PRM's odds, over the best; an unjudged candidate keeps its prior
    pooled = guided_scores([0.5, 0.75, None], [math.log(0.9), math.log(0.05), math.log(0.5)], 1.0)
    assert pooled == pytest.approx([1.0, 0.05 * 3 / 0.9, 0.5 / 0.9])


@pytest.mark.parametrize(("more", "expected"), [(0.0, ["get_weather", "get_time"]), (1.0, ["get_weather"])])
def test_guided_weighs_the_prm_per_decision(more, expected):
    """A PRM sure that the list ends after one call (0.95 against 0.2), a policy sure of a second call.

    With the PRM's weight at "one more call, or stop?" 0 the policy decides and the PRM is not asked
    there; at 1 the PRM's odds (19 to 0.25, 76 to 1) outweigh the policy's (3.9 nats, 49 to 1).
    """
    two = [*TARGET, {"name": "get_time", "arguments": {"city": "Paris"}}]
    prm = UnsureOfRightStepsPRM(second="get_time", finish_after_one=0.95, second_call=0.2)
    config = SearchConfig(num_beams=2, beam_width=4, aggregation="guided", guidance=Guidance(more=more), stop_bias=0.0)
    result = run_search(Q, TOOLS, policy=TargetPolicy(two), prm=prm, config=config)
    assert [c["name"] for c in result.calls] == expected
    first = {id(n) for n in result.trace.children}  # "answer in text" is a finish too, weighed as `answer`
    after_a_call = [n for n in result.trace.walk() if n.tag is StepTag.TOTAL_FINISH and id(n) not in first]
    assert after_a_call and all((n.score is None) == (more == 0.0) for n in after_a_call)


class _AnswerLeaningPRM(PreferPRM):
    """Prefers answering in text (0.95) to any call (0.05) at a turn's first step."""

    def session(self, messages, specs):
        inner = super().session(messages, specs)

        class _Session(type(inner)):
            def score(self, path, state, candidates):
                if state.calls or state.function is not None:
                    return inner.score(path, state, candidates)
                return [0.95 if a.tag is StepTag.TOTAL_FINISH else 0.05 for a in candidates]

        return _Session()


@pytest.mark.parametrize(("follow_up", "guidance", "answers"), [
    (True, Guidance(), True),  # after tool results the PRM decides (weight 10)
    (True, Guidance(after_results=1.0), False),  # at face value its odds lose to a policy that sure
    (False, Guidance(), False),  # before any result, `answer` (1) weighs it
])
def test_after_tool_results_the_prm_decides_whether_to_answer(follow_up, guidance, answers):
    """The policy is sure of a call; the PRM, that the turn is answered in text (0.95 against 0.05)."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    messages = [HumanMessage(Q[0]["content"])]
    if follow_up:
        messages += [AIMessage("", tool_calls=[{"name": "get_time", "args": {"city": "Paris"}, "id": "c1"}]),
                     ToolMessage("12:00", tool_call_id="c1")]
    result = run_search(messages, TOOLS, policy=TargetPolicy(TARGET), prm=_AnswerLeaningPRM(),
                        config=SearchConfig(guidance=guidance))
    assert result.finished and (result.calls == []) == answers


@pytest.mark.parametrize(("guidance", "asked"), [
    (Guidance(), False),  # the policy is sure of its first step (0.95 or more): its choice stands
    (Guidance(policy_sure=None), True),  # asked at every weighted decision
    (Guidance(answer=2.0), True),  # a weight above 1 lets the PRM decide: asked however sure the policy is
])
def test_the_prm_is_not_asked_where_the_policy_is_sure(guidance, asked):
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=RulePRM(), config=SearchConfig(guidance=guidance))
    assert result.calls == TARGET
    assert result.trace.children and all((n.score is not None) == asked for n in result.trace.children)
    assert (result.cost.prm_candidates > 0) == asked


class _SamplesMissTheMode(TargetSession):
    """Decoded at temperature 0 a value is the target's; sampled, it never is."""

    def sample(self, assistant_text, n, *, temperature, max_new_tokens, stop=None):
        samples = super().sample(assistant_text, n, temperature=temperature, max_new_tokens=max_new_tokens, stop=stop)
        return samples[:1] if stop is None or temperature == 0 else samples[1:] + samples[1:2]


class _ModePolicy(TargetPolicy):
    def session(self, messages, specs, *, seed=None):
        return _SamplesMissTheMode(target_text(self.fmt, self.calls), self.fmt)


def _city_values(result) -> list[list[str]]:
    """The value candidates the search weighed for ``city``, per state where it was filled."""
    return [[c.text for c in n.children] for n in result.trace.walk()
            if n.tag is StepTag.ARG_NAME and n.text == "argument city"]


@pytest.mark.parametrize(("call", "greedy_values", "alone"), [(0.0, True, True), (0.0, False, False),
                                                            (1.0, True, False)])
def test_beam_keeps_the_policy_s_most_likely_value(call, greedy_values, alone):
    """Sampled values may all miss the one greedy writes; beam still has it.

    With ``greedy_values``, where the PRM has no say inside a call, the likeliest value is the only
    candidate and no samples are drawn; elsewhere the samples are weighed beside it.
    """
    config = SearchConfig(num_beams=2, beam_width=4, aggregation="guided", guidance=Guidance(call=call),
                          greedy_values=greedy_values)
    result = run_search(Q, TOOLS, policy=_ModePolicy(TARGET), prm=RulePRM(), config=config)
    assert result.calls == TARGET
    weighed = _city_values(result)
    assert ['value "Paris"'] in weighed if alone else any('value "Paris"' in v and len(v) > 1 for v in weighed)
    assert all(len(v) == 1 for v in weighed) == alone


class _CountsBatches(TargetSession):
    """Records the temperature of every decoding batch and whether it held greedy rows."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[float, bool]] = []

    def sample_many(self, requests, *, temperature):
        self.batches.append((temperature, any(r.greedy for r in requests)))
        return super().sample_many(requests, temperature=temperature)


def test_the_likeliest_value_is_decoded_in_the_samples_batch():
    """One decoding pass per round of values: the likeliest value's rows ride with the samples."""
    session = _CountsBatches(target_text(TargetPolicy(TARGET).fmt, TARGET), TargetPolicy(TARGET).fmt)

    class _Policy(TargetPolicy):
        def session(self, messages, specs, *, seed=None):
            return session

    result = run_search(Q, TOOLS, policy=_Policy(TARGET), prm=RulePRM(),
                        config=SearchConfig(guidance=Guidance(call=1.0)))
    assert result.calls == TARGET
    assert session.batches and all(t == 0.8 and greedy for t, greedy in session.batches)


class _ModeDoesNotFit(TargetSession):
    """Decoded at temperature 0 a value is not JSON; sampled, it is the target's."""

    def sample(self, assistant_text, n, *, temperature, max_new_tokens, stop=None):
        if stop is not None and temperature == 0:
            return [Sample(" oops", (3,), -0.1, True)] * n
        return super().sample(assistant_text, n, temperature=temperature, max_new_tokens=max_new_tokens, stop=stop)


class _UnfitModePolicy(TargetPolicy):
    def session(self, messages, specs, *, seed=None):
        return _ModeDoesNotFit(target_text(self.fmt, self.calls), self.fmt)


def test_a_likeliest_value_that_does_not_fit_is_replaced_by_samples():
    """Where the PRM has no say the search takes the likeliest value alone, unless it fails its schema."""
    result = run_search(Q, TOOLS, policy=_UnfitModePolicy(TARGET), prm=RulePRM(),
                        config=SearchConfig(greedy_values=True))
    assert result.calls == TARGET
    assert any(len(v) > 1 for v in _city_values(result))  # M samples, where the one decoded value failed


class _WantsARepeat(TargetPolicy):
    """Prefers a third call that repeats the second; its other samples repeat the first call's value."""

    def session(self, messages, specs, *, seed=None):
        two = target_text(self.fmt, self.calls)
        second = two[two.rindex("<tool_call>"):two.rindex("</tool_call>") + len("</tool_call>")]
        three = two.replace("</tool_call><|im_end|>", f"</tool_call>\n{second}<|im_end|>")
        return TargetSession(three, self.fmt, wrong_value=' "Paris"')


@pytest.mark.parametrize("prm", [None, RulePRM()])
@pytest.mark.parametrize(("forget", "expected"), [(True, 2), (False, 1)])
def test_forget_dead_calls_prices_the_end_of_the_list_against_calls_that_can_be_made(prm, forget, expected):
    """After two calls the policy prefers a third, the second again, which the grammar does not let end.

    With ``forget_dead_calls``, stopping after two is priced against that third call only while it may
    still lead somewhere: once the beams that followed it have died, stopping after two outranks
    stopping after one (which passed over a second call that could be written), as greedy's
    backtracking would have it. Without it (the default), stopping after two stays priced against the
    third call, and the path that stopped after one wins.
    """
    tools = [{"name": "get_time", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                 "required": ["city"]}}]
    two = [{"name": "get_time", "arguments": {"city": city}} for city in ("Paris", "London")]
    result = run_search(Q, tools, policy=_WantsARepeat(two), prm=prm, config=SearchConfig(forget_dead_calls=forget))
    assert result.calls == two[:expected] and result.finished
    calls = [n for n in result.trace.walk() if n.tag is StepTag.FUNC_NAME and n.kept]
    assert len(calls) == 3  # the search followed a third call


@pytest.mark.parametrize(("bias", "expected"), [(0.0, 2), (5.0, 1)])
def test_stop_bias_moves_the_policy_s_end_of_the_list(bias, expected):
    """The policy goes on after the first of its two calls (log-odds 3.9 for it); a bias of 5 outweighs that.

    The first step is not a list's end (there, finishing answers in text) and keeps the policy's odds.
    """
    two = [*TARGET, {"name": "get_time", "arguments": {"city": "Paris"}}]
    result = run_search(Q, TOOLS, policy=TargetPolicy(two), config=SearchConfig(strategy="greedy", stop_bias=bias))
    assert result.calls == two[:expected]


def test_relative_aggregation_without_a_prm_follows_the_policy():
    """No PRM, no scores to compare: ``relative`` beam search then ranks by the policy, as ``mean`` does."""
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=None,
                        config=SearchConfig(num_beams=2, beam_width=4, aggregation="relative"))
    assert result.calls == TARGET and result.finished and result.score is None


def test_greedy_follows_the_policy_without_prm():
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=PreferPRM(function="get_time"),
                        config=SearchConfig(strategy="greedy"))
    assert result.calls == TARGET and result.cost.prm_candidates == 0


def test_greedy_backtracks_out_of_dead_ends():
    tools = [{"name": "count", "parameters": {"type": "object", "properties": {
        "n": {"type": "integer"}, "label": {"type": "string"}}, "required": []}}]
    target = [{"name": "count", "arguments": {"n": 3}}]
    # every sampled value for "n" is a string ("zzz"), so the greedy path through "n" dies
    policy = TargetPolicy(target, wrong_value=' "zzz"')
    result = run_search("count", tools, policy=policy, config=SearchConfig(strategy="greedy"))
    assert result.finished


def test_unconstrained_strict_and_lenient():
    fenced = '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET, free_text=fenced),
                        config=SearchConfig(strategy="unconstrained"))
    assert result.calls == []  # Hermes format expected, a code fence written
    assert result.lenient_calls == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert result.text == fenced


def test_best_of_n_and_majority():
    fenced = '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    for strategy in ("best_of_n", "majority"):
        result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET, free_text=fenced), prm=RulePRM(),
                            config=SearchConfig(strategy=strategy, num_samples=3))
        assert result.calls == [{"name": "get_weather", "arguments": {"city": "Paris"}}], strategy
        assert result.trace.children


def test_tool_choice_none_answers_in_text():
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET, free_text="It is sunny."), tool_choice="none",
                        config=SearchConfig(answer_in_text=True))
    assert result.calls == [] and result.text == "It is sunny."


def test_format_other_than_hermes():
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET, fmt=FencedJSONFormat("<|im_end|>")))
    assert result.calls == TARGET


def test_budget_end_reports_partial_call():
    tools = [{"name": "count", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}},
                                              "required": ["n"]}}]
    # the policy only ever writes strings for an integer parameter: no beam can finish
    result = run_search("count", tools, policy=TargetPolicy([{"name": "count", "arguments": {"n": "one"}}],
                                                             wrong_value=' "zzz"'),
                        tool_choice="required", config=SearchConfig(beam_width=2))
    assert not result.finished
    assert result.partial is not None and result.partial["name"] == "count"


schemas = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean", "null"])})
    | st.fixed_dictionaries({"type": st.just("string"), "enum": st.lists(st.text(max_size=3), min_size=1,
                                                                          max_size=3, unique=True)})
    | st.just({}),
    lambda inner: st.fixed_dictionaries({"type": st.just("array"), "items": inner})
    | st.builds(lambda props: {"type": "object", "properties": props},
                st.dictionaries(st.sampled_from("abc"), inner, max_size=2)),
    max_leaves=4,
)
tool_lists = st.lists(
    st.builds(
        lambda name, props, req: {"name": name, "parameters": {
            "type": "object", "properties": props, "required": [p for p in props if p in req]}},
        st.sampled_from(["f", "g", "h"]),
        st.dictionaries(st.sampled_from(["x", "y", "z"]), schemas, max_size=3),
        st.sets(st.sampled_from(["x", "y", "z"])),
    ),
    min_size=1, max_size=3, unique_by=lambda t: t["name"],
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tools=tool_lists, seed=st.integers(0, 10_000), strategy=st.sampled_from(["beam", "greedy"]))
def test_every_finished_beam_validates(tools, seed, strategy):
    specs = {s.name: s for s in to_tool_specs(tools)}
    result = run_search("do it", tools, policy=RandomPolicy(seed), prm=RulePRM(),
                        config=SearchConfig(strategy=strategy, num_beams=2, beam_width=3, max_steps=60))
    assume(result.finished)  # only finished searches say anything; hypothesis fails if too few finish
    for outcome in [result.calls, *[a.calls for a in result.alternatives]]:
        for call in outcome:
            assert specs[call["name"]].argument_errors(call["arguments"]) == []


class _BareJSONSession(TargetSession):
    """Writes its calls as bare JSON: at the start of the answer it opens ``{`` far more often than ``<tool_call>``."""

    FIRST: ClassVar[dict[str, float]] = {"{": -0.3, "<": -2.3, "`": -4.0, "[": -5.0}

    def token_logprobs(self, items):
        out = []
        for text, cont in items:
            if text == "" and cont[:1] in self.FIRST:
                out.append([self.FIRST[cont[0]]] + [-0.1] * (len(cont) > 1))
            else:
                out.append([-0.1] if self.target.startswith(text + cont) else [-3.0, -1.0])
        return out


class _BareJSONPolicy(TargetPolicy):
    def session(self, messages, specs, *, seed=None):
        from unit_tests.engine_fakes import target_text

        return _BareJSONSession(target_text(self.fmt, self.calls), self.fmt, **self.kwargs)


def test_a_call_opened_as_bare_json_counts_as_a_call():
    # P("<tool_call>") is 0.1 and P("{") 0.74: answering in text must not get the 0.9 that "<tool_call>" leaves
    for strategy in ("greedy", "beam"):
        result = run_search(Q, TOOLS, policy=_BareJSONPolicy(TARGET), config=SearchConfig(strategy=strategy))
        assert result.calls == TARGET, strategy
        first = {n.text: n.logprob for n in result.trace.children}  # the first slot: call or answer in text
        assert first["call get_weather"] > first["finish"]


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    'Sure:\n```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
])
def test_a_text_answer_that_is_a_call_becomes_the_call(text):
    # the policy likes no call opening (so the search answers in text), then writes its call as the answer
    result = run_search(Q, TOOLS, policy=TargetPolicy([], free_text=text), config=SearchConfig(answer_in_text=True))
    assert result.calls == [{"name": "get_weather", "arguments": {"city": "Paris"}}] and result.text is None


def test_a_text_answer_that_is_an_invalid_call_is_not_the_answer():
    text = '{"name": "get_weather", "arguments": {"city": 7, "unit": "kelvin"}}'
    result = run_search(Q, TOOLS, policy=TargetPolicy([], free_text=text), config=SearchConfig(answer_in_text=True))
    assert result.calls == [] and result.text is None and not result.finished
    assert result.partial == {"name": "get_weather", "arguments": {"city": 7, "unit": "kelvin"}}
    assert "city" in result.partial_error and "unit" in result.partial_error


def test_a_text_answer_is_written_without_the_tool_list_and_counted():
    # A small model that sees tools keeps wanting a call (after a tool result, nearly always): the
    # search has decided against one, so the answer's prompt leaves the tools out.
    seen: list[list[str]] = []

    class Recording(TargetPolicy):
        def session(self, messages, specs, *, seed=None):
            seen.append([spec.name for spec in specs])
            session = super().session(messages, specs, seed=seed)
            if not specs:
                session.usage.add(100_000)  # the answer prompt's encoding: more than the whole search
            return session

    config = SearchConfig(answer_in_text=True, relevance=None)  # the relevance check reads in a session of its own
    result = run_search(Q, TOOLS, policy=Recording([], free_text="Hi."), config=config)
    assert result.text == "Hi." and result.calls == []
    assert seen == [["get_weather", "get_time"], []]
    assert result.cost.policy_tokens >= 100_000


def test_a_text_answer_stays_text_when_no_call_is_allowed_or_it_names_no_tool():
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    result = run_search(Q, TOOLS, policy=TargetPolicy([], free_text=call), tool_choice="none",
                        config=SearchConfig(answer_in_text=True))
    assert result.text == call and result.calls == []
    other = '{"name": "book_flight", "arguments": {}}'
    result = run_search(Q, TOOLS, policy=TargetPolicy([], free_text=other), config=SearchConfig(answer_in_text=True))
    assert result.text == other and result.calls == []


class _Clock:
    """A clock that moves only when a search round ends, so time limits are tested without timing."""

    def __init__(self) -> None:
        self.now = 0.0
        self.rounds = 0

    def __call__(self) -> float:
        return self.now

    def tick(self, round_, nodes) -> None:
        self.rounds += 1
        self.now += 1.0


@pytest.mark.parametrize("strategy", ["beam", "greedy"])
def test_time_limit_ends_the_search_within_one_round(monkeypatch, strategy):
    import time

    clock = _Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    config = SearchConfig(strategy=strategy, time_limit=2.5)
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), tool_choice="required", config=config,
                        on_step=clock.tick)
    assert clock.rounds == 3  # rounds start at t=0, 1, 2; none starts at t=3, past the limit
    assert result.timed_out and not result.finished and result.calls == []
    assert result.partial is not None and result.partial["name"] == "get_weather"
    unlimited = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), tool_choice="required",
                           config=SearchConfig(strategy=strategy))
    assert not unlimited.timed_out and unlimited.calls == TARGET


def test_time_limit_keeps_the_best_finished_answer(monkeypatch):
    import time

    clock = _Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    # the policy likes answering in text best: that beam finishes in the first round, the call beams do not
    config = SearchConfig(time_limit=1.5, answer_in_text=True)
    result = run_search(Q, TOOLS, policy=TargetPolicy([], free_text="Hi."), config=config, on_step=clock.tick)
    assert result.timed_out and result.finished and result.calls == []
    assert result.text == "" and result.truncated  # no text answer is started once the time is up


def test_prompt_encoding_counts_in_the_wall_time(monkeypatch):
    import time

    clock = _Clock()
    monkeypatch.setattr(time, "perf_counter", clock)

    class SlowPrompt(TargetPolicy):
        def session(self, *args, **kwargs):
            clock.now += 10.0  # encoding the prompt takes ten seconds of this clock; nothing else moves it
            return super().session(*args, **kwargs)

    result = run_search(Q, TOOLS, policy=SlowPrompt(TARGET), tool_choice="required")
    assert result.calls == TARGET and result.cost.wall_seconds == 10.0


def test_required_call_without_tools_is_an_error():
    with pytest.raises(ValueError, match="no tools"):
        run_search(Q, [], policy=TargetPolicy(TARGET), tool_choice="required")
