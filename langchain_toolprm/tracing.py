"""Search progress as LangChain callback events and LangGraph custom stream parts.

A search runs many small policy and PRM evaluations inside one chat-model call. They are not model
calls of their own (no prompt in, message out), so they are reported as *custom events* on the
chat-model run: one ``toolprm_step`` event per search round, carrying every candidate step with its
tag, its policy log-probability and its PRM score, and one ``toolprm_result`` event at the end. They
nest under the chat-model run in tracers and in ``astream_events``, and they never reach LangGraph's
``stream_mode="messages"``, which streams tokens only.

Inside a LangGraph node, `StreamWriterHandler` forwards the same events to ``stream_mode="custom"``,
so a UI can show the search while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, patch_config

from langchain_toolprm.search.results import SearchResult, TraceNode

__all__ = [
    "INTERNAL_TAGS",
    "RESULT_EVENT",
    "STEP_EVENT",
    "EventTarget",
    "StreamWriterHandler",
    "current_stream_writer",
    "progress_config",
    "result_event",
    "step_event",
    "with_handler",
]

logger = logging.getLogger(__name__)

STEP_EVENT = "toolprm_step"
"""Custom event name of one search round."""
RESULT_EVENT = "toolprm_result"
"""Custom event name of a finished search."""
INTERNAL_TAGS = ("nostream", "toolprm:internal")
"""Tags for runs that are part of a search, not an answer: ``nostream`` keeps LangGraph's message
streaming from emitting their tokens. Policies that wrap another chat model should run it with these."""


def _node(node: TraceNode) -> dict[str, Any]:
    return {
        "tag": node.tag.value if node.tag is not None else None,
        "text": node.text,
        "logprob": node.logprob,
        "score": node.score,
        "kept": node.kept,
        "forced": node.forced,
    }


def step_event(round_: int, nodes: Sequence[TraceNode]) -> dict[str, Any]:
    """The payload of a ``toolprm_step`` event: one search round's candidates and what was kept.

    Args:
        round_: The search round, from 0.
        nodes: The candidate steps explored in the round (kept and pruned).

    Returns:
        A JSON-ready dict with ``round``, ``candidates``, ``kept`` and ``pruned``.

    """
    candidates = [_node(n) for n in nodes]
    kept = sum(c["kept"] for c in candidates)
    return {"round": round_, "candidates": candidates, "kept": kept, "pruned": len(candidates) - kept}


def result_event(result: SearchResult) -> dict[str, Any]:
    """The payload of a ``toolprm_result`` event: the outcome of a search and what it cost."""
    return {
        "calls": result.calls,
        "score": result.score,
        "finished": result.finished,
        "strategy": result.strategy,
        "answered_in_text": not result.calls and result.text is not None,
        "cost": result.cost.to_dict(),
    }


@dataclass(frozen=True)
class EventTarget:
    """Where a search sends its events: the callback handlers of one chat-model run, and that run's id.

    LLM run managers cannot start child runs, so events go through a callback manager that names the
    chat-model run as the event's run: tracers and ``astream_events`` show them under that run.

    Attributes:
        manager: A callback manager holding the run's handlers (sync or async).
        run_id: The chat-model run the events belong to.

    """

    manager: BaseCallbackManager
    run_id: UUID

    @classmethod
    def from_run_manager(cls, run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun) -> EventTarget:
        """The target of the run that ``run_manager`` manages."""
        kind = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
        manager = kind(
            handlers=run_manager.handlers,
            inheritable_handlers=run_manager.inheritable_handlers,
            parent_run_id=run_manager.run_id,
            tags=run_manager.tags,
            inheritable_tags=run_manager.inheritable_tags,
            metadata=run_manager.metadata,
            inheritable_metadata=run_manager.inheritable_metadata,
        )
        return cls(manager, run_manager.run_id)

    def emit(self, name: str, data: dict[str, Any]) -> None:
        """Send an event from synchronous code (async handlers run the way LangChain runs them)."""
        if not self.manager.handlers:
            return
        if isinstance(self.manager, AsyncCallbackManager):
            logger.debug("Dropped %s: an async callback manager cannot be used from synchronous code", name)
            return
        cast("CallbackManager", self.manager).on_custom_event(name, data, run_id=self.run_id)

    async def aemit(self, name: str, data: dict[str, Any]) -> None:
        """Send an event from the event loop."""
        if not self.manager.handlers:
            return
        if isinstance(self.manager, AsyncCallbackManager):
            await self.manager.on_custom_event(name, data, run_id=self.run_id)
        else:
            cast("CallbackManager", self.manager).on_custom_event(name, data, run_id=self.run_id)


def current_stream_writer() -> Callable[[Any], None] | None:
    """LangGraph's custom stream writer when called inside a graph node, else ``None``."""
    try:
        from langgraph.config import get_stream_writer

        return get_stream_writer()
    except (ImportError, RuntimeError, KeyError, AttributeError):
        return None


class StreamWriterHandler(BaseCallbackHandler):
    """Forward ToolPRM search events to a LangGraph stream writer (``stream_mode="custom"``).

    Each part is the event payload with a ``"toolprm"`` key naming the event (``"step"`` or
    ``"result"``) and, for steps, a ``"node"`` key naming the graph node, so parts from several
    searches can be told apart.

    Args:
        writer: The writer from ``langgraph.config.get_stream_writer()``.
        node: A label added to every part (the node's name).

    """

    run_inline = True  # keep parts in order and in the event loop's thread under async graphs
    raise_error = False

    def __init__(self, writer: Callable[[Any], None], node: str | None = None):
        self.writer = writer
        self.node = node

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if name not in (STEP_EVENT, RESULT_EVENT) or not isinstance(data, dict):
            return
        part = {"toolprm": "step" if name == STEP_EVENT else "result", **data}
        if self.node is not None:
            part["node"] = self.node
        try:
            self.writer(part)
        except Exception:  # a broken consumer must not break the search
            logger.debug("Stream writer rejected a ToolPRM event", exc_info=True)


def with_handler(config: RunnableConfig | None, handler: BaseCallbackHandler) -> RunnableConfig:
    """A copy of ``config`` whose callbacks also include ``handler`` (inherited by child runs)."""
    config = ensure_config(config)
    callbacks = config.get("callbacks")
    if callbacks is None:
        merged: Any = [handler]
    elif isinstance(callbacks, list):
        merged = [*callbacks, handler]
    else:  # a callback manager: copy it so the caller's manager is left unchanged
        merged = callbacks.copy()
        merged.add_handler(handler, inherit=True)
    return patch_config(config, callbacks=merged)


def progress_config(config: RunnableConfig | None, node: str | None = None) -> RunnableConfig | None:
    """``config`` with a `StreamWriterHandler` added when running inside a LangGraph graph."""
    writer = current_stream_writer()
    if writer is None:
        return config
    return with_handler(config, StreamWriterHandler(writer, node))
