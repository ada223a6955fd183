"""A policy served by an OpenAI-compatible completions server (vLLM), for many searches on one server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from langchain_toolprm.formats import ToolCallFormat
from langchain_toolprm.lm import Sample, StopFn, Usage
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.policy.base import PolicySession, SampleRequest
from langchain_toolprm.policy.template import TemplatePolicy
from langchain_toolprm.served.client import ServerSettings
from langchain_toolprm.served.lm import ServedLM, request_seed
from langchain_toolprm.tools import ToolSpec

__all__ = ["ServedPolicy", "ServedSession"]


class ServedPolicy(TemplatePolicy[ServedLM]):
    """The policy on a server: prompts rendered and tokenised here, scored and sampled there.

    It renders prompts and picks call formats exactly as `TransformersPolicy` does (same tokenizer,
    same chat template), so a search through the server takes the same steps as one in process, up
    to the server's numerics.

    Args:
        lm: The served model.
        format: As for `TemplatePolicy`.

    """

    @classmethod
    def from_reference(cls, ref: str | ServerSettings, *, format: str | ToolCallFormat = "auto") -> ServedPolicy:
        """A served policy from ``openai+http://HOST:PORT/v1#MODEL`` (see `ServerSettings`)."""
        return cls(ServedLM.from_reference(ref), format=format)

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], *, seed: int | None = None
                ) -> ServedSession:
        """Render and tokenise the prompt, and choose the call format for this conversation."""
        usage = Usage()
        formats = self._candidate_formats()
        prompt = self.render_prompt(messages, specs, formats[0])
        root = self.lm.encode(prompt)
        if not root:
            raise ValueError("Cannot encode an empty prompt.")
        fmt = formats[0]
        if len(formats) > 1 and specs:
            items = [("", f.branch(0)) for f in formats]
            scores = self.lm.client.run(self.lm.tree_logprobs(root, items, usage))
            fmt = formats[max(range(len(formats)), key=lambda i: sum(scores[i]))]
        return ServedSession(self.lm, prompt, root, fmt, self.native_format, usage, seed)

    def sample_across(self, requests: Sequence[tuple[PolicySession, SampleRequest]], *, temperature: float
                      ) -> list[list[Sample]]:
        """Every request of several sessions sent at once; the server batches them."""
        draws = []
        for session, request in requests:
            if not isinstance(session, ServedSession) or session.lm is not self.lm:
                raise TypeError("sample_across takes sessions of this policy only.")
            draws.append(session.draw(request, temperature))
        return self.lm.client.run(_gather(draws))


_Sampling = Coroutine[Any, Any, list[Sample]]


async def _gather(draws: list[_Sampling]) -> list[list[Sample]]:
    return list(await asyncio.gather(*draws))


class ServedSession(PolicySession):
    """One conversation's prompt as token ids; every request sends them, the server's prefix cache keeps them.

    Sampling seeds come from the session's seed and the order of its requests, so a search run alone
    or among many concurrent ones asks for the same samples.
    """

    def __init__(self, lm: ServedLM, prompt: str, root: list[int], fmt: ToolCallFormat,
                 native_format: ToolCallFormat, usage: Usage, seed: int | None):
        self.lm = lm
        self.prompt = prompt
        self.root = root
        self.format = fmt
        self.native_format = native_format
        self.usage = usage
        self.seed = seed
        self._counter = itertools.count()

    def token_logprobs(self, items: Sequence[tuple[str, str]]) -> list[list[float]]:
        if not items:
            return []
        return self.lm.client.run(self.lm.tree_logprobs(self.root, items, self.usage))

    def opening_logprob(self, assistant_text: str, openings: Sequence[str]) -> float:
        prompt = self.root + self.lm.encode(assistant_text) if assistant_text else self.root
        return self.lm.client.run(self.lm.opening_logprob(prompt, openings, self.usage))

    def draw(self, request: SampleRequest, temperature: float) -> _Sampling:
        """The coroutine that samples one request (its seed is taken now, in request order)."""
        return self._draw(request.text, request.n, 0.0 if request.greedy else temperature, request.max_new_tokens,
                          request.stop, request.schema)

    def _draw(self, text: str, n: int, temperature: float, max_new_tokens: int, stop: StopFn | None,
              schema: Mapping[str, Any] | None = None) -> _Sampling:
        seed = request_seed(self.seed, next(self._counter)) if self.seed is not None else None
        prompt = self.root + self.lm.encode(text) if text else self.root
        return self.lm.sample(prompt, n, temperature=temperature, max_new_tokens=max_new_tokens, stop=stop,
                              seed=seed, usage=self.usage, schema=schema)

    def sample(self, assistant_text: str, n: int, *, temperature: float, max_new_tokens: int,
               stop: StopFn | None = None) -> list[Sample]:
        return self.lm.client.run(self._draw(assistant_text, n, temperature, max_new_tokens, stop))

    def sample_many(self, requests: Sequence[SampleRequest], *, temperature: float) -> list[list[Sample]]:
        return self.lm.client.run(_gather([self.draw(r, temperature) for r in requests]))
