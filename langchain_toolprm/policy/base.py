"""The policy interface: what the search asks of the model that proposes steps.

A policy turns a conversation and its tools into a *session*: a prompt encoded once, plus the format
in which the model writes calls. The search then asks the session two things only: the log-probability
of short continuations of the assistant text (enumerated choices), and samples of it (free values,
whole answers). Everything about tools and structure stays in the grammar.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_toolprm.formats import ToolCallFormat
from langchain_toolprm.lm import Sample, StopFn, Usage, logsumexp
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.tools import ToolSpec

__all__ = ["Policy", "PolicySession", "SampleRequest"]


@dataclass(frozen=True)
class SampleRequest:
    """One request of `PolicySession.sample_many`.

    Attributes:
        text: The assistant text to continue.
        n: How many samples.
        max_new_tokens: Token limit per sample.
        stop: Decides when a sample is finished (``None``: at the end of the turn).
        schema: The JSON schema of the value being sampled; a policy that can constrain decoding to it
            (a local model with llguidance) samples only valid values, others ignore it.
        greedy: Decode at temperature 0 whatever the batch's temperature: the policy's most likely value
            then rides in the batch that samples the others, one decoding pass for both.

    """

    text: str
    n: int
    max_new_tokens: int
    stop: StopFn | None = None
    schema: Mapping[str, Any] | None = None
    greedy: bool = False


class PolicySession(ABC):
    """One conversation's prompt, encoded once and reused for every step of a search.

    Attributes:
        format: How calls are written after the prompt.
        native_format: The format the model's chat template teaches (the strict parse of free text).
        prompt: The rendered prompt text.
        usage: Compute spent in this session.

    """

    format: ToolCallFormat
    native_format: ToolCallFormat
    prompt: str
    usage: Usage

    @abstractmethod
    def token_logprobs(self, items: Sequence[tuple[str, str]]) -> list[list[float]]:
        """Per ``(assistant_text, continuation)``, the log-probabilities of the continuation's tokens."""

    def opening_logprob(self, assistant_text: str, openings: Sequence[str]) -> float:
        """Log-probability that the model's next token after ``assistant_text`` starts one of ``openings``.

        "Call or answer in text?" is read off it, so every way the model may open a call counts as
        a call. This default adds the first-token probabilities of openings with distinct first
        characters (their first tokens differ); a local model sums its whole next-token distribution.
        """
        distinct = list({o[0]: o for o in reversed(openings) if o}.values())
        firsts = [lps[0] for lps in self.token_logprobs([(assistant_text, o) for o in distinct]) if lps]
        return logsumexp(firsts)

    @abstractmethod
    def sample(
        self,
        assistant_text: str,
        n: int,
        *,
        temperature: float,
        max_new_tokens: int,
        stop: StopFn | None = None,
    ) -> list[Sample]:
        """``n`` continuations of the assistant text (``stop=None``: up to the end of the turn)."""

    def sample_answer(self, max_new_tokens: int, openings: Sequence[str]) -> Sample:
        """The policy's text answer once the search decided that no call fits (greedy).

        "Answer in text" was scored by the probability left over by the call ``openings``, so the
        answer is drawn from that same mass: a local model's first token may not open a call. This
        default cannot mask tokens and samples freely; the search turns a call it finds in the text
        into a call.
        """
        return self.sample("", 1, temperature=0.0, max_new_tokens=max_new_tokens)[0]

    def sample_many(self, requests: Sequence[SampleRequest], *, temperature: float) -> list[list[Sample]]:
        """Samples for several requests; a local model decodes them all in one batch (see `CausalLM.sample_many`).

        This default answers them one by one, for policies that cannot batch.
        """
        return [
            self.sample(r.text, r.n, temperature=0.0 if r.greedy else temperature, max_new_tokens=r.max_new_tokens,
                        stop=r.stop)
            for r in requests
        ]


class Policy(ABC):
    """A model that proposes steps; ``session`` is called once per search."""

    name: str

    @abstractmethod
    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], *, seed: int | None = None
                ) -> PolicySession:
        """Render and encode the prompt for one conversation with its tools."""

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under the policy's tokenizer, for usage reports; this default counts words."""
        return len(text.split())

    def sample_across(self, requests: Sequence[tuple[PolicySession, SampleRequest]], *, temperature: float
                      ) -> list[list[Sample]]:
        """Samples for requests of several sessions of this policy (several conversations), in request order.

        Data builds run many short searches; a local model decodes all their requests in one batch
        (`TransformersPolicy`). This default asks each session for its own requests, one
        `PolicySession.sample_many` call per session.
        """
        by_session: dict[int, list[int]] = {}
        for i, (session, _) in enumerate(requests):
            by_session.setdefault(id(session), []).append(i)
        out: list[list[Sample]] = [[] for _ in requests]
        for members in by_session.values():
            session = requests[members[0]][0]
            samples = session.sample_many([requests[i][1] for i in members], temperature=temperature)
            for i, found in zip(members, samples, strict=True):
                out[i] = found
        return out
