"""`ToolPRMMiddleware`: give an existing ``create_agent`` agent PRM-guided tool calls with one line.

The middleware wraps the agent's model call and hands the request to a `ToolPRMChatModel` instead of
the agent's own model. Everything else the agent does stays as it is: the request's messages, system
message, tools and ``tool_choice`` are the search's input, and the agent's own output handling
(structured output through its tool strategy, message names) runs on the search's answer.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage

from langchain_toolprm.chat_models import ToolPRMChatModel
from langchain_toolprm.graph import as_chat_model
from langchain_toolprm.policy.base import Policy
from langchain_toolprm.prm.base import PRM
from langchain_toolprm.tracing import StreamWriterHandler, current_stream_writer

__all__ = ["ToolPRMMiddleware"]


class ToolPRMMiddleware(AgentMiddleware):
    """Run the agent's model step as a ToolPRM search over the request's tools.

    Example:
        .. code-block:: python

            from langchain.agents import create_agent

            from langchain_toolprm import ToolPRMMiddleware

            agent = create_agent(
                "openai:gpt-4o-mini",  # unused: the middleware answers in its place
                tools=[get_weather],
                middleware=[ToolPRMMiddleware("qwen2.5-coder-0.5b-instruct", prm="rules")],
            )
            agent.invoke({"messages": [("user", "Weather in Paris?")]})

    The agent's model is not called; the search sees the same request it would have seen (system
    message, messages, tools, ``tool_choice``, the structured-output tool of a ``response_format``).
    Model settings that other middleware set for the original model (``request.model_settings``)
    are dropped, since they are provider-specific. Inside the agent graph, search progress goes to
    ``stream_mode="custom"`` as ``{"toolprm": "step" | "result", ...}`` parts.

    Args:
        model: A `ToolPRMChatModel`, or the policy (object or reference) to build one from.
        prm: The PRM, when ``model`` is a policy.
        **search: `SearchConfig` fields and chat-model settings (``max_tokens``, ``max_tool_turns``...),
            when ``model`` is a policy.

    """

    def __init__(self, model: ToolPRMChatModel | Policy | str | os.PathLike[str], prm: PRM | str | None = None,
                 **search: Any):
        super().__init__()
        self.model = as_chat_model(model, prm, search)

    def _request(self, request: ModelRequest) -> ModelRequest:
        model = self.model
        writer = current_stream_writer()
        if writer is not None:
            # Local callbacks of this call's model copy: the search's events reach the graph's custom stream.
            model = model.model_copy(update={"callbacks": [StreamWriterHandler(writer, "model")]})
        return request.override(model=model, model_settings={})

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse | AIMessage:
        """Call the agent's handler with the ToolPRM model in place of the agent's model."""
        return handler(self._request(request))

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse | AIMessage:
        """Async `wrap_model_call`."""
        return await handler(self._request(request))
