"""The PRM's text format, shared by training and inference.

A generative PRM reads the tools, the conversation and the steps taken so far, then a candidate step,
and its next token after the step says whether the step is right (``+``) or wrong (``-``). A training
sequence holds every step of one trajectory with its label after each, so one forward pass trains on
all of them; at inference the steps already taken carry ``+`` (the search kept them) and the
candidate's label position is read.

Change anything here and bump `PROMPT_VERSION`: a PRM trained on one version is scored on the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from langchain_toolprm.grammar import Action, GrammarState, StepTag
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.tools import ToolSpec

__all__ = [
    "LABEL_NEGATIVE",
    "LABEL_POSITIVE",
    "PROMPT_VERSION",
    "render_context",
    "render_history",
    "step_text",
]

PROMPT_VERSION = "toolprm-prompt-v1"
LABEL_POSITIVE = " +"
LABEL_NEGATIVE = " -"
_LINE_END = "\n"
_ASK = " ->"


def render_context(messages: Sequence[ChatMessage], specs: Sequence[ToolSpec]) -> str:
    """Everything before the steps: the tools and the conversation, in a model-neutral plain text."""
    tools = "\n".join(
        json.dumps({"name": s.name, "description": s.description, "parameters": s.parameters}, ensure_ascii=False)
        for s in specs
    )
    turns = []
    for message in messages:
        line = f"{message['role']}: {message.get('content') or ''}"
        for call in message.get("tool_calls") or []:
            function = call["function"]
            line += f"\n  call {function['name']} {json.dumps(function['arguments'], ensure_ascii=False)}"
        turns.append(line)
    conversation = "\n".join(turns)
    return (
        "Judge each step of the assistant's function calls: + if right, - if wrong.\n"
        f"### Tools\n{tools}\n### Conversation\n{conversation}\n### Steps\n"
    )


def step_text(state: GrammarState, action: Action) -> str:
    """One step as the PRM reads it: its tag and what it decides, with enough context to judge it."""
    tag = action.tag
    if tag is StepTag.FUNC_NAME:
        body = action.name or ""
    elif tag is StepTag.ARG_NAME:
        body = f"{state.function}.{action.name}"
    elif tag is StepTag.ARG_VALUE:
        body = f"{state.function}.{state.param} = {action.value_json}"
    elif tag in (StepTag.ARG_END, StepTag.FUNC_END):
        body = state.function or ""
    else:
        body = f"after {len(state.calls)} call(s)" if state.calls else "no call"
    return f"{tag.value} {body}{_ASK}"


def render_history(steps: Sequence[tuple[GrammarState, Action, bool]]) -> str:
    """Steps with their labels, one a line: ``(state before, action, label)``."""
    return "".join(
        step_text(state, action) + (LABEL_POSITIVE if label else LABEL_NEGATIVE) + _LINE_END
        for state, action, label in steps
    )
