"""What the language models hand around: prefixes, samples, draws, compute counts."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from langchain_toolprm.constrained import ValueGrammar


StopFn = Callable[[str], int | None]
"""Given the text generated so far, the length of its finished part, or ``None`` to go on."""


@dataclass
class Usage:
    """Compute spent on a model: tokens fed through it and forward passes."""

    tokens: int = 0
    forwards: int = 0

    def add(self, tokens: int) -> None:
        """Count one forward pass over ``tokens`` token positions."""
        self.tokens += tokens
        self.forwards += 1

    def include(self, other: Usage) -> None:
        """Count what ``other`` spent here too (a side session's work in the search's cost)."""
        self.tokens += other.tokens
        self.forwards += other.forwards


@dataclass
class Prefix:
    """An encoded text whose keys and values are kept for reuse.

    A prefix has a *root* (a prompt, tokenised alone, as chat templates are) and a *tail* written
    after it (the assistant's text, tokenised alone). The two never share a token, as in training,
    where the template's tokens and the response's tokens are tokenised separately.

    Attributes:
        root: The root text.
        tail: The text after the root.
        ids: Token ids of root then tail.
        root_len: How many of ``ids`` belong to the root.
        kv: Per layer ``(keys, values)`` of shape ``[1, heads, len(ids), dim]``.
        last_hidden: The final hidden state at the last token (its logits predict what comes next).

    """

    root: str
    tail: str
    ids: list[int]
    root_len: int
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(repr=False)
    last_hidden: torch.Tensor = field(repr=False)


@dataclass
class Sample:
    """A sampled continuation.

    Attributes:
        text: The generated text, cut where the stop function said it was finished.
        token_ids: The tokens that produced it.
        logprob: Sum of the tokens' log-probabilities under the untempered model.
        finished: Whether it ended (stop function or end of turn) before the token limit.

    """

    text: str
    token_ids: tuple[int, ...]
    logprob: float
    finished: bool


@dataclass(frozen=True)
class Draw:
    """One request to `CausalLM.sample_many`.

    Attributes:
        base: The prefix to continue.
        n: How many samples (rows).
        max_new_tokens: Token limit per sample.
        stop: Decides when a sample's text is finished; the end-of-turn token always stops.
        generator: Random source of this draw's rows (``None``: the one passed to `sample_many`). Draws of
            different searches decoded together keep their own sources, so each search's samples do not
            depend on what they were batched with.
        grammar: Constrains every row to a valid JSON value of a schema (`CausalLM.value_grammar`).
        ban_first: Texts the first written token (white space aside) may not start, in
            `CausalLM.opening_logprob`'s sense, nor hold (``({"``): a text answer, once the search
            decided that no call fits, is drawn from what the call openings leave over, about the
            mass that "answer in text" was scored by. Such a row may not end before it has written
            something either (an empty answer answers nothing), and writes no chat-control token
            (``<|im_start|>``: the 0.5B opened its answer with one, then wrote its call).
        greedy: These rows take the most likely token whatever the batch's temperature (`SampleRequest`);
            they draw nothing from the random source, so the sampled rows' draws are what they would be
            without them.

    """

    base: Prefix
    n: int
    max_new_tokens: int = 64
    stop: StopFn | None = None
    generator: torch.Generator | None = None
    grammar: ValueGrammar | None = None
    ban_first: tuple[str, ...] = ()
    greedy: bool = False


class ContextLengthError(ValueError):
    """A prompt longer than the model can read; the message gives both sizes."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading token ids ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def logsumexp(values: Sequence[float]) -> float:
    """``log(sum(exp(v)))`` without overflow; ``-inf`` for no values."""
    if not values:
        return -math.inf
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))
