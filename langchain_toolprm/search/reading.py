"""The search's policy asked the other way round: how likely a text is after another, in a side session.

Checks that use the policy as a judge (`search.coverage`, `search.relevance`) read a user's request
back after something the search knows (a call list, a tool's description). They share this: one side
session of the policy with its own short prompt, opened on first use, texts read once per search, and
every token it spends counted in the search's policy usage, so cost reports stay whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_toolprm.policy.base import Policy, PolicySession

__all__ = ["PolicyReader"]


class PolicyReader:
    """``log P(continuation | prefix)`` under the policy, after a fixed side prompt (cached per pair).

    Args:
        policy: The search's policy model.
        system: The side prompt's system message: what the texts read are.
        user: The side prompt's user message: what the assistant writes.
        charged: The search's policy session, whose usage pays for the side session's.
        seed: The search's seed.

    """

    def __init__(self, policy: Policy, system: str, user: str, charged: PolicySession, seed: int | None):
        self._policy, self._prompt, self._charged, self._seed = policy, (system, user), charged, seed
        self._side: PolicySession | None = None
        self._billed = (0, 0)
        self._known: dict[tuple[str, str], float] = {}

    def read(self, items: Sequence[tuple[str, str]]) -> list[float]:
        """The summed log-probability of each ``(prefix, continuation)``'s continuation after its prefix."""
        new = sorted({item for item in items if item not in self._known})
        if new:
            if self._side is None:
                system, user = self._prompt
                self._side = self._policy.session([{"role": "system", "content": system},
                                                   {"role": "user", "content": user}], [], seed=self._seed)
            rows = self._side.token_logprobs(new)
            self._known.update((item, sum(row)) for item, row in zip(new, rows, strict=True))
            spent = self._side.usage.tokens, self._side.usage.forwards
            self._charged.usage.tokens += spent[0] - self._billed[0]
            self._charged.usage.forwards += spent[1] - self._billed[1]
            self._billed = spent
        return [self._known[item] for item in items]
