"""What ending the list is worth beside calls that the search found cannot be made.

``relative`` and ``guided`` price a step against the best candidate of its state (`relative_scores`,
`guided_scores`), so ending the list costs what the preferred next call is worth above it. That price
is fair only against a call that can be made. A preferred next call can lead nowhere: every value the
policy writes for it repeats a call already made (the grammar lets no call end twice). If it kept
pricing the end of the list, a path that stopped one call earlier, beside a weaker alternative, would
outrank the one that made every call it could (BFCL parallel_multiple_8: beam stopped after one of two
calls, where greedy backtracks and makes both). So once the search has followed a step into dead ends
and no beam through it is left, the end of the list beside it is priced against the siblings left.

Only the end of the list: a sibling call or value still pays for passing over the step that died. A
path that writes a less likely value because the likely one repeats a call is a list running on past
its requests, and it should keep paying for that (priced against live siblings only, such paths ran
to the call limit on held-out composed requests). Steps the search never followed keep their place:
nothing is known against them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from langchain_toolprm.search.config import SIBLING_AGGREGATIONS, Aggregation
from langchain_toolprm.search.engine import guided_scores, relative_scores

__all__ = ["Ledger", "Siblings", "Step"]


@dataclass(eq=False)
class Siblings:
    """The candidates of one expanded state: what the PRM and the policy said of each.

    Compared by identity: two expansions of equal states are different decisions of the search.
    """

    aggregation: Aggregation
    scores: Sequence[float | None]
    logprobs: Sequence[float]
    weight: float = 1.0
    finish: int | None = None
    """Which candidate ends the list, if one does."""

    def rank(self, index: int, alive: Sequence[bool] | None = None) -> float | None:
        """The step's score: against its siblings (those ``alive``) under a sibling aggregation, else the PRM's own."""
        return (self._ranks(alive) if alive is not None else self._all_ranks)[index]

    @cached_property
    def _all_ranks(self) -> list[float | None]:
        """Every candidate against all its siblings: what a path's key reads at almost every step, once."""
        return self._ranks(None)

    def _ranks(self, alive: Sequence[bool] | None) -> list[float | None]:
        if self.aggregation == "guided":
            return list(guided_scores(self.scores, self.logprobs, self.weight, alive))
        if self.aggregation in SIBLING_AGGREGATIONS:
            return relative_scores(self.scores, alive)
        return list(self.scores)


Step = tuple[Siblings, int]
"""A step of a path: the candidates of its state, and which of them it took."""


class Ledger:
    """Which steps the search followed into a dead end, and which still lead somewhere.

    A step leads nowhere once a beam through it found no legal step left and no beam through it is
    going on or finished. A step whose beams were only dropped for better ones is not known to lead
    nowhere: it keeps its place.
    """

    def __init__(self) -> None:
        self._dead_ends: set[Step] = set()
        self._alive: set[Step] = set()

    def dead_end(self, steps: Sequence[Step]) -> None:
        """Record the steps of a beam that has no legal step left."""
        self._dead_ends.update(steps)

    def live(self, paths: Iterable[Sequence[Step]]) -> None:
        """Set the steps of the beams going on or finished: every step on their paths still leads somewhere."""
        self._alive = {step for steps in paths for step in steps}

    def scores(self, steps: Sequence[Step]) -> list[float]:
        """The scores of a path's steps; an end of the list against its siblings that did not lead nowhere."""
        out = []
        for siblings, index in steps:
            alive = None
            if index == siblings.finish and self._dead_ends:
                alive = [not self._led_nowhere((siblings, i)) for i in range(len(siblings.scores))]
            score = siblings.rank(index, alive)
            if score is not None:
                out.append(score)
        return out

    def _led_nowhere(self, step: Step) -> bool:
        return step in self._dead_ends and step not in self._alive
