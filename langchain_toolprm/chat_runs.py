"""Chat-model runs: the search of one request, in this thread or a worker, and its callback events."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config

from langchain_toolprm.chat_request import ChatRequest
from langchain_toolprm.components import load_policy, load_prm
from langchain_toolprm.search.results import SearchResult, TraceNode
from langchain_toolprm.search.run import run_search
from langchain_toolprm.tracing import RESULT_EVENT, STEP_EVENT, EventTarget, result_event, step_event

_DONE = object()
# The event target of the chat-model run being invoked or streamed. LangChain hands `_stream`/`_astream` no
# run manager on its streaming paths, so the public entry points give each run a known id and put its
# callback handlers here, where the search can find them.
RUN_TARGET: contextvars.ContextVar[EventTarget | None] = contextvars.ContextVar("toolprm_run_target", default=None)


def _run(request: ChatRequest, on_step: Callable[[int, list[TraceNode]], None] | None) -> SearchResult:
    policy = load_policy(request.policy)
    return run_search(request.messages, request.specs, policy=policy, prm=load_prm(request.prm, policy),
                      config=request.config, tool_choice=request.tool_choice, on_step=on_step)

def search(request: ChatRequest, target: EventTarget | None) -> SearchResult:
    """Run the search of a request, sending its step and result events to the run's handlers."""
    def on_step(round_: int, nodes: list[TraceNode]) -> None:
        if target is not None:
            target.emit(STEP_EVENT, step_event(round_, nodes))

    result = _run(request, on_step if target is not None else None)
    if target is not None:
        target.emit(RESULT_EVENT, result_event(result))
    return result

async def asearch(request: ChatRequest, target: EventTarget | None) -> SearchResult:
    """Run the search in a worker thread; its step events are dispatched here, in the event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def on_step(round_: int, nodes: list[TraceNode]) -> None:
        event = step_event(round_, nodes)  # built in the worker: the nodes change as the search goes on
        loop.call_soon_threadsafe(queue.put_nowait, event)

    context = contextvars.copy_context()
    future = loop.run_in_executor(None, context.run, _run, request, on_step if target is not None else None)
    future.add_done_callback(lambda _: queue.put_nowait(_DONE))
    while (event := await queue.get()) is not _DONE:
        await target.aemit(STEP_EVENT, event)  # type: ignore[union-attr]  # events come only with a target
    result = await future
    if target is not None:
        await target.aemit(RESULT_EVENT, result_event(result))
    return result


def run_target(model: BaseChatModel, config: RunnableConfig | None, asynchronous: bool
               ) -> tuple[RunnableConfig, EventTarget]:
    """Give the run a known id and collect its handlers the way LangChain will, for search events."""
    config = ensure_config(config)
    run_id = config.get("run_id") or uuid.uuid4()
    kind = AsyncCallbackManager if asynchronous else CallbackManager
    manager = kind.configure(config.get("callbacks"), model.callbacks, model.verbose, config.get("tags"),
                             model.tags, config.get("metadata"), model.metadata)
    return {**config, "run_id": run_id}, EventTarget(manager, run_id)


def event_target(run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None
                  ) -> EventTarget | None:
    """The run's event target: from its run manager, or the one the public entry point set."""
    if run_manager is not None:
        return EventTarget.from_run_manager(run_manager)
    return RUN_TARGET.get()


@contextlib.contextmanager
def targeting(target: EventTarget) -> Iterator[None]:
    """Make ``target`` the event target of the chat-model run in this context while the block runs."""
    token = RUN_TARGET.set(target)
    try:
        yield
    finally:
        RUN_TARGET.reset(token)
