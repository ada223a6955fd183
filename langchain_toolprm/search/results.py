"""What a search returns: the calls, their alternatives, the explored tree and the cost."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_toolprm.grammar import StepTag
from langchain_toolprm.lm import Usage

__all__ = ["Alternative", "Cost", "SearchResult", "TraceNode"]


@dataclass
class Cost:
    """Compute spent by one search, for comparisons at equal budget.

    Attributes:
        policy_tokens: Token positions fed through the policy model (prompt included).
        policy_forwards: Policy forward passes.
        prm_tokens: Token positions fed through the PRM model.
        prm_forwards: PRM forward passes.
        prm_candidates: Candidate steps scored by the PRM.
        wall_seconds: Wall-clock time of the search.

    """

    policy_tokens: int = 0
    policy_forwards: int = 0
    prm_tokens: int = 0
    prm_forwards: int = 0
    prm_candidates: int = 0
    wall_seconds: float = 0.0

    @classmethod
    def of(cls, policy: Usage, prm: Usage | None, prm_candidates: int, wall_seconds: float) -> Cost:
        """Collect the counters of one search."""
        prm = prm or Usage()
        return cls(policy.tokens, policy.forwards, prm.tokens, prm.forwards, prm_candidates, wall_seconds)

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, for JSON and metadata."""
        return asdict(self)


@dataclass
class TraceNode:
    """One explored step.

    Attributes:
        tag: The step kind (``None`` for the root).
        text: What the step decides, readable.
        logprob: The policy's log-probability of the step.
        score: The PRM's score (``None`` for forced or unscored steps).
        kept: Whether the step survived selection.
        forced: Whether it was the only legal step.
        children: Steps explored from here.

    """

    tag: StepTag | None = None
    text: str = ""
    logprob: float | None = None
    score: float | None = None
    kept: bool = True
    forced: bool = False
    children: list[TraceNode] = field(default_factory=list)

    def add(self, node: TraceNode) -> TraceNode:
        """Attach and return a child."""
        self.children.append(node)
        return node

    def walk(self) -> Iterator[TraceNode]:
        """Every node below this one, depth first."""
        for child in self.children:
            yield child
            yield from child.walk()

    def tags(self) -> set[StepTag]:
        """The step kinds present in the tree."""
        return {node.tag for node in self.walk() if node.tag is not None}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready tree."""
        return {
            "tag": self.tag.value if self.tag else None,
            "text": self.text,
            "logprob": self.logprob,
            "score": self.score,
            "kept": self.kept,
            "forced": self.forced,
            "children": [c.to_dict() for c in self.children],
        }


@dataclass
class Alternative:
    """A runner-up call list and how it was judged."""

    calls: list[dict[str, Any]]
    score: float | None
    logprob: float | None


@dataclass
class SearchResult:
    """The outcome of one search.

    Attributes:
        calls: The chosen calls, ``{"name", "arguments"}`` each; empty for "answer in text".
        score: The chosen calls' aggregated PRM score (``None`` without a PRM).
        logprob: Their log-probability under the policy.
        alternatives: Runner-up call lists, best first.
        trace: The tree of explored steps.
        cost: Compute spent.
        strategy: The strategy that ran.
        finished: ``False`` when the budget ended before a complete call list; ``partial`` then holds
            the best unfinished attempt.
        text: A text answer (no-call turns with ``answer_in_text``) or the raw output of free generation.
        format: The call format the policy wrote in.
        lenient_calls: For free generation, every call found anywhere in the text (a generous parse).
        partial: The unfinished call of an interrupted search, ``{"name", "arguments"}``.
        timed_out: The time limit ended the search (``finished`` says whether an answer was complete).
        truncated: The text answer was cut by the token limit (``max_new_tokens``).
        partial_error: Why ``partial`` is not a valid call, when the reason is not an exhausted budget.

    """

    calls: list[dict[str, Any]]
    score: float | None
    logprob: float | None
    alternatives: list[Alternative]
    trace: TraceNode
    cost: Cost
    strategy: str
    finished: bool = True
    text: str | None = None
    format: str | None = None
    lenient_calls: list[dict[str, Any]] | None = None
    partial: dict[str, Any] | None = None
    timed_out: bool = False
    truncated: bool = False
    partial_error: str | None = None
