"""A generative PRM on a completions server, e.g. the packaged adapter served as a vLLM LoRA."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from langchain_toolprm.grammar import Action, GrammarState
from langchain_toolprm.lm import Usage
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.prm.base import Path, PRMSession
from langchain_toolprm.prm.generative import LabelPRM, LabelSession
from langchain_toolprm.prm.prompt import render_context
from langchain_toolprm.served.client import ServerSettings
from langchain_toolprm.served.lm import ServedLM
from langchain_toolprm.tools import ToolSpec

__all__ = ["ServedPRM"]


class ServedPRM(LabelPRM[ServedLM]):
    """`GenerativePRM` with its model on a server: P(+) from the ``+``/``-`` next-token logprobs.

    One base URL can serve the policy and the PRM: the PRM is a LoRA of the policy's base, named in
    the reference (``openai+http://127.0.0.1:8000/v1#prm``). Each candidate step is one request of one
    token, and a search round sends every beam's candidates together; the context and the steps taken
    so far are a prefix all of a state's candidates share.

    Args:
        lm: The served PRM model (or LoRA name).

    """

    def __init__(self, lm: ServedLM):
        super().__init__(lm, f"served:{lm.name}")

    @classmethod
    def from_reference(cls, ref: str | ServerSettings) -> ServedPRM:
        """A served PRM from ``openai+http://HOST:PORT/v1#MODEL`` (see `ServerSettings`)."""
        return cls(ServedLM.from_reference(ref))

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec]) -> PRMSession:
        return _ServedSession(self, self.lm.encode(render_context(messages, specs)), Usage())


class _ServedSession(LabelSession):
    """The step texts, scored by the server; ``root`` is the context's token ids."""

    def __init__(self, prm: ServedPRM, root: list[int], usage: Usage):
        self.served = prm
        self.root = root
        self.usage = usage

    def _scores(self, history: str, steps: Sequence[str]) -> list[float]:
        return self._gathered([(history, steps)])[0]

    def score_many(self, requests: Sequence[tuple[Path, GrammarState, Sequence[Action]]]) -> list[list[float]]:
        # Every beam's candidates go to the server at once: it batches them, and the round waits once.
        return self._gathered([self._texts(path, state, candidates) for path, state, candidates in requests])

    def _gathered(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """P(+) after each step of each ``(history, steps)``, all requests in flight together."""
        lm, labels = self.served.lm, self.served.label_ids

        async def all_steps() -> list[dict[int, float]]:
            prompts = [self.root + lm.encode(history + step) for history, steps in items for step in steps]
            return list(await asyncio.gather(*(lm.next_logprobs(p, labels, self.usage) for p in prompts)))

        found = iter(lm.client.run(all_steps()))
        out = []
        for _, steps in items:
            scores = []
            for logprobs in (next(found) for _ in steps):
                positive, negative = logprobs[labels[0]], logprobs[labels[1]]
                scores.append(1.0 / (1.0 + math.exp(negative - positive)))  # softmax over the two labels
            out.append(scores)
        return out
