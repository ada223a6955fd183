"""LangGraph building blocks: a search node for ``MessagesState`` graphs and a ready agent graph.

`ToolPRMNode` is the model step of the classic tool loop (model -> ``tools_condition`` ->
``ToolNode`` -> model): it reads the conversation from the state, runs the search with the bound
tools and appends one ``AIMessage``. The search's progress goes to ``stream_mode="custom"``: one
``{"toolprm": "step", ...}`` part per search round and a ``{"toolprm": "result", ...}`` part at the end.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig

from langchain_toolprm.chat_models import ToolPRMChatModel
from langchain_toolprm.policy.base import Policy
from langchain_toolprm.prm.base import PRM
from langchain_toolprm.tracing import progress_config

__all__ = ["ToolPRMNode", "create_toolprm_agent"]


def as_chat_model(model: ToolPRMChatModel | Policy | str | os.PathLike[str], prm: PRM | str | None,
                  settings: dict[str, Any]) -> ToolPRMChatModel:
    """The chat model a node or a middleware runs: the one given, or one built from a policy reference."""
    if isinstance(model, ToolPRMChatModel):
        if prm is not None or settings:
            raise TypeError(
                "Pass prm and search settings either to the ToolPRMChatModel or here with a policy reference,"
                f" not both (got prm={prm!r}, settings={sorted(settings)})."
            )
        return model
    return ToolPRMChatModel(policy=model, prm=prm, **settings)


class ToolPRMNode(Runnable[Any, dict[str, list[AnyMessage]]]):
    """The model node of a ``MessagesState`` tool loop, with PRM-guided search for its tool calls.

    Works with ``langgraph.prebuilt.ToolNode`` and ``tools_condition``: it returns
    ``{"messages": [AIMessage]}``, with ``tool_calls`` when the search chose calls and a text answer
    otherwise.

    Example:
        .. code-block:: python

            from langgraph.graph import START, MessagesState, StateGraph
            from langgraph.prebuilt import ToolNode, tools_condition

            from langchain_toolprm import ToolPRMNode

            graph = StateGraph(MessagesState)
            graph.add_node("agent", ToolPRMNode("qwen2.5-coder-0.5b-instruct", tools, prm="rules"))
            graph.add_node("tools", ToolNode(tools))
            graph.add_edge(START, "agent")
            graph.add_conditional_edges("agent", tools_condition)
            graph.add_edge("tools", "agent")
            app = graph.compile()

            for part in app.stream({"messages": [("user", "What is 12 * 7?")]}, stream_mode=["updates", "custom"]):
                print(part)

    Args:
        model: A `ToolPRMChatModel`, or the policy (object or reference) to build one from.
        tools: The tools the search may call (LangChain tools, functions, OpenAI dicts...).
        prm: The PRM, when ``model`` is a policy.
        tool_choice: Passed to ``bind_tools`` (see `ToolPRMChatModel.bind_tools`). A forced choice
            applies to every turn, so a loop with ``"any"`` never answers in text.
        system_prompt: A system message put first when the conversation has none.
        max_tool_turns: After this many tool-calling turns since the last user message, the node
            answers in text from the tool results it has: a guard against small models that keep
            calling (see `ToolPRMChatModel.max_tool_turns`). ``None`` keeps the model's setting (3
            unless the model was built with another; ``max_tool_turns=None`` there lifts the limit).
        messages_key: The state key that holds the conversation.
        name: The node's name (labels its custom stream parts).
        **search: `SearchConfig` fields and chat-model settings, when ``model`` is a policy.

    Raises:
        ToolSchemaError: A tool's schema cannot be used.
        ValueError: ``tool_choice`` names no bound tool.

    """

    def __init__(
        self,
        model: ToolPRMChatModel | Policy | str | os.PathLike[str],
        tools: Sequence[Any],
        *,
        prm: PRM | str | None = None,
        tool_choice: Any = None,
        system_prompt: str | None = None,
        max_tool_turns: int | None = None,
        messages_key: str = "messages",
        name: str = "agent",
        **search: Any,
    ):
        if max_tool_turns is not None and max_tool_turns < 1:
            raise ValueError(f"max_tool_turns must be at least 1 (or None), got {max_tool_turns}.")
        self.model = as_chat_model(model, prm, search)
        if max_tool_turns is not None:
            self.model = self.model.model_copy(update={"max_tool_turns": max_tool_turns})
        self.tools = list(tools)
        self.tool_choice = tool_choice
        self.system_prompt = system_prompt
        self.max_tool_turns = max_tool_turns
        self.messages_key = messages_key
        self.name = name
        self.bound = self.model.bind_tools(self.tools, tool_choice=tool_choice)

    def _messages(self, state: Any) -> list[BaseMessage]:
        if isinstance(state, list):
            messages = state
        elif isinstance(state, dict):
            if self.messages_key not in state:
                raise ValueError(f"ToolPRMNode: the state has no {self.messages_key!r} key (keys: {sorted(state)}).")
            messages = state[self.messages_key]
        elif hasattr(state, self.messages_key):
            messages = getattr(state, self.messages_key)
        else:
            raise ValueError(f"ToolPRMNode: cannot read messages from a state of type {type(state).__name__}.")
        messages = list(messages)
        if self.system_prompt and not (messages and isinstance(messages[0], SystemMessage)):
            messages = [SystemMessage(self.system_prompt), *messages]
        return messages

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, list[AnyMessage]]:
        response = self.bound.invoke(self._messages(input), progress_config(config, self.name), **kwargs)
        return {self.messages_key: [response]}

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
                      ) -> dict[str, list[AnyMessage]]:
        response = await self.bound.ainvoke(self._messages(input), progress_config(config, self.name), **kwargs)
        return {self.messages_key: [response]}


def create_toolprm_agent(
    policy: ToolPRMChatModel | Policy | str | os.PathLike[str],
    tools: Sequence[Any],
    prm: PRM | str | None = None,
    *,
    system_prompt: str | None = None,
    max_tool_turns: int | None = None,
    checkpointer: Any = None,
    name: str | None = None,
    **search: Any,
) -> Any:
    """Build the tool loop ``agent -> tools_condition -> ToolNode -> agent`` over ``MessagesState``.

    Args:
        policy: The policy (object or reference), or a ready `ToolPRMChatModel`.
        tools: Executable tools (LangChain tools or functions): `ToolNode` runs them.
        prm: The PRM (object, reference, ``"rules"``) or ``None``.
        system_prompt: A system message for conversations that have none.
        max_tool_turns: Answer in text after this many tool-calling turns per user message (see
            `ToolPRMNode`); ``None`` keeps the chat model's (3 by default).
        checkpointer: Passed to ``compile`` (memory across invocations, human-in-the-loop).
        name: The compiled graph's name.
        **search: `SearchConfig` fields (``num_beams``, ``beam_width``...) and chat-model settings.

    Returns:
        The compiled graph: ``invoke({"messages": [...]})``, ``stream(..., stream_mode="custom")``.

    """
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    node = ToolPRMNode(policy, tools, prm=prm, system_prompt=system_prompt, max_tool_turns=max_tool_turns, **search)
    builder = StateGraph(MessagesState)
    builder.add_node("agent", node)
    builder.add_node("tools", ToolNode(list(tools)))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer, name=name or "toolprm_agent")
