"""The PRM interface: scores for candidate steps of one state, all at once."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_toolprm.grammar import Action, GrammarState
from langchain_toolprm.lm import Usage
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.tools import ToolSpec

if TYPE_CHECKING:
    from langchain_toolprm.policy.base import PolicySession

__all__ = ["PRM", "CombinedPRM", "PRMSession", "Path"]

Path = Sequence[tuple[GrammarState, Action]]
"""Steps taken so far: the state before each step and the step."""


class PRMSession(ABC):
    """A PRM bound to one conversation and its tools (its context is encoded once)."""

    usage: Usage

    @abstractmethod
    def score(self, path: Path, state: GrammarState, candidates: Sequence[Action]) -> list[float]:
        """The probability that each candidate step is right, given the path that led to ``state``."""

    def score_many(self, requests: Sequence[tuple[Path, GrammarState, Sequence[Action]]]) -> list[list[float]]:
        """`score` for several states at once (every beam of a search round).

        A PRM that can judge many states in one forward pass overrides it; by default it is one
        `score` per state.
        """
        return [self.score(path, state, candidates) for path, state, candidates in requests]

    def score_path(self, path: Path) -> list[float]:
        """Every step of a whole trajectory (outcome ranking of complete samples)."""
        return [self.score(path[:i], state, [action])[0] for i, (state, action) in enumerate(path)]


class PRM(ABC):
    """A process reward model; ``session`` is called once per search."""

    name: str

    @abstractmethod
    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec]) -> PRMSession:
        """Bind the PRM to one conversation."""

    def session_for(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec],
                    policy: PolicySession) -> PRMSession:
        """Bind the PRM to one search, whose policy session is ``policy``.

        A PRM that reads the policy's own encoded context (`langchain_toolprm.prm.context.ContextPRM`)
        scores on that session's cache; every other PRM encodes the conversation itself (`session`).
        """
        return self.session(messages, specs)


class CombinedPRM(PRM):
    """A weighted geometric mean of PRMs, e.g. schema rules as a prior on a learned PRM.

    Args:
        prms: ``(prm, weight)`` pairs; weights need not sum to one.

    """

    def __init__(self, prms: Sequence[tuple[PRM, float]]):
        if not prms or any(w < 0 for _, w in prms) or sum(w for _, w in prms) <= 0:
            raise ValueError("CombinedPRM needs at least one PRM and non-negative weights with a positive sum.")
        self.prms = list(prms)
        self.name = "+".join(f"{p.name}*{w:g}" for p, w in prms)

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec]) -> PRMSession:
        return _CombinedSession([(p.session(messages, specs), w) for p, w in self.prms])

    def session_for(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec],
                    policy: PolicySession) -> PRMSession:
        return _CombinedSession([(p.session_for(messages, specs, policy), w) for p, w in self.prms])


class _CombinedSession(PRMSession):
    def __init__(self, sessions: list[tuple[PRMSession, float]]):
        self.sessions = sessions
        self.usage = Usage()

    def score(self, path: Path, state: GrammarState, candidates: Sequence[Action]) -> list[float]:
        return self.score_many([(path, state, candidates)])[0]

    def score_many(self, requests: Sequence[tuple[Path, GrammarState, Sequence[Action]]]) -> list[list[float]]:
        total = sum(w for _, w in self.sessions)
        logs = [[0.0] * len(candidates) for _, _, candidates in requests]
        for session, weight in self.sessions:
            before = (session.usage.tokens, session.usage.forwards)
            for row, scores in zip(logs, session.score_many(requests), strict=True):
                for i, s in enumerate(scores):
                    row[i] += weight / total * math.log(max(s, 1e-9))
            self.usage.tokens += session.usage.tokens - before[0]
            self.usage.forwards += session.usage.forwards - before[1]
        return [[math.exp(v) for v in row] for row in logs]
