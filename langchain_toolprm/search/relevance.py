"""Whether a tool has anything to do with the user's request: the policy read backwards again.

The packaged 0.5B calls a tool on almost every request it is shown tools with, and neither it nor
the packaged PRM tells "call or answer in text?" well (BFCL irrelevance: greedy and beam answer 3 of
20 in text; docs/benchmarks.md, session 21). The request holds the evidence: a tool that can carry it
out makes it likelier to be written after the tool's description, one that cannot makes it no
likelier. So the policy reads the latest user request after each bound tool's description and after
nothing, and the difference (the pointwise mutual information of request and tool, in nats) is the
tool's relevance; the best tool's is the request's. On held-out ``live_*`` requests it tells the
relevant ones from the irrelevant ones far better than asking the same model "can this function do
it?" (docs/benchmarks.md, session 23).
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_toolprm.messages import ChatMessage, answers_tool_results, latest_request
from langchain_toolprm.policy.base import Policy, PolicySession
from langchain_toolprm.search.config import Relevance
from langchain_toolprm.search.reading import PolicyReader
from langchain_toolprm.tools import ToolSpec

__all__ = ["RelevanceScorer", "describe"]

_SYSTEM = "Each function below is followed by a request that a user could make of it."
_USER = "Write the function and then a request for it."
_REQUEST = "Request: "
_DESCRIPTION_CHARS = 400
"""Where a description is cut: API documentation pasted into a description would otherwise outweigh its
first sentences, which say what the tool is for."""


def describe(spec: ToolSpec) -> str:
    """The text the request is read after: the tool's name, its parameters' names and what it is for."""
    return f"Function: {spec.name}({', '.join(spec.properties)}): {spec.description[:_DESCRIPTION_CHARS]}\n"


class RelevanceScorer:
    """What each bound tool adds to the request's log-probability, and the price of calling a tool at all.

    Only a turn's first decision asks ("call a tool, or answer in text?"); a turn that answers tool
    results has acted on its request already, and its question is another one, so there it has no say.
    The tools are read once per search, in one side session of the policy (`PolicyReader`), whose
    tokens count as the policy's.

    Args:
        policy: The search's policy model.
        messages: The conversation; its latest user message is the request.
        specs: The bound tools.
        settings: The threshold and weight of the check.
        session: The search's policy session (its usage is charged).
        seed: The search's seed.

    """

    def __init__(self, policy: Policy, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec],
                 settings: Relevance, session: PolicySession, seed: int | None):
        self.request = None if answers_tool_results(messages) else latest_request(messages)
        self.settings = settings
        self._specs = {spec.name: spec for spec in specs}
        self._reader = PolicyReader(policy, _SYSTEM, _USER, session, seed)
        self._gains: dict[str, float] | None = None

    def gains(self) -> dict[str, float]:
        """Per bound tool, ``log P(request | its description) - log P(request)`` (empty without a request)."""
        if self._gains is None:
            if self.request is None or not self._specs:
                self._gains = {}
            else:
                names = list(self._specs)
                read = self._reader.read([(describe(self._specs[n]) + _REQUEST, self.request) for n in names]
                                         + [(_REQUEST, self.request)])
                self._gains = {n: value - read[-1] for n, value in zip(names, read[:-1], strict=True)}
        return self._gains

    def penalty(self) -> float:
        """Log-odds taken off calling any tool: ``weight`` per nat the best tool's gain falls short of the threshold.

        The best tool speaks for all: the check decides "call or answer in text?", not which tool. A
        tool that explains only one part of a request of several parts can read it less likely than
        nothing, and pricing tools one by one would move the first call away from it (held-out
        ``live_parallel_multiple``, docs/benchmarks.md, session 23).
        """
        gains = self.gains()
        if not gains:
            return 0.0
        return self.settings.weight * min(0.0, max(gains.values()) - self.settings.threshold)
