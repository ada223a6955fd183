"""A local transformers model as the policy."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from langchain_toolprm.formats import (
    FencedJSONFormat,
    HermesFormat,
    JSONListFormat,
    ToolCallFormat,
    detect_format,
    get_format,
)
from langchain_toolprm.lm import CausalLM, Draw, Prefix, PrefixCache, Sample, StopFn, Usage
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.policy.base import Policy, PolicySession, SampleRequest
from langchain_toolprm.tools import ToolSpec

__all__ = ["TransformersPolicy"]

logger = logging.getLogger(__name__)

# Used only when a tokenizer ships no chat template at all (base models, tiny test models).
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_INSTRUCTIONS = {
    HermesFormat.name: "For each function call, return a JSON object with the function name and arguments "
    'within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, '
    '"arguments": <args-json-object>}\n</tool_call>',
    JSONListFormat.name: 'To call functions, answer with a JSON list only: [{"name": <function-name>, '
    '"arguments": <args-json-object>}, ...]',
    FencedJSONFormat.name: "To call a function, answer with a JSON object in a ```json code block: "
    '{"name": <function-name>, "arguments": <args-json-object>}; one block per call.',
}


def tools_system_prompt(specs: Sequence[ToolSpec], fmt: ToolCallFormat) -> str:
    """The tool list and calling instructions for templates that cannot render tools themselves."""
    tools = "\n".join(json.dumps(spec.to_openai(), ensure_ascii=False) for spec in specs)
    return (
        "You may call one or more functions to assist with the user query.\n\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
        f"{_INSTRUCTIONS[fmt.name]}\nIf no function fits the request, answer in plain text."
    )


def _draw(lm: CausalLM, base: Prefix, request: SampleRequest, generator: Any) -> Draw:
    """A decoding request on a cached prefix; a value's schema becomes its token grammar."""
    grammar = lm.value_grammar(request.schema) if request.schema is not None else None
    return Draw(base, request.n, request.max_new_tokens, request.stop, generator, grammar)


class TransformersPolicy(Policy):
    """A causal LM run locally with transformers, proposing steps from its own chat template.

    Args:
        lm: The model with its tokenizer.
        format: ``"auto"`` (per conversation, the format whose opening the model finds likeliest among
            its template's format and fenced JSON), ``"template"`` (the format the chat template
            teaches), a format name (``"hermes"``, ``"json_list"``, ``"fenced_json"``) or an instance.

    """

    def __init__(self, lm: CausalLM, format: str | ToolCallFormat = "auto"):
        self.lm = lm
        self.name = lm.name
        self.format = format
        tokenizer = lm.tokenizer
        self._template = tokenizer.chat_template or _CHATML
        self.native_format = detect_format(tokenizer.chat_template, lm.end_of_turn)

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

    def _candidate_formats(self) -> list[ToolCallFormat]:
        eot = self.lm.end_of_turn
        if isinstance(self.format, ToolCallFormat):
            return [self.format]
        if self.format == "template":
            return [self.native_format]
        if self.format != "auto":
            return [get_format(self.format, eot)]
        others = [FencedJSONFormat(end_of_turn=eot)]
        return [self.native_format, *[f for f in others if f.name != self.native_format.name]]

    def render_prompt(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec],
                      fmt: ToolCallFormat | None = None) -> str:
        """The chat template rendered with the tools, ending where the assistant starts writing.

        Some templates silently drop ``tools=`` (SmolLM2's, from its GGUF); then the tools and the
        calling instructions go into the system message instead, or the model would never see them.
        """
        fmt = fmt or self.native_format
        tools = [spec.to_openai() for spec in specs]
        render = self.lm.tokenizer.apply_chat_template
        kwargs = {"add_generation_prompt": True, "tokenize": False, "chat_template": self._template}
        prompt = render(list(messages), tools=tools or None, **kwargs)
        if not specs or all(json.dumps(spec.name) in prompt for spec in specs):
            return prompt
        system = tools_system_prompt(specs, fmt)
        rest = list(messages)
        if rest and rest[0]["role"] == "system":
            system = rest[0]["content"] + "\n\n" + system
            rest = rest[1:]
        return render([{"role": "system", "content": system}, *rest], **kwargs)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under the model's tokenizer."""
        return len(self.lm.encode(text))

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
        return self.lm.tree_logprobs(base, items, self.usage)

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
        draws = [_draw(self.lm, self.cache.get(r.text), r, None) for r in requests]
        return self.lm.sample_many(draws, temperature=temperature, usage=self.usage, generator=self.generator)
