"""`ToolPRMMiddleware` inside `langchain.agents.create_agent`, on the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_toolprm import ToolPRMChatModel, ToolPRMMiddleware
from langchain_toolprm.search.config import Guidance

# The PRM is asked at every decision: a tiny random policy is often sure, and these tests drive the
# agent with scripted PRMs.
FAST = {"num_beams": 2, "beam_width": 2, "max_value_tokens": 8, "max_tokens": 8,
        "guidance": Guidance(policy_sure=None)}


@tool
def set_light(room: Literal["kitchen", "bedroom"], on: bool) -> str:
    """Switch the light of a room on or off."""
    return f"{room} light is now {'on' if on else 'off'}"


class Verdict(BaseModel):
    """The final verdict."""

    label: Literal["yes", "no"]


class NeverCalled(GenericFakeChatModel):
    """The agent's own model: the middleware must answer in its place."""

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the agent's own model was called")


@pytest.fixture
def own_model() -> NeverCalled:
    return NeverCalled(messages=iter([]))


@pytest.fixture
def middleware(tiny_model_dir: Path, tiny_policy: Any, scripted_prm: Any) -> ToolPRMMiddleware:
    return ToolPRMMiddleware(str(tiny_model_dir), prm=scripted_prm(), **FAST)


def _loop_is_complete(messages: list[Any]) -> None:
    kinds = [type(m) for m in messages]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage], kinds
    assert messages[1].tool_calls[0]["name"] == "set_light"
    assert not messages[3].tool_calls


def test_one_middleware_gives_an_agent_the_search(own_model: NeverCalled, middleware: ToolPRMMiddleware) -> None:
    agent = create_agent(own_model, [set_light], system_prompt="You control a house.", middleware=[middleware])
    out = agent.invoke({"messages": [("user", "Kitchen light on")]})
    _loop_is_complete(out["messages"])
    assert out["messages"][1].response_metadata["toolprm"]["prm"] == "scripted"


async def test_async_agent(own_model: NeverCalled, middleware: ToolPRMMiddleware) -> None:
    agent = create_agent(own_model, [set_light], middleware=[middleware])
    out = await agent.ainvoke({"messages": [("user", "Kitchen light on")]})
    _loop_is_complete(out["messages"])


def test_structured_response_through_the_agents_tool_strategy(own_model: NeverCalled,
                                                              middleware: ToolPRMMiddleware) -> None:
    agent = create_agent(own_model, [], response_format=Verdict, middleware=[middleware])
    out = agent.invoke({"messages": [("user", "Is the sky blue?")]})
    assert isinstance(out["structured_response"], Verdict)


def test_custom_stream_from_the_agent(own_model: NeverCalled, middleware: ToolPRMMiddleware) -> None:
    agent = create_agent(own_model, [set_light], middleware=[middleware])
    parts = list(agent.stream({"messages": [("user", "Kitchen light on")]}, stream_mode="custom"))
    assert [p["toolprm"] for p in parts].count("result") == 2
    assert any(p["toolprm"] == "step" and p["candidates"] for p in parts)


def test_middleware_takes_a_chat_model(tiny_model_dir: Path, scripted_prm: Any) -> None:
    model = ToolPRMChatModel(policy=str(tiny_model_dir), prm=scripted_prm(), **FAST)
    assert ToolPRMMiddleware(model).model is model
    with pytest.raises(TypeError, match="not both"):
        ToolPRMMiddleware(model, prm="rules")
