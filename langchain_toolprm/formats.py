"""Tool-call text formats: how a (partial) list of calls reads as the text the model writes.

The grammar owns the structure, but values are generated in the context of text, so that text must
look like what the model would write itself. Each format renders any partial state as a prefix of
the finished text (rendering is prefix-monotone: a child state's text extends its parent's) and parses
a finished text back into calls.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from langchain_toolprm.grammar import Action, GrammarState, StepTag

__all__ = [
    "CALL_OPENINGS",
    "FORMATS",
    "FencedJSONFormat",
    "FormatError",
    "HermesFormat",
    "JSONListFormat",
    "ParsedTurn",
    "ToolCallFormat",
    "detect_format",
    "get_format",
    "parse_calls_lenient",
]


# The ways a model starts writing a call, whatever its template teaches: tags, a code fence, a bare JSON
# object or list. A small model asked for one often writes another (Qwen2.5-Coder-0.5B writes bare
# ``{"name": ...}``), so "call or answer in text?" must count all of them as "call".
CALL_OPENINGS = ("<tool_call>", "```json", "{", "[")


class FormatError(ValueError):
    """Text that does not hold calls in the expected format."""


@dataclass(frozen=True)
class ParsedTurn:
    """A finished assistant text read back: its calls and any text outside them."""

    calls: list[dict[str, Any]]
    text: str


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class ToolCallFormat(ABC):
    """A way of writing calls as text.

    Attributes:
        end_of_turn: The text that ends the assistant turn (the tokenizer's end-of-turn token), written
            after the last call.

    """

    end_of_turn: str = ""
    name: ClassVar[str]

    @abstractmethod
    def call_head(self, index: int) -> str:
        """Text that opens call number ``index``, up to its function name."""

    @abstractmethod
    def branch(self, index: int) -> str:
        """The short text that commits to writing call number ``index`` (its probability is P(call))."""

    def openings(self) -> tuple[str, ...]:
        """Texts that start a first call: this format's own opener, then `CALL_OPENINGS`."""
        own = self.branch(0)
        return (own, *[o for o in CALL_OPENINGS if not own.startswith(o)])

    def call_open(self, index: int, function: str) -> str:
        """Text that opens call number ``index`` up to the first argument."""
        return self.call_head(index) + _dump(function) + ', "arguments": {'

    @abstractmethod
    def call_close(self) -> str:
        """Text after the closing brace of the arguments (the FUNC_END step)."""

    @abstractmethod
    def list_close(self) -> str:
        """Text that ends a non-empty call list (before ``end_of_turn``)."""

    @abstractmethod
    def parse(self, text: str) -> ParsedTurn:
        """Read calls written in this format.

        Raises:
            FormatError: The text starts a call in this format that is not well formed.

        """

    def render(self, state: GrammarState) -> str:
        """The assistant text for ``state``."""
        parts: list[str] = []
        for index, call in enumerate(state.calls):
            parts.append(self.call_open(index, call.name))
            parts.append(self._arguments(call.arguments, closed=True))
            parts.append(self.call_close())
        if state.function is not None:
            parts.append(self.call_open(len(state.calls), state.function))
            parts.append(self._arguments(state.arguments, closed=state.closing))
            if state.param is not None:
                parts.append(self._arg_name(len(state.arguments), state.param))
        if state.done and state.calls:
            parts.append(self.list_close() + self.end_of_turn)
        return "".join(parts)

    def continuation(self, state: GrammarState, action: Action) -> str:
        """The text ``action`` appends to ``render(state)``; never touches the rendered prefix."""
        tag = action.tag
        if tag is StepTag.FUNC_NAME:
            return self.call_open(len(state.calls), action.name or "")
        if tag is StepTag.ARG_NAME:
            return self._arg_name(len(state.arguments), action.name or "")
        if tag is StepTag.ARG_VALUE:
            return " " + _dump(action.value)
        if tag is StepTag.ARG_END:
            return "}}"
        if tag is StepTag.FUNC_END:
            return self.call_close()
        return self.list_close() + self.end_of_turn if state.calls else ""

    @staticmethod
    def _arg_name(index: int, name: str) -> str:
        return ("" if index == 0 else ", ") + _dump(name) + ":"

    def _arguments(self, arguments: tuple[tuple[str, str], ...], *, closed: bool) -> str:
        text = "".join(
            self._arg_name(i, name) + " " + _dump(json.loads(value)) for i, (name, value) in enumerate(arguments)
        )
        return text + ("}}" if closed else "")



@dataclass(frozen=True)
class HermesFormat(ToolCallFormat):
    """Qwen/Hermes: each call is ``{"name": .., "arguments": {..}}`` between ``<tool_call>`` tags."""

    name: ClassVar[str] = "hermes"
    _block: ClassVar[re.Pattern[str]] = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)

    def call_head(self, index: int) -> str:
        return self.branch(index) + '\n{"name": '

    def branch(self, index: int) -> str:
        return ("" if index == 0 else "\n") + "<tool_call>"

    def call_close(self) -> str:
        return "\n</tool_call>"

    def list_close(self) -> str:
        return ""

    def parse(self, text: str) -> ParsedTurn:
        calls = [_call_from_json(block, text) for block in self._block.findall(text)]
        rest = self._block.sub("", text)
        if "<tool_call>" in rest:
            raise FormatError(f"Unclosed <tool_call> block in {text!r}.")
        return ParsedTurn(calls, rest.strip())


@dataclass(frozen=True)
class JSONListFormat(ToolCallFormat):
    """Hammer/xLAM: the whole answer is a JSON list ``[{"name": .., "arguments": {..}}, ...]``."""

    name: ClassVar[str] = "json_list"

    def call_head(self, index: int) -> str:
        return self.branch(index) + '"name": '

    def branch(self, index: int) -> str:
        return "[{" if index == 0 else ", {"

    def call_close(self) -> str:
        return ""

    def list_close(self) -> str:
        return "]"

    def parse(self, text: str) -> ParsedTurn:
        stripped = text.strip()
        if not stripped.startswith(("[", "{")):
            return ParsedTurn([], stripped)
        try:
            value, end = json.JSONDecoder().raw_decode(stripped)
        except json.JSONDecodeError as exc:
            raise FormatError(f"The call list is not valid JSON: {exc}") from exc
        items = value if isinstance(value, list) else [value]
        return ParsedTurn([_call_from_obj(item, text) for item in items], stripped[end:].strip())


@dataclass(frozen=True)
class FencedJSONFormat(ToolCallFormat):
    """Calls as JSON objects in one Markdown code fence, one object per line.

    Small code models (Qwen2.5-Coder-0.5B) write calls this way even when their template asks for
    ``<tool_call>`` tags; letting them keep their habit keeps their values right. The list shares one
    fence because that is how such a model writes several calls: after a call's closing ``}}`` it puts
    most of its probability on the next object's line, while after a closing fence it ends its turn.
    With a fence per call, "one more call, or stop?" would be read where the model has already stopped.
    """

    name: ClassVar[str] = "fenced_json"
    _block: ClassVar[re.Pattern[str]] = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)

    def call_head(self, index: int) -> str:
        return ("```json\n" if index == 0 else "\n") + '{"name": '

    def branch(self, index: int) -> str:
        # Later calls commit at their key: "}}\n" is one token, and the object's '{"' another.
        return "```json" if index == 0 else '\n{"name":'

    def call_close(self) -> str:
        return ""

    def list_close(self) -> str:
        return "\n```"

    def parse(self, text: str) -> ParsedTurn:
        calls: list[dict[str, Any]] = []
        for block in self._block.findall(text):
            for value in _block_values(block):
                calls += [_call_from_obj(item, text) for item in (value if isinstance(value, list) else [value])]
        return ParsedTurn(calls, self._block.sub("", text).strip())


def _block_values(block: str) -> Iterator[Any]:
    """The JSON values of a code block: one, or several written one after another (commas between allowed).

    Raises:
        FormatError: Something in the block is not JSON.

    """
    decoder, at = json.JSONDecoder(), 0
    while True:
        at = len(block) - len(block[at:].lstrip(" \t\r\n,"))
        if at == len(block):
            return
        try:
            value, at = decoder.raw_decode(block, at)
        except json.JSONDecodeError as exc:
            raise FormatError(f"A fenced block is not valid JSON: {exc}") from exc
        yield value


FORMATS: dict[str, type[ToolCallFormat]] = {
    cls.name: cls for cls in (HermesFormat, JSONListFormat, FencedJSONFormat)
}


def get_format(name: str, end_of_turn: str = "") -> ToolCallFormat:
    """A format by name.

    Raises:
        ValueError: Unknown name.

    """
    try:
        return FORMATS[name](end_of_turn=end_of_turn)
    except KeyError:
        raise ValueError(f"Unknown tool-call format {name!r}; choose one of {sorted(FORMATS)}.") from None


def detect_format(chat_template: str | None, end_of_turn: str = "") -> ToolCallFormat:
    """The format a chat template teaches: ``<tool_call>`` tags if it mentions them, else a JSON list."""
    if chat_template and "<tool_call>" in chat_template:
        return HermesFormat(end_of_turn=end_of_turn)
    return JSONListFormat(end_of_turn=end_of_turn)


def _call_from_json(block: str, text: str) -> dict[str, Any]:
    try:
        return _call_from_obj(json.loads(block), text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"A tool call is not valid JSON: {block!r} ({exc}).") from exc


def _call_from_obj(obj: Any, text: str) -> dict[str, Any]:
    call = _as_call(obj)
    if call is None:
        raise FormatError(f"Not a call object (needs 'name' and 'arguments'): {obj!r} in {text!r}.")
    return call


def _as_call(obj: Any) -> dict[str, Any] | None:
    """``{"name", "arguments"}`` from the shapes models write, or ``None``."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return None
    return {"name": name, "arguments": arguments}


def _json_values(text: str) -> Iterator[Any]:
    decoder, index = json.JSONDecoder(), 0
    while True:
        starts = [i for i in (text.find("{", index), text.find("[", index)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        yield value
        index = end


def parse_calls_lenient(text: str) -> list[dict[str, Any]]:
    """Every call-shaped JSON object anywhere in ``text``, in order, whatever the format.

    The generous reading of a model's free output: it credits calls written in a code fence, a bare
    list or any tag, so that comparisons with the grammar do not overstate the grammar's gain.
    """
    calls: list[dict[str, Any]] = []
    for value in _json_values(text):
        for item in value if isinstance(value, list) else [value]:
            call = _as_call(item)
            if call is not None:
                calls.append(call)
    return calls
