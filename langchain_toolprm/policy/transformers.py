"""A local transformers model as the policy."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from langchain_toolprm.formats import ToolCallFormat
from langchain_toolprm.lm import CausalLM, Draw, Prefix, PrefixCache, Sample, StopFn, Usage
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.policy.base import PolicySession, SampleRequest
from langchain_toolprm.policy.template import TemplatePolicy
from langchain_toolprm.tools import ToolSpec

__all__ = ["TransformersPolicy"]

logger = logging.getLogger(__name__)


def _draw(lm: CausalLM, base: Prefix, request: SampleRequest, generator: Any) -> Draw:
    """A decoding request on a cached prefix; a value's schema becomes its token grammar."""
    grammar = lm.value_grammar(request.schema) if request.schema is not None else None
    return Draw(base, request.n, request.max_new_tokens, request.stop, generator, grammar, greedy=request.greedy)


class TransformersPolicy(TemplatePolicy[CausalLM]):
    """A causal LM run locally with transformers, proposing steps from its own chat template.

    Args:
        lm: The model with its tokenizer.
        format: As for `TemplatePolicy`.

    """

    @classmethod
    def from_pretrained(cls, ref: str, *, format: str | ToolCallFormat = "auto", **load_kwargs: Any
                        ) -> TransformersPolicy:
        """Load a policy from a hub id, a local folder, a ``.gguf`` file or a packaged model name.

        Args:
            ref: For example ``"qwen2.5-coder-0.5b-instruct"`` (installed from PyPI, no hub needed).
            format: See the class docstring.
            **load_kwargs: ``dtype``, ``device``, ``cache_dir`` for `langchain_toolprm.models.load_causal_lm`.

        """
        return cls(CausalLM.from_pretrained(ref, **load_kwargs), format=format)

    @classmethod
    def from_langchain(cls, model: Any, *, format: str | ToolCallFormat = "auto") -> TransformersPolicy:
        """The policy on the model inside a ``ChatHuggingFace``, ``HuggingFacePipeline`` or pipeline (no second load).

        See `langchain_toolprm.policy.huggingface.from_langchain`.
        """
        from langchain_toolprm.policy.huggingface import from_langchain

        return from_langchain(model, format=format)

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], *, seed: int | None = None
                ) -> TransformersSession:
        """Encode the prompt once and choose the call format for this conversation."""
        usage = Usage()
        formats = self._candidate_formats()
        prompt = self.render_prompt(messages, specs, formats[0])
        prefix = self.lm.prefix(prompt, usage)
        fmt = formats[0]
        if len(formats) > 1 and specs:
            scores = self.lm.token_logprobs(prefix, [f.branch(0) for f in formats], usage)
            fmt = formats[max(range(len(formats)), key=lambda i: sum(scores[i]))]
        return TransformersSession(self.lm, prompt, PrefixCache(self.lm, prefix, usage), fmt, self.native_format,
                                   usage, seed)

    def sample_across(self, requests: Sequence[tuple[PolicySession, SampleRequest]], *, temperature: float
                      ) -> list[list[Sample]]:
        """All requests of several sessions in one decoding batch, each row on its session's prompt.

        A decoding step reads the weights once whatever its rows, so its cost grows far slower than
        its rows (on one CPU thread, 16 rows cost about 4 times 1 row). Rows keep their session's
        random generator (`Draw`), so a session's samples are the ones it would draw alone. The shared
        decoding is counted in the first session's usage: the sessions' usages still add up to the
        compute spent.
        """
        if not requests:
            return []
        draws = []
        for session, request in requests:
            if not isinstance(session, TransformersSession) or session.lm is not self.lm:
                raise TypeError("sample_across takes sessions of this policy only.")
            draws.append(_draw(self.lm, session.cache.get(request.text), request, session.generator))
        return self.lm.sample_many(draws, temperature=temperature, usage=requests[0][0].usage)


class TransformersSession(PolicySession):
    """A prompt encoded once on a local model; every call feeds only the assistant text after it."""

    def __init__(self, lm: CausalLM, prompt: str, cache: PrefixCache, fmt: ToolCallFormat,
                 native_format: ToolCallFormat, usage: Usage, seed: int | None):
        import torch

        self.lm = lm
        self.prompt = prompt
        self.cache = cache
        self.format = fmt
        self.native_format = native_format
        self.usage = usage
        self.generator = torch.Generator(device=lm.device).manual_seed(seed) if seed is not None else None

    def token_logprobs(self, items: Sequence[tuple[str, str]]) -> list[list[float]]:
        # All items in one tree pass after the longest text they share (the prompt alone when a
        # rollout scores every state of a reference path).
        if not items:
            return []
        base = self.cache.get(os.path.commonprefix([text for text, _ in items]))  # noqa: RUF071 (text, not paths)
        return self.lm.tree_logprobs(base, items, self.usage, keep=self.cache.remember)

    def opening_logprob(self, assistant_text: str, openings: Sequence[str]) -> float:
        return self.lm.opening_logprob(self.cache.get(assistant_text), openings)

    def sample(self, assistant_text: str, n: int, *, temperature: float, max_new_tokens: int,
               stop: StopFn | None = None) -> list[Sample]:
        return self.lm.sample(self.cache.get(assistant_text), n, temperature=temperature,
                              max_new_tokens=max_new_tokens, stop=stop, usage=self.usage,
                              generator=self.generator)

    def sample_answer(self, max_new_tokens: int, openings: Sequence[str]) -> Sample:
        return self.lm.sample(self.cache.get(""), 1, temperature=0.0, max_new_tokens=max_new_tokens,
                              usage=self.usage, generator=self.generator, ban_first=openings)[0]

    def sample_many(self, requests: Sequence[SampleRequest], *, temperature: float) -> list[list[Sample]]:
        bases = self.cache.get_many([r.text for r in requests])  # every state's new text in one pass
        draws = [_draw(self.lm, base, r, None) for base, r in zip(bases, requests, strict=True)]
        return self.lm.sample_many(draws, temperature=temperature, usage=self.usage, generator=self.generator)
