"""Conversations in the one shape chat templates and the PRM prompt read: ``{"role", "content", ...}`` dicts.

Users hand in LangChain messages or plain dicts; tool-call turns and tool results must survive the
conversion so multi-turn agent histories render through the model's own chat template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

__all__ = [
    "ChatMessage",
    "UnsupportedContentError",
    "answers_tool_results",
    "calls_since_latest_user",
    "latest_request",
    "since_latest_user",
    "to_chat_messages",
]

ChatMessage = dict[str, Any]

_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant", "system": "system",
          "developer": "system", "tool": "tool", "function": "tool"}


class UnsupportedContentError(ValueError):
    """Message content a text-only model cannot read (an image, audio, a file); the message names it."""


# Blocks whose text is read as written (LangChain standard, OpenAI Responses and plain-text file forms).
_TEXT_BLOCKS = {"text", "text-plain", "input_text", "output_text"}
# Assistant blocks the prompt carries elsewhere or never shows: calls travel in ``tool_calls``, reasoning
# is the model's own scratch work.
_ASSISTANT_ONLY = {"tool_use", "tool_call", "server_tool_call", "server_tool_result", "invalid_tool_call",
                   "reasoning", "thinking", "redacted_thinking"}


def _text(content: Any, role: str) -> str:
    """Flatten LangChain content (a string or a list of blocks) to the text the model reads.

    Text blocks keep their text and JSON blocks become JSON text, so a tool result in any form reaches
    the prompt. Nothing else is dropped silently: a block a text-only model cannot read (an image, audio,
    a file) raises, naming the block type and the message's role.

    Raises:
        UnsupportedContentError: A block is not text, JSON, or an assistant's call or reasoning.

    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
            continue
        if not isinstance(block, Mapping):
            raise UnsupportedContentError(f"Cannot read {role} content {block!r}: expected text or content blocks.")
        kind = block.get("type")
        if kind in _TEXT_BLOCKS or (kind is None and isinstance(block.get("text"), str)):
            parts.append(str(block.get("text", "")))
        elif kind == "json":
            parts.append(json.dumps(block.get("json"), ensure_ascii=False))
        elif kind in _ASSISTANT_ONLY and role == "assistant":
            continue
        else:
            raise UnsupportedContentError(
                f"A {role} message holds a content block of type {kind!r}, which a text-only model cannot read;"
                " give it as text (or a 'json' block), or describe it in words."
            )
    return "".join(parts)


def _template_call(name: str, args: Any, call_id: str | None) -> dict[str, Any]:
    if isinstance(args, str):
        args = json.loads(args) if args.strip() else {}
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": args}}
    if call_id:
        call["id"] = call_id
    return call


def _from_langchain(message: BaseMessage) -> ChatMessage:
    if isinstance(message, ToolMessage):
        return {"role": "tool", "content": _text(message.content, "tool"), "tool_call_id": message.tool_call_id,
                "name": message.name}
    if isinstance(message, AIMessage):
        out: ChatMessage = {"role": "assistant", "content": _text(message.content, "assistant")}
        if message.tool_calls:
            out["tool_calls"] = [_template_call(c["name"], c["args"], c.get("id")) for c in message.tool_calls]
        return out
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": _text(message.content, "system")}
    if isinstance(message, HumanMessage):
        return {"role": "user", "content": _text(message.content, "user")}
    role = _ROLES.get(message.type)
    if role is None:
        raise ValueError(f"Unsupported message type {message.type!r}.")
    return {"role": role, "content": _text(message.content, role)}


def _from_dict(message: Mapping[str, Any]) -> ChatMessage:
    role = _ROLES.get(str(message.get("role", "")))
    if role is None:
        raise ValueError(f"Message {dict(message)!r} has no known role (user, assistant, system, tool).")
    out: ChatMessage = {"role": role, "content": _text(message.get("content"), role)}
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [
            _template_call(c["function"]["name"], c["function"].get("arguments", {}), c.get("id"))
            if "function" in c
            else _template_call(c["name"], c.get("args", c.get("arguments", {})), c.get("id"))
            for c in calls
        ]
    for key in ("tool_call_id", "name"):
        if key in message:
            out[key] = message[key]
    return out


def to_chat_messages(messages: str | Sequence[BaseMessage | Mapping[str, Any] | str]) -> list[ChatMessage]:
    """Normalise a conversation.

    Args:
        messages: A user text, or a sequence of LangChain messages, role/content dicts or user texts.

    Returns:
        Role/content dicts, with ``tool_calls`` on assistant turns in the OpenAI form chat templates
        expect.

    Raises:
        ValueError: A message has an unknown role or type.
        UnsupportedContentError: A message holds content a text-only model cannot read (an image block).

    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for message in messages:
        if isinstance(message, BaseMessage):
            out.append(_from_langchain(message))
        elif isinstance(message, Mapping):
            out.append(_from_dict(message))
        elif isinstance(message, str):
            out.append({"role": "user", "content": message})
        else:
            raise ValueError(f"Unsupported message {message!r}: use LangChain messages or role/content dicts.")
    return out


def since_latest_user(chat: Sequence[ChatMessage]) -> Sequence[ChatMessage]:
    """The messages after the latest user message: the calls and tool results of the turn in progress."""
    latest_user = max((i for i, m in enumerate(chat) if m["role"] == "user"), default=-1)
    return chat[latest_user + 1:]


def calls_since_latest_user(chat: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """The calls (``{"name", "arguments"}``) the assistant made since the latest user message, in order."""
    return [c["function"] for m in since_latest_user(chat) if m["role"] == "assistant"
            for c in m.get("tool_calls") or []]


def answers_tool_results(chat: Sequence[ChatMessage]) -> bool:
    """Whether tool results have come since the latest user message: the turn answers them, not the request."""
    return any(m["role"] == "tool" for m in since_latest_user(chat))


def latest_request(chat: Sequence[ChatMessage]) -> str | None:
    """The text of the latest user message (``None`` without one, or where it is blank)."""
    text = next((m["content"] for m in reversed(chat) if m["role"] == "user"), "")
    return text.strip() or None
