"""The search's result as LangChain messages: an `AIMessage` with calls or text, usage and metadata, chunks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, model_validator
from typing_extensions import Self

from langchain_toolprm.chat_request import ChatRequest
from langchain_toolprm.components import describe, load_policy
from langchain_toolprm.search.results import SearchResult

_UNFINISHED = "<unfinished>"


class _MergedMessage(AIMessage):
    """What LangChain makes of merged `SearchChunk`s when ``invoke`` streams: a plain `AIMessage`.

    LangChain turns a merged chunk into a message with the chunk class's first parent; building this
    class builds a plain `AIMessage` instead, so ``invoke`` returns the same type whether it streams or not.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> AIMessage:  # type: ignore[misc]
        """A plain `AIMessage` of the merged chunk's fields."""
        return AIMessage(*args, **kwargs)


class SearchChunk(_MergedMessage, AIMessageChunk):
    """An `AIMessageChunk` whose merges keep the errors of invalid calls.

    LangChain rebuilds ``invalid_tool_calls`` from the argument chunks on every merge, with no error;
    this class puts back each call's error from the closing chunk's metadata, so streamed and merged
    chunks give the same ``invalid_tool_calls`` as ``invoke``. Merges take the class of their first chunk.
    """

    type: Literal["AIMessageChunk"] = "AIMessageChunk"  # type: ignore[assignment]  # a chunk, as AIMessageChunk

    def __new__(cls, *args: Any, **kwargs: Any) -> SearchChunk:
        """A chunk, not the plain message its parent builds."""
        return AIMessageChunk.__new__(cls)

    @classmethod
    def lc_id(cls) -> list[str]:
        """Serialized as an `AIMessageChunk`, which every LangChain reader knows."""
        return AIMessageChunk.lc_id()

    @model_validator(mode="after")
    def restore_errors(self) -> Self:
        """Give each invalid call its error, from the metadata where the closing chunk carries them."""
        errors = self.response_metadata.get("toolprm", {}).get("invalid_tool_call_errors", {})
        self.invalid_tool_calls = [{**call, "error": errors.get(call["id"], call["error"])}
                                   for call in self.invalid_tool_calls]
        return self


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` before the first stop sequence, as hosted APIs do with ``stop=``."""
    if not stop:
        return text
    cuts = [i for s in stop if s and (i := text.find(s)) >= 0]
    return text[: min(cuts)] if cuts else text


def _unfinished_args(arguments: dict[str, Any]) -> str:
    """The arguments of a call the search could not finish, as text that no JSON parser accepts.

    The marker keeps the call invalid when streamed chunks are merged (LangChain re-parses chunk
    arguments leniently and would otherwise turn a half-written call into a valid one).
    """
    inner = ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
                      for k, v in arguments.items())
    return "{" + (inner + ", " if inner else "") + _UNFINISHED + "}"


def ai_message(request: ChatRequest, result: SearchResult, include_trace: bool) -> AIMessage:
    """The search's answer as an `AIMessage`: calls, an unfinished call as an invalid one, or text."""
    calls = [tool_call(name=c["name"], args=c["arguments"], id=_call_id()) for c in result.calls]
    invalid = []
    if not result.finished and result.partial is not None:
        invalid.append(invalid_tool_call(
            name=result.partial["name"],
            args=_unfinished_args(result.partial.get("arguments") or {}),
            id=_call_id(),
            error=result.partial_error or (
                f"The search ran out of its time limit (time_limit={request.config.time_limit} s) before this"
                " call was complete. The arguments are the ones filled so far." if result.timed_out else
                "The search stopped before this call was complete: either no valid candidate for its next"
                f" step was found (beam_width={request.config.beam_width},"
                f" max_value_tokens={request.config.max_value_tokens}) or max_steps={request.config.max_steps}"
                " ran out. The arguments are the ones filled so far."),
        ))
    text = "" if calls else _cut_at_stop(result.text or "", request.stop)
    if calls:
        finish_reason = "tool_calls"
    elif (not result.finished and result.partial_error is None) or result.truncated:
        finish_reason = "length"
    else:
        finish_reason = "stop"
    return AIMessage(
        content=text,
        tool_calls=calls,
        invalid_tool_calls=invalid,
        usage_metadata=_usage(request, result, text, calls),
        response_metadata=_metadata(request, result, finish_reason, invalid, include_trace),
    )

def _usage(request: ChatRequest, result: SearchResult, text: str, calls: list[Any]) -> dict[str, int]:
    answer = text or json.dumps([{"name": c["name"], "arguments": c["args"]} for c in calls], ensure_ascii=False)
    output = load_policy(request.policy).count_tokens(answer) if answer and answer != "[]" else 0
    total = max(result.cost.policy_tokens + result.cost.prm_tokens, output)
    return {"input_tokens": total - output, "output_tokens": output, "total_tokens": total}

def _metadata(request: ChatRequest, result: SearchResult, finish_reason: str, invalid: Sequence[Any],
              include_trace: bool) -> dict[str, Any]:
    config = request.config
    toolprm: dict[str, Any] = {
        "strategy": result.strategy,
        "num_beams": config.num_beams,
        "beam_width": config.beam_width,
        "aggregation": config.aggregation,
        "prm": None if request.prm is None else describe(request.prm),
        "score": result.score,
        "logprob": result.logprob,
        "finished": result.finished,
        "timed_out": result.timed_out,
        "format": result.format,
        "cost": result.cost.to_dict(),
        "alternatives": [{"calls": a.calls, "score": a.score, "logprob": a.logprob} for a in result.alternatives],
    }
    if request.answer_now:
        toolprm["max_tool_turns_reached"] = True
    if result.partial is not None:
        toolprm["partial"] = result.partial
    if invalid:
        # Merging streamed chunks rebuilds invalid_tool_calls without their errors (LangChain re-parses
        # the argument chunks); the errors travel here, by call id, and `SearchChunk` puts them back.
        toolprm["invalid_tool_call_errors"] = {call["id"]: call["error"] for call in invalid}
    if include_trace:
        toolprm["trace"] = result.trace.to_dict()
    return {"model_name": request.model_name, "model_provider": "toolprm", "finish_reason": finish_reason,
            "toolprm": toolprm}

def message_chunks(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    """The message as chunks: its text, one chunk per call, then one closing chunk with the metadata.

    Usage and metadata travel in the last chunk only, so merging the chunks adds nothing twice. The
    chunks are `SearchChunk`s, so their merge keeps the errors of invalid calls.
    """
    if message.content:
        yield ChatGenerationChunk(message=SearchChunk(content=message.content))
    for index, call in enumerate(message.tool_calls):
        chunk = tool_call_chunk(name=call["name"], args=json.dumps(call["args"], ensure_ascii=False),
                                id=call["id"], index=index)
        yield ChatGenerationChunk(message=SearchChunk(content="", tool_call_chunks=[chunk]))
    offset = len(message.tool_calls)
    for index, invalid in enumerate(message.invalid_tool_calls, start=offset):
        chunk = tool_call_chunk(name=invalid["name"], args=invalid["args"], id=invalid["id"], index=index)
        yield ChatGenerationChunk(message=SearchChunk(content="", tool_call_chunks=[chunk]))
    yield ChatGenerationChunk(
        message=SearchChunk(
            content="",
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
            chunk_position="last",
        ),
        generation_info={"finish_reason": message.response_metadata.get("finish_reason")},
    )


def structured_output(llm: Runnable[LanguageModelInput, AIMessage], schema: dict[str, Any] | type, name: str,
                      include_raw: bool) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
    """The forced call of ``llm`` parsed into ``schema`` (a pydantic object or a dict), raw message if asked."""
    parser: Runnable[Any, Any]
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        parser = PydanticToolsParser(tools=[schema], first_tool_only=True)
    else:
        parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
    if not include_raw:
        return llm | parser
    parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    fallback = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parse.with_fallbacks([fallback], exception_key="parsing_error")
