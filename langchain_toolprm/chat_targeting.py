"""The public entry points of a chat model, each giving its run a known event target for search events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import RunnableConfig

from langchain_toolprm.chat_runs import run_target, targeting

__all__ = ["TargetedChatModel"]


class TargetedChatModel(BaseChatModel):
    """A chat model whose ``invoke``/``stream`` (and async forms) set the run's event target around the run.

    LangChain hands ``_stream``/``_astream`` no run manager on its streaming paths, so the search could
    not reach the run's callback handlers; these overrides give each run its id and handlers first.
    """

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        config, target = run_target(self, config, asynchronous=False)
        with targeting(target):
            return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        config, target = run_target(self, config, asynchronous=True)
        with targeting(target):
            return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        config, target = run_target(self, config, asynchronous=False)
        chunks = super().stream(input, config, stop=stop, **kwargs)
        # The whole search runs before the first chunk, inside this one `next`: the target is set for
        # exactly that span, in this context, so nothing leaks into the caller's context between chunks.
        with targeting(target):
            first = next(chunks, None)
        if first is None:
            return
        yield first
        yield from chunks

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        config, target = run_target(self, config, asynchronous=True)
        chunks = super().astream(input, config, stop=stop, **kwargs)
        with targeting(target):
            first = await anext(chunks, None)
        if first is None:
            return
        yield first
        async for chunk in chunks:
            yield chunk
