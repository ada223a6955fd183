"""What a policy decides from its tokenizer alone: the prompt its chat template renders, the call formats to try.

Shared by the local policy (`TransformersPolicy`) and the served one (`ServedPolicy`), so a search
through a server renders the same prompt and picks the same call format as one in process.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Generic, TypeVar, cast

from langchain_toolprm.formats import (
    FencedJSONFormat,
    HermesFormat,
    JSONListFormat,
    ToolCallFormat,
    detect_format,
    get_format,
)
from langchain_toolprm.lm.tokenized import TokenizedLM
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.policy.base import Policy
from langchain_toolprm.tools import ToolSpec

__all__ = ["TemplatePolicy", "tools_system_prompt"]

LM = TypeVar("LM", bound=TokenizedLM)

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
    FencedJSONFormat.name: "To call functions, answer with a ```json code block holding one JSON object per call, "
    'each on its own line: {"name": <function-name>, "arguments": <args-json-object>}',
}


def tools_system_prompt(specs: Sequence[ToolSpec], fmt: ToolCallFormat) -> str:
    """The tool list and calling instructions for templates that cannot render tools themselves."""
    tools = "\n".join(json.dumps(spec.to_openai(), ensure_ascii=False) for spec in specs)
    return (
        "You may call one or more functions to assist with the user query.\n\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
        f"{_INSTRUCTIONS[fmt.name]}\nIf no function fits the request, answer in plain text."
    )


class TemplatePolicy(Policy, Generic[LM]):
    """A policy whose prompts come from its model's chat template; sessions are the subclass's.

    Args:
        lm: The model (its tokenizer is all this class reads).
        format: ``"auto"`` (per conversation, the format whose opening the model finds likeliest among
            its template's format and fenced JSON), ``"template"`` (the format the chat template
            teaches), a format name (``"hermes"``, ``"json_list"``, ``"fenced_json"``) or an instance.

    """

    def __init__(self, lm: LM, format: str | ToolCallFormat = "auto"):
        self.lm = lm
        self.name = lm.name
        self.format = format
        tokenizer = lm.tokenizer
        self._template = tokenizer.chat_template or _CHATML
        self.native_format = detect_format(tokenizer.chat_template, lm.end_of_turn)

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
        prompt = self._render(list(messages), specs)
        if not specs or all(json.dumps(spec.name) in prompt for spec in specs):
            return prompt
        system = tools_system_prompt(specs, fmt)
        rest = list(messages)
        if rest and rest[0]["role"] == "system":
            system = rest[0]["content"] + "\n\n" + system
            rest = rest[1:]
        return self._render([{"role": "system", "content": system}, *rest])

    def _render(self, messages: list[ChatMessage], specs: Sequence[ToolSpec] = ()) -> str:
        rendered = self.lm.tokenizer.apply_chat_template(
            messages, tools=[spec.to_openai() for spec in specs] or None, add_generation_prompt=True,
            tokenize=False, chat_template=self._template)
        return cast(str, rendered)  # untokenised, one conversation: one string

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under the model's tokenizer."""
        return len(self.lm.encode(text))
