"""`ToolPRMNode` and `create_toolprm_agent` on the tiny model, with a scripted PRM driving the loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from langchain_toolprm import ToolPRMChatModel, ToolPRMNode, create_toolprm_agent
from langchain_toolprm.search.config import Guidance

# The PRM is asked at every decision: a tiny random policy is often sure, and these tests drive the
# agent with scripted PRMs.
FAST = {"num_beams": 2, "beam_width": 2, "max_value_tokens": 8, "max_tokens": 8,
        "guidance": Guidance(policy_sure=None)}
CALLS: list[dict[str, Any]] = []


@tool
def set_light(room: Literal["kitchen", "bedroom"], on: bool) -> str:
    """Switch the light of a room on or off."""
    CALLS.append({"room": room, "on": on})
    return f"{room} light is now {'on' if on else 'off'}"


def _loop_is_complete(messages: list[Any]) -> None:
    """human -> AI call -> tool result -> AI text: the whole tool loop ran once."""
    kinds = [type(m) for m in messages]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage], kinds
    call = messages[1].tool_calls[0]
    assert call["name"] == "set_light" and messages[2].tool_call_id == call["id"]
    assert not messages[3].tool_calls and isinstance(messages[3].content, str)


@pytest.fixture
def node(tiny_model_dir: Path, tiny_policy: Any, scripted_prm: Any) -> ToolPRMNode:
    return ToolPRMNode(str(tiny_model_dir), [set_light], prm=scripted_prm(), **FAST)


def _graph(node: ToolPRMNode) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("agent", node)
    builder.add_node("tools", ToolNode([set_light]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile()


def test_hand_built_graph_runs_the_tool_loop(node: ToolPRMNode) -> None:
    CALLS.clear()
    out = _graph(node).invoke({"messages": [HumanMessage("Kitchen light on, please.")]})
    _loop_is_complete(out["messages"])
    assert len(CALLS) == 1


async def test_hand_built_graph_async(node: ToolPRMNode) -> None:
    out = await _graph(node).ainvoke({"messages": [HumanMessage("Kitchen light on, please.")]})
    _loop_is_complete(out["messages"])


def test_custom_stream_reports_search_steps(node: ToolPRMNode) -> None:
    parts = [p for p in _graph(node).stream({"messages": [("user", "Kitchen light on")]}, stream_mode="custom")]
    steps = [p for p in parts if p["toolprm"] == "step"]
    results = [p for p in parts if p["toolprm"] == "result"]
    assert len(results) == 2  # one search per model turn
    assert all(p["node"] == "agent" for p in parts)
    candidates = [c for p in steps for c in p["candidates"]]
    assert {"FUNC_NAME", "TOTAL_FINISH"} <= {c["tag"] for c in candidates}
    assert any(not c["kept"] for c in candidates)  # something was pruned
    assert any(c["score"] is not None for c in candidates)  # where the PRM judged (`Guidance`)


async def test_custom_stream_async_with_messages(node: ToolPRMNode) -> None:
    modes: dict[str, list[Any]] = {"custom": [], "messages": []}
    async for mode, part in _graph(node).astream({"messages": [("user", "Kitchen light on")]},
                                                  stream_mode=["custom", "messages"]):
        modes[mode].append(part)
    assert any(p["toolprm"] == "step" for p in modes["custom"])
    # Message streaming carries the model's answers only, never the search's internal work.
    streamed = [message for message, meta in modes["messages"] if meta["langgraph_node"] == "agent"]
    assert streamed and all(isinstance(m, AIMessageChunk) for m in streamed)
    assert sum(m.chunk_position == "last" for m in streamed) == 2


def test_create_toolprm_agent(tiny_model_dir: Path, tiny_policy: Any, scripted_prm: Any) -> None:
    agent = create_toolprm_agent(str(tiny_model_dir), [set_light], prm=scripted_prm(),
                                 system_prompt="You control a house.", **FAST)
    out = agent.invoke({"messages": [("user", "Kitchen light on")]})
    _loop_is_complete(out["messages"])
    assert "toolprm" in out["messages"][1].response_metadata


def test_node_accepts_a_chat_model_and_message_lists(tiny_model_dir: Path, scripted_prm: Any) -> None:
    model = ToolPRMChatModel(policy=str(tiny_model_dir), prm=scripted_prm(), **FAST)
    node = ToolPRMNode(model, [set_light], system_prompt="Be brief.")
    out = node.invoke([HumanMessage("Kitchen light on")])
    [message] = out["messages"]
    assert message.tool_calls and message.tool_calls[0]["name"] == "set_light"
    assert isinstance(node._messages([HumanMessage("x")])[0], SystemMessage)
    with pytest.raises(TypeError, match="not both"):
        ToolPRMNode(model, [set_light], beam_width=4)


def test_node_errors_are_clear(node: ToolPRMNode, tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="'messages' key"):
        node.invoke({"history": []})
    with pytest.raises(ValueError, match="not a bound tool"):
        ToolPRMNode(str(tiny_model_dir), [set_light], tool_choice="unknown_tool")


def test_an_agent_ends_by_default(tiny_model_dir: Path, tiny_policy: Any, scripted_prm: Any) -> None:
    """A model that always wants one more call still answers in text after three tool turns, untold.

    (``repeat_calls``: the tiny model may then make the same call again, as a model that loops would.)
    """
    from langchain.agents import create_agent

    model = ToolPRMChatModel(policy=str(tiny_model_dir), prm=scripted_prm(keep_calling=True), repeat_calls=True,
                             **FAST)
    assert model.max_tool_turns == 3
    out = create_agent(model, [set_light]).invoke({"messages": [("user", "Kitchen light on")]})
    calls = [m for m in out["messages"] if isinstance(m, AIMessage) and m.tool_calls]
    assert len(calls) == 3 and not out["messages"][-1].tool_calls
    assert out["messages"][-1].response_metadata["toolprm"]["max_tool_turns_reached"]
    assert ToolPRMChatModel(policy=str(tiny_model_dir), max_tool_turns=None).max_tool_turns is None  # no limit


def test_max_tool_turns_forces_a_text_answer(tiny_model_dir: Path, tiny_policy: Any, scripted_prm: Any) -> None:
    agent = create_toolprm_agent(str(tiny_model_dir), [set_light], prm=scripted_prm(keep_calling=True),
                                 max_tool_turns=2, **FAST)
    out = agent.invoke({"messages": [("user", "Kitchen light on")]})
    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert not out["messages"][-1].tool_calls
    with pytest.raises(ValueError, match="max_tool_turns"):
        ToolPRMNode(str(tiny_model_dir), [set_light], max_tool_turns=0)
