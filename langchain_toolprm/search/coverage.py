"""How much of the user's request a call list accounts for: the policy read backwards.

A step-level PRM judges "one more call, or stop?" from the calls so far, and the packaged one judges it
worse than the policy, which itself ends lists early (docs/benchmarks.md, sessions 15-18). The request
holds the answer: a list that leaves out one of its parts leaves words of it unexplained. So the same
policy model is asked the other way round, for the log-probability of the user's request written after
the calls (a noisy-channel check). Measured on held-out requests (`benchmarks/coverage_offline.py`,
docs/benchmarks.md, session 22), a missing call costs the request far more than a repeated call adds. No
training, no second model: the policy that proposes the calls also checks them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_toolprm.messages import ChatMessage, calls_since_latest_user, latest_request
from langchain_toolprm.policy.base import Policy, PolicySession
from langchain_toolprm.search.copying import adds_words, request_words
from langchain_toolprm.search.reading import PolicyReader

__all__ = ["CoverageScorer"]

_SYSTEM = ("You list function calls, one JSON object per line, and then write, after 'Request:', the user request"
           " that asks for exactly those calls.")
_USER = "Write the function calls and then the request they carry out."
_REQUEST = "\nRequest: "


class CoverageScorer:
    """``log P(request | calls)`` under the policy, for call lists of one search (cached per list).

    The calls already made since the latest user message (their results in the conversation) come
    first in every list: the request is accounted for by all of them together. Every list is read in
    one side session of the policy (`PolicyReader`), whose tokens count as the policy's in the search's cost.

    Args:
        policy: The search's policy model.
        messages: The conversation; its latest user message is the request.
        session: The search's policy session (its usage is charged).
        seed: The search's seed.

    """

    def __init__(self, policy: Policy, messages: Sequence[ChatMessage], session: PolicySession, seed: int | None):
        self.request = latest_request(messages)
        self._made = calls_since_latest_user(messages)
        self._words = request_words(self.request or "")
        self._reader = PolicyReader(policy, _SYSTEM, _USER, session, seed)

    def scores(self, lists: Sequence[Sequence[Mapping[str, Any]]]) -> list[float]:
        """The request's log-probability after each call list (0.0 each where there is no request)."""
        if self.request is None:
            return [0.0] * len(lists)
        return self._reader.read([(self._text(calls), self.request) for calls in lists])

    def adds_words(self, calls: Sequence[Mapping[str, Any]], *, per_call: bool = False) -> bool:
        """Whether the list's latest call copies words of the request the calls before it do not (`search.copying`).

        The calls already made since the latest user message count as earlier calls. Without a request
        every call adds: nothing can be told.
        """
        if self.request is None:
            return True
        *earlier, last = calls
        return adds_words(self._words, [*self._made, *earlier], last, per_call=per_call)

    def _text(self, calls: Sequence[Mapping[str, Any]]) -> str:
        lines = [json.dumps({"name": c["name"], "arguments": c["arguments"]}, ensure_ascii=False)
                 for c in [*self._made, *calls]]
        return "\n".join(lines) + _REQUEST

