"""One chat-model call's inputs, checked and resolved: tools, tool choice, search settings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import LangSmithParams
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from langchain_toolprm.components import describe
from langchain_toolprm.grammar import ToolChoice
from langchain_toolprm.policy.base import Policy
from langchain_toolprm.prm.base import PRM
from langchain_toolprm.search.config import SearchConfig
from langchain_toolprm.tools import ToolSpec, to_tool_specs

if TYPE_CHECKING:
    from langchain_toolprm.chat_models import ToolPRMChatModel

_SEARCH_FIELDS = frozenset(SearchConfig.model_fields)
# Standard chat-model parameters that mean nothing for a local model; accepted so that code written for
# hosted models (and `init_chat_model`-style settings) runs unchanged.
_IGNORED_PARAMS = frozenset({"api_key", "max_retries", "base_url"})
# The standard names of a request's time limit; for a local search they set `SearchConfig.time_limit`.
_TIMEOUT_PARAMS = ("timeout", "request_timeout")
# Per-call keyword arguments that `_generate` understands besides the search settings.
_CALL_KWARGS = frozenset({"tools", "tool_choice", "parallel_tool_calls", "model", "temperature", "max_tokens",
                          "search"})


@dataclass
class ChatRequest:
    """One call's inputs, checked and resolved before any model runs."""

    messages: list[BaseMessage]
    specs: list[ToolSpec]
    tool_choice: Any
    config: SearchConfig
    stop: list[str] | None
    policy: Policy | str
    prm: PRM | str | None
    model_name: str
    answer_now: bool = False


def build_request(model: ToolPRMChatModel, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
                  ) -> ChatRequest:
    """Check one call's inputs and resolve its tools, tool choice and search settings before any model runs."""
    unknown = sorted(set(kwargs) - _CALL_KWARGS - _SEARCH_FIELDS)
    if unknown:
        raise ValueError(
            f"ToolPRMChatModel does not understand the argument(s) {unknown}. Per-call arguments are tools,"
            f" tool_choice, parallel_tool_calls, temperature, max_tokens, model, search and the SearchConfig"
            f" fields {sorted(_SEARCH_FIELDS)}."
        )
    specs = to_tool_specs(kwargs.get("tools") or [])
    tool_choice = kwargs.get("tool_choice")
    check_tool_choice(tool_choice, [s.name for s in specs])
    auto = ToolChoice.parse(tool_choice, [s.name for s in specs]).mode == "auto"
    answer_now = (model.max_tool_turns is not None and auto and bool(specs)
                  and _tool_turns(messages) >= model.max_tool_turns)
    if answer_now:
        tool_choice = "none"  # the search then answers in text, without the tools in its prompt
    config = search_config(model, kwargs)
    policy_ref = kwargs.get("model") or model.policy
    return ChatRequest(
        messages=list(messages),
        specs=specs,
        tool_choice=tool_choice,
        config=config,
        stop=stop if stop is not None else model.stop,
        policy=policy_ref,  # loaded by the search, off the event loop under async calls
        prm=model.prm,
        model_name=describe(policy_ref),
        answer_now=answer_now,
    )

def search_config(model: ToolPRMChatModel, kwargs: dict[str, Any]) -> SearchConfig:
    """The model's search settings with this call's overrides (``search=``, its fields, the standard names)."""
    settings = model.search.model_dump()
    extra = kwargs.get("search")
    if isinstance(extra, SearchConfig):
        extra = extra.model_dump(exclude_unset=True)
    settings.update(extra or {})
    settings.update({k: v for k, v in kwargs.items() if k in _SEARCH_FIELDS and k != "temperature"})
    temperature = kwargs.get("temperature", model.temperature)
    if temperature is not None:
        settings["temperature"] = temperature
    max_tokens = kwargs.get("max_tokens", model.max_tokens)
    if max_tokens is not None:
        settings["max_new_tokens"] = max_tokens
    if kwargs.get("parallel_tool_calls") is not None:
        settings["parallel_tool_calls"] = bool(kwargs["parallel_tool_calls"])
    settings["answer_in_text"] = True  # a chat model must say something when it calls nothing
    return SearchConfig.model_validate(settings)


def check_tool_choice(tool_choice: Any, names: Sequence[str]) -> None:
    """Reject a tool choice the grammar cannot honour, with the reason."""
    choice = ToolChoice.parse(tool_choice, names)
    if choice.mode == "required" and not names:
        raise ValueError(f"tool_choice={tool_choice!r} asks for a tool call, but no tools are bound.")


def _tool_turns(messages: Sequence[BaseMessage]) -> int:
    """Assistant turns with tool calls since the latest user message."""
    turns = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage) and message.tool_calls:
            turns += 1
    return turns


def gather_settings(values: Any) -> Any:
    """A chat model's init arguments with search settings moved into ``search`` and hosted-API ones dropped.

    ``model=`` is the policy (the name other chat models use), ``timeout=`` the search's time limit, and
    ``$TOOLPRM_POLICY`` / ``$TOOLPRM_PRM`` fill in what is not given.
    """
    if not isinstance(values, dict):
        return values
    values = {k: v for k, v in values.items() if k not in _IGNORED_PARAMS}
    for name in _TIMEOUT_PARAMS:
        timeout = values.pop(name, None)
        if timeout is not None:
            values["time_limit"] = timeout
    if "model" in values:  # the name other chat models use for their model
        if values.get("policy") is not None:
            raise ValueError("Pass the policy model as policy= or model=, not both.")
        values["policy"] = values.pop("model")
    if values.get("policy") is None:
        if not os.environ.get("TOOLPRM_POLICY"):
            raise ValueError(
                "ToolPRMChatModel needs a policy: pass policy='qwen2.5-coder-0.5b-instruct' (a packaged name,"
                " a hub id, a folder or a .gguf file) or a Policy object, or set $TOOLPRM_POLICY."
            )
        values["policy"] = os.environ["TOOLPRM_POLICY"]
    if "prm" not in values and os.environ.get("TOOLPRM_PRM"):
        values["prm"] = os.environ["TOOLPRM_PRM"]
    loose = {k: values.pop(k) for k in list(values) if k in _SEARCH_FIELDS and k != "temperature"}
    if loose:
        base = values.get("search") or {}
        if isinstance(base, SearchConfig):
            base = base.model_dump()
        elif not isinstance(base, dict):
            raise TypeError(f"search must be a SearchConfig or a dict, got {type(base).__name__}.")
        values["search"] = {**base, **loose}
    return values


def model_profile() -> ModelProfile:
    """What the chat model supports, for LangChain's agents."""
    # Structured output goes through tool calling (the grammar), not a native JSON mode; saying so
    # makes `create_agent` pick its tool strategy for `response_format`.
    return ModelProfile(
        open_weights=True,
        text_inputs=True,
        image_inputs=False,
        audio_inputs=False,
        video_inputs=False,
        pdf_inputs=False,
        text_outputs=True,
        tool_calling=True,
        tool_choice=True,
        tool_call_streaming=True,
        structured_output=False,
        temperature=True,
    )


def langsmith_params(model: ToolPRMChatModel, stop: list[str] | None, kwargs: dict[str, Any]) -> LangSmithParams:
    """The standard tracing parameters of one call: provider, model, temperature, token limit, stops."""
    ref = kwargs.get("model")
    params = LangSmithParams(
        ls_provider="toolprm",
        ls_model_name=ref if isinstance(ref, str) else model.model_name,
        ls_model_type="chat",
    )
    temperature = kwargs.get("temperature", model.temperature)
    params["ls_temperature"] = float(temperature if temperature is not None else model.search.temperature)
    max_tokens = kwargs.get("max_tokens", model.max_tokens)
    params["ls_max_tokens"] = int(max_tokens if max_tokens is not None else model.search.max_new_tokens)
    if stop := (stop or model.stop):
        params["ls_stop"] = list(stop)
    return params


def format_tool(tool: Any) -> dict[str, Any]:
    """An OpenAI tool dict checked by the same code the search uses, so bad schemas fail at bind time."""
    spec = to_tool_specs([tool])[0]
    return spec.to_openai()
