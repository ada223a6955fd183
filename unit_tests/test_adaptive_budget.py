import math

import pytest
from pydantic import ValidationError

from langchain_toolprm import RulePRM, SearchConfig, run_search
from langchain_toolprm.grammar import Action, StepTag
from langchain_toolprm.search.budget import in_doubt, retained
from langchain_toolprm.search.config import AdaptiveBudget
from langchain_toolprm.search.engine import Proposal
from unit_tests.engine_fakes import PreferPRM, TargetPolicy
from unit_tests.test_search import TARGET, TOOLS, Q

# The adaptive budget decides which candidates the PRM judges; the searches here use `mean`, under which the
# PRM judges every decision (the default `guided` leaves some to the policy alone, `Guidance`).


def _proposals(*probs: float) -> list[Proposal]:
    return [Proposal(Action.set_value(i), math.log(p)) for i, p in enumerate(probs)]


def test_in_doubt_keeps_the_fewest_proposals_that_reach_the_policy_mass():
    budget = AdaptiveBudget(policy_mass=0.9)
    assert len(in_doubt(_proposals(0.95, 0.03, 0.02), budget)) == 1
    assert len(in_doubt(_proposals(0.6, 0.35, 0.05), budget)) == 2
    assert len(in_doubt(_proposals(0.5, 0.3, 0.15), budget)) == 3
    assert len(in_doubt(_proposals(0.3, 0.2), budget)) == 2  # never more than proposed
    assert in_doubt([], budget) == []
    stop_or_go_on = [Proposal(Action.finish(), math.log(0.97)), *_proposals(0.02, 0.01)]
    assert in_doubt(stop_or_go_on, budget) == stop_or_go_on  # the list-level decision is always judged


def test_retained_keeps_beams_near_the_best_up_to_the_cap():
    budget = AdaptiveBudget(score_margin=0.2)
    assert retained([0.9, 0.8, 0.65, 0.6], float, 3, budget) == [0.9, 0.8]
    assert retained([0.9, 0.85, 0.8, 0.75], float, 3, budget) == [0.9, 0.85, 0.8]
    assert retained([], float, 3, budget) == []


@pytest.mark.parametrize("settings", [{"policy_mass": 0.0}, {"policy_mass": 1.5}, {"score_margin": -0.1}])
def test_bad_adaptive_settings_are_refused_by_name(settings):
    with pytest.raises(ValidationError, match=next(iter(settings))):
        SearchConfig(adaptive=settings)


def test_adaptive_budget_judges_only_the_steps_in_doubt():
    """The target policy is sure of every enumerated step (p = 0.90) and unsure of its values."""
    fixed = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=RulePRM(),
                       config=SearchConfig(num_beams=2, beam_width=4, aggregation="mean"))
    adaptive = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=RulePRM(),
                          config=SearchConfig(num_beams=2, beam_width=4, aggregation="mean",
                                              adaptive=AdaptiveBudget(policy_mass=0.9)))
    assert adaptive.calls == fixed.calls == TARGET and adaptive.finished
    assert 0 < adaptive.cost.prm_candidates < fixed.cost.prm_candidates


def test_adaptive_budget_still_lets_the_prm_overrule_where_the_policy_is_unsure():
    """Sampled values split the policy's mass (0.61 and 0.14): both are judged, and the PRM's choice wins."""
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=PreferPRM(value="zzz"),
                        config=SearchConfig(aggregation="mean", adaptive=AdaptiveBudget()))
    assert result.calls[0]["arguments"]["city"] == "zzz"


def test_a_step_the_policy_is_sure_of_is_not_put_to_the_prm():
    """The policy is sure of its parameter names (p = 0.9 each): those steps are taken unjudged."""
    config = SearchConfig(num_beams=2, beam_width=4, aggregation="mean", adaptive=AdaptiveBudget(policy_mass=0.9))
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=RulePRM(), config=config)
    assert result.calls == TARGET
    unjudged = [n for n in result.trace.walk() if n.score is None and not n.forced]
    assert unjudged and all(n.tag is not StepTag.FUNC_NAME for n in unjudged)


def test_the_decision_to_call_or_stop_is_always_put_to_the_prm():
    """The policy is sure of get_weather (p = 0.9) where it could also answer: the PRM still decides."""
    config = SearchConfig(num_beams=2, beam_width=4, aggregation="mean", adaptive=AdaptiveBudget(policy_mass=0.9))
    result = run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=PreferPRM(function="get_time"), config=config)
    assert result.calls[0]["name"] == "get_time"


def test_a_sure_prm_keeps_one_beam():
    """PreferPRM ranks the other function 0.7 below: with a margin under that, one beam goes on after it."""
    config = SearchConfig(num_beams=2, beam_width=4, aggregation="mean")
    kept: dict[str, list[int]] = {}
    for name, c in (("fixed", config), ("adaptive", config.model_copy(
            update={"adaptive": AdaptiveBudget(policy_mass=1.0, score_margin=0.5)}))):
        counts: list[int] = []
        run_search(Q, TOOLS, policy=TargetPolicy(TARGET), prm=PreferPRM(function="get_weather"), config=c,
                   on_step=lambda round_, nodes, counts=counts: counts.append(sum(n.kept for n in nodes)))
        kept[name] = counts
    assert kept["adaptive"][0] == 1 < kept["fixed"][0]
