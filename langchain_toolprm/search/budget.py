"""The adaptive budget: how many candidates the PRM judges, and how many beams go on, per step.

Beam search with `SearchConfig.adaptive` set asks these two questions each round instead of spending
the fixed M and N everywhere (`AdaptiveBudget` says why). Both answers come from what the search
already holds, so they cost nothing to compute: the policy's probabilities of the proposals it made,
and the PRM's scores of the beams it ranked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from langchain_toolprm.grammar import StepTag
from langchain_toolprm.search.config import AdaptiveBudget
from langchain_toolprm.search.engine import Proposal

__all__ = ["in_doubt", "retained"]

B = TypeVar("B")


def in_doubt(proposals: Sequence[Proposal], budget: AdaptiveBudget) -> list[Proposal]:
    """The proposals left in doubt: the fewest, best first, whose policy probabilities reach ``policy_mass``.

    ``proposals`` come best first (`SearchContext.propose`). A single proposal left means the policy
    is sure of the step: the search takes it as it takes a forced move, without asking the PRM.

    A state where ending the list is one of the proposals ("one more call, or stop?", "call, or
    answer in text?") is always judged whole: there a small policy is confidently wrong (it stops
    after one call of a parallel request), and overruling it is what the PRM is for.
    """
    if any(p.action.tag is StepTag.TOTAL_FINISH for p in proposals):
        return list(proposals)
    kept: list[Proposal] = []
    mass = 0.0
    for proposal in proposals:
        kept.append(proposal)
        mass += math.exp(proposal.logprob)
        if mass >= budget.policy_mass:
            break
    return kept


def retained(ranked: Sequence[B], score: Callable[[B], float], limit: int, budget: AdaptiveBudget) -> list[B]:
    """At most ``limit`` of the ``ranked`` beams (best first): those within ``score_margin`` of the best one."""
    if not ranked:
        return []
    floor = score(ranked[0]) - budget.score_margin
    return [b for b in ranked[:limit] if score(b) >= floor]
