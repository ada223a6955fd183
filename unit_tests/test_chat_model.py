"""`ToolPRMChatModel` on a tiny random model: the LangChain contract, whatever the model says.

The tiny model is random, so these tests check structure (valid calls, tool_choice, ids, metadata,
streaming, callbacks), never quality. Tools use enums and booleans, which the grammar enumerates,
so every search finishes; free values from a random model rarely close in a small budget.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from langchain_toolprm import SearchConfig, ToolPRMChatModel, ToolSchemaError, components
from langchain_toolprm.search.config import Guidance
from langchain_toolprm.tracing import RESULT_EVENT, STEP_EVENT

# The PRM is asked at every decision: a tiny random policy is often sure, and these tests drive the
# agent with scripted PRMs.
FAST = {"num_beams": 1, "beam_width": 2, "max_value_tokens": 8, "max_tokens": 8,
        "guidance": Guidance(policy_sure=None)}


@tool
def set_light(room: Literal["kitchen", "bedroom", "hall"], on: bool) -> str:
    """Switch the light of a room on or off."""
    return f"{room} light {'on' if on else 'off'}"


@tool
def get_weather(city: Literal["Paris", "Tokyo"], unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Current weather in a city."""
    return f"18 degrees {unit} in {city}"


@tool
def ping() -> str:
    """Check the connection."""
    return "pong"


TOOLS = {t.name: t for t in (set_light, get_weather, ping)}


class Verdict(BaseModel):
    """Whether the statement is true."""

    label: Literal["yes", "no"] = Field(description="The verdict")
    sure: bool


class VerdictDict(TypedDict):
    """Whether the statement is true."""

    label: Literal["yes", "no"]
    sure: bool


@pytest.fixture
def model(tiny_model_dir: Path, tiny_policy: Any) -> ToolPRMChatModel:
    return ToolPRMChatModel(policy=str(tiny_model_dir), prm="rules", **FAST)


@pytest.fixture
def judged(tiny_model_dir: Path, tiny_policy: Any) -> ToolPRMChatModel:
    """A model whose PRM judges every decision (`mean`); the default `guided` leaves some to the policy."""
    return ToolPRMChatModel(policy=str(tiny_model_dir), prm="rules", aggregation="mean", **FAST)


def _check_calls(message: AIMessage) -> None:
    """Every call runs: the tool's own pydantic schema accepts the arguments."""
    ids = [c["id"] for c in message.tool_calls]
    assert len(set(ids)) == len(ids)
    for call in message.tool_calls:
        assert call["id"].startswith("call_")
        assert call["type"] == "tool_call"
        result = TOOLS[call["name"]].invoke(call)
        assert isinstance(result, ToolMessage) and result.status == "success"


# -- construction -------------------------------------------------------------------------------------


def test_construction_loads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(ref: str) -> None:
        raise AssertionError(f"loaded {ref} at construction")

    monkeypatch.setattr(components, "_policy", refuse)
    monkeypatch.setattr(components, "_prm", refuse)
    model = ToolPRMChatModel(policy="qwen2.5-coder-0.5b-instruct", prm="some/prm")
    model.bind_tools([set_light], tool_choice="set_light")
    model.with_structured_output(Verdict)
    assert model.model_name == "qwen2.5-coder-0.5b-instruct"
    assert model.prm_name == "some/prm"


def test_search_settings_at_top_level() -> None:
    model = ToolPRMChatModel(policy="p", num_beams=3, beam_width=8, strategy="greedy", temperature=0.5)
    assert model.search.num_beams == 3 and model.search.beam_width == 8 and model.search.strategy == "greedy"
    assert model.temperature == 0.5
    merged = ToolPRMChatModel(policy="p", search=SearchConfig(num_beams=4), beam_width=16)
    assert (merged.search.num_beams, merged.search.beam_width) == (4, 16)
    assert ToolPRMChatModel.from_pretrained("p", prm="rules", num_beams=5).search.num_beams == 5


def test_hosted_api_params_are_accepted_and_typos_are_not() -> None:
    ToolPRMChatModel(policy="p", api_key="x", timeout=30, max_retries=2)
    with pytest.raises(ValueError, match="num_beam"):
        ToolPRMChatModel(policy="p", num_beam=3)


def test_policy_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOOLPRM_POLICY", raising=False)
    with pytest.raises(ValueError, match="needs a policy"):
        ToolPRMChatModel()
    monkeypatch.setenv("TOOLPRM_POLICY", "smollm2-135m-instruct")
    assert ToolPRMChatModel().policy == "smollm2-135m-instruct"
    assert ToolPRMChatModel(model="p").policy == "p"  # the usual name for it
    with pytest.raises(ValueError, match="not both"):
        ToolPRMChatModel(model="p", policy="q")


def test_profile_and_ls_params() -> None:
    model = ToolPRMChatModel(policy="p", max_tokens=64, stop=["END"])
    assert model.profile is not None
    assert model.profile["tool_calling"] and model.profile["tool_choice"]
    params = model._get_ls_params()
    assert params["ls_provider"] == "toolprm" and params["ls_model_name"] == "p"
    assert params["ls_max_tokens"] == 64 and params["ls_stop"] == ["END"]
    assert params["ls_temperature"] == model.search.temperature
    assert model._get_ls_params(model="other")["ls_model_name"] == "other"


# -- binding ------------------------------------------------------------------------------------------


def test_bind_tools_binds_openai_dicts() -> None:
    bound = ToolPRMChatModel(policy="p").bind_tools([set_light, ping], tool_choice="any")
    tools = bound.kwargs["tools"]  # type: ignore[attr-defined]
    assert [t["function"]["name"] for t in tools] == ["set_light", "ping"]
    assert all(t["type"] == "function" for t in tools)
    assert bound.kwargs["tool_choice"] == "any"  # type: ignore[attr-defined]


@pytest.mark.parametrize("choice", ["nope", {"type": "function", "function": {"name": "nope"}}])
def test_unknown_tool_choice_names_the_tools(choice: Any) -> None:
    with pytest.raises(ValueError, match=r"nope.*set_light"):
        ToolPRMChatModel(policy="p").bind_tools([set_light], tool_choice=choice)


def test_tool_choice_without_tools() -> None:
    with pytest.raises(ValueError, match="no tools are bound"):
        ToolPRMChatModel(policy="p").bind_tools([], tool_choice="any")


def test_malformed_schema_names_the_tool() -> None:
    bad = {"type": "function", "function": {"name": "broken", "parameters": {
        "type": "object", "properties": {"when": {"type": "datetime"}}}}}
    with pytest.raises(ToolSchemaError, match=r"broken.*when"):
        ToolPRMChatModel(policy="p").bind_tools([set_light, bad])


def test_unknown_call_argument_is_an_error(model: ToolPRMChatModel) -> None:
    with pytest.raises(ValueError, match="response_format"):
        model.invoke("hi", response_format={"type": "json_object"})


# -- calls --------------------------------------------------------------------------------------------


def test_text_answer_without_tools(model: ToolPRMChatModel) -> None:
    message = model.invoke("hello", max_tokens=1)
    assert isinstance(message, AIMessage)
    assert isinstance(message.content, str) and not message.tool_calls
    assert message.response_metadata["finish_reason"] == "length"  # one token cannot end the answer
    assert message.response_metadata["model_name"] == model.model_name
    usage = message.usage_metadata
    assert usage is not None and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


@pytest.mark.parametrize("choice", ["any", "required", True])
def test_required_choice_calls(model: ToolPRMChatModel, choice: Any) -> None:
    message = model.bind_tools([set_light, get_weather], tool_choice=choice).invoke("kitchen light on")
    assert message.tool_calls
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert message.content == ""
    _check_calls(message)


@pytest.mark.parametrize("choice", ["get_weather", {"type": "function", "function": {"name": "get_weather"}}])
def test_named_choice_calls_that_tool(model: ToolPRMChatModel, choice: Any) -> None:
    message = model.bind_tools([set_light, get_weather], tool_choice=choice).invoke("kitchen light on")
    assert [c["name"] for c in message.tool_calls] == ["get_weather"]
    _check_calls(message)


def test_none_choice_answers_in_text(model: ToolPRMChatModel, tiny_policy: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    real = type(tiny_policy).session

    def spy(self: Any, messages: Any, specs: Any, **kwargs: Any) -> Any:
        seen.append(list(specs))
        return real(self, messages, specs, **kwargs)

    monkeypatch.setattr(type(tiny_policy), "session", spy)
    message = model.bind_tools([set_light], tool_choice="none").invoke("kitchen light on")
    assert not message.tool_calls and isinstance(message.content, str)
    assert seen == [[]]  # no tool list to tempt the model into writing calls as text


def test_no_argument_tool(model: ToolPRMChatModel) -> None:
    message = model.bind_tools([ping], tool_choice="any").invoke("ping")
    assert message.tool_calls[0]["name"] == "ping" and message.tool_calls[0]["args"] == {}


def test_parallel_calls_can_be_switched_off(model: ToolPRMChatModel, scripted_prm: Any) -> None:
    # The scripted PRM likes calls; only the grammar's limit keeps the turn at one call.
    eager = model.model_copy(update={"prm": scripted_prm()})
    message = eager.bind_tools([set_light, ping], tool_choice="any", parallel_tool_calls=False).invoke("go")
    assert len(message.tool_calls) == 1


def test_auto_choice_gives_calls_or_text(model: ToolPRMChatModel) -> None:
    message = model.bind_tools([set_light, get_weather]).invoke("kitchen light on")
    if message.tool_calls:
        assert message.content == "" and message.response_metadata["finish_reason"] == "tool_calls"
    else:
        assert message.response_metadata["finish_reason"] in ("stop", "length")
    _check_calls(message)


def test_metadata_holds_the_search(model: ToolPRMChatModel) -> None:
    message = model.bind_tools([set_light], tool_choice="any").invoke("kitchen light on", beam_width=3)
    info = message.response_metadata["toolprm"]
    assert info["strategy"] == "beam" and info["beam_width"] == 3 and info["prm"] == "rules"
    assert info["finished"] is True and info["format"]
    assert set(info["cost"]) >= {"policy_tokens", "policy_forwards", "prm_candidates", "wall_seconds"}
    assert isinstance(info["alternatives"], list)
    for alternative in info["alternatives"]:
        assert set(alternative) == {"calls", "score", "logprob"}
    assert "trace" not in info
    json.dumps(message.response_metadata)  # JSON-ready, for tracers


def test_include_trace(model: ToolPRMChatModel) -> None:
    traced = model.model_copy(update={"include_trace": True})
    trace = traced.bind_tools([set_light], tool_choice="any").invoke("go").response_metadata["toolprm"]["trace"]
    tags = set()
    stack = [trace]
    while stack:
        node = stack.pop()
        tags.add(node["tag"])
        stack.extend(node["children"])
    assert {"FUNC_NAME", "ARG_NAME", "ARG_VALUE"} <= tags


def test_budget_end_gives_invalid_tool_call(model: ToolPRMChatModel) -> None:
    bound = model.bind_tools([set_light], tool_choice="set_light")
    message = bound.invoke("kitchen light on", max_steps=2)
    assert not message.tool_calls
    assert message.response_metadata["finish_reason"] == "length"
    [invalid] = message.invalid_tool_calls
    assert invalid["name"] == "set_light" and invalid["id"].startswith("call_")
    assert "stopped before this call was complete" in (invalid["error"] or "")

    def without_ids(calls: list[Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in call.items() if k != "id"} for call in calls]

    expected = without_ids(message.invalid_tool_calls)
    streamed = _merge(bound.stream("kitchen light on", max_steps=2))
    assert not streamed.tool_calls and without_ids(streamed.invalid_tool_calls) == expected
    errors = streamed.response_metadata["toolprm"]["invalid_tool_call_errors"]
    assert errors == {streamed.invalid_tool_calls[0]["id"]: invalid["error"]}

    async def astreamed() -> AIMessageChunk:
        return _merge([chunk async for chunk in bound.astream("kitchen light on", max_steps=2)])

    assert without_ids(asyncio.run(astreamed()).invalid_tool_calls) == expected
    streaming = model.model_copy(update={"streaming": True}).bind_tools([set_light], tool_choice="set_light")
    message = streaming.invoke("kitchen light on", max_steps=2)
    assert type(message) is AIMessage and without_ids(message.invalid_tool_calls) == expected


def test_stop_sequences_cut_text(model: ToolPRMChatModel, monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_toolprm import chat_runs

    real = chat_runs.run_search

    def fixed_text(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        result.text = "one two STOP three"
        return result

    monkeypatch.setattr(chat_runs, "run_search", fixed_text)
    assert model.invoke("hi", stop=["STOP"]).content == "one two "
    assert model.model_copy(update={"stop": ["two"]}).invoke("hi").content == "one "


def test_history_with_tool_calls_renders_through_the_template(model: ToolPRMChatModel, tiny_policy: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []
    real = type(tiny_policy).session

    def spy(self: Any, messages: Any, specs: Any, **kwargs: Any) -> Any:
        session = real(self, messages, specs, **kwargs)
        prompts.append(session.prompt)
        return session

    monkeypatch.setattr(type(tiny_policy), "session", spy)
    history = [
        SystemMessage("You control a house."),
        HumanMessage("Light in the kitchen, please."),
        AIMessage("", tool_calls=[{"name": "set_light", "args": {"room": "kitchen", "on": True}, "id": "c1"}]),
        ToolMessage("kitchen light on", tool_call_id="c1", name="set_light"),
    ]
    message = model.bind_tools([set_light]).invoke(history)
    assert isinstance(message, AIMessage)
    prompt = prompts[-1]
    assert "You control a house." in prompt
    assert '"name": "set_light", "arguments": {"room": "kitchen", "on": true}' in prompt
    assert "<tool_response>\nkitchen light on\n</tool_response>" in prompt


def test_per_call_model_override(model: ToolPRMChatModel, tiny_model_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "other-name"
    link.symlink_to(tiny_model_dir)
    message = model.invoke("hi", model=str(link))
    assert message.response_metadata["model_name"] == str(link)


# -- streaming ----------------------------------------------------------------------------------------


def _merge(chunks: Any) -> AIMessageChunk:
    chunks = list(chunks)
    assert chunks and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert chunks[-1].chunk_position == "last"
    assert sum(bool(c.usage_metadata) for c in chunks) == 1
    assert sum("model_name" in c.response_metadata for c in chunks) == 1
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


def test_stream_tool_calls(model: ToolPRMChatModel) -> None:
    bound = model.bind_tools([set_light, get_weather], tool_choice="any")
    chunks = list(bound.stream("kitchen light on"))
    assert any(c.tool_call_chunks for c in chunks)
    for chunk in chunks:
        for part in chunk.tool_call_chunks:
            assert part["name"] and part["id"] and part["index"] is not None
            json.loads(part["args"] or "{}")
    full = _merge(chunks)
    assert full.tool_calls and full.response_metadata["finish_reason"] == "tool_calls"
    _check_calls(AIMessage(content="", tool_calls=full.tool_calls))


def test_stream_text(model: ToolPRMChatModel) -> None:
    full = _merge(model.stream("hello"))
    assert isinstance(full.content, str) and not full.tool_calls
    assert full.usage_metadata is not None and full.usage_metadata["total_tokens"] > 0


def test_streaming_flag_streams_tokens_to_callbacks(model: ToolPRMChatModel) -> None:
    class Tokens(BaseCallbackHandler):
        def __init__(self) -> None:
            self.chunks: list[Any] = []

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            self.chunks.append(kwargs.get("chunk"))

    handler = Tokens()
    streaming = model.model_copy(update={"streaming": True})
    message = streaming.bind_tools([set_light], tool_choice="any").invoke("go", config={"callbacks": [handler]})
    assert message.tool_calls and handler.chunks


# -- async and concurrency ----------------------------------------------------------------------------


async def test_ainvoke_and_astream(model: ToolPRMChatModel) -> None:
    bound = model.bind_tools([set_light], tool_choice="any")
    message = await bound.ainvoke("kitchen light on")
    _check_calls(message)
    chunks = [c async for c in bound.astream("kitchen light on")]
    assert _merge(chunks).tool_calls


async def test_concurrent_calls_share_one_model(model: ToolPRMChatModel) -> None:
    bound = model.bind_tools([set_light, get_weather], tool_choice="any")
    messages = await asyncio.gather(*(bound.ainvoke(f"request {i}") for i in range(3)))
    for message in messages:
        _check_calls(message)
    batch = await bound.abatch(["a", "b"])
    assert len(batch) == 2 and all(m.tool_calls for m in batch)


def test_batch(model: ToolPRMChatModel) -> None:
    results = model.bind_tools([set_light], tool_choice="any").batch(["a", "b"], config={"max_concurrency": 2})
    assert len(results) == 2 and all(r.tool_calls for r in results)


def test_same_seed_same_answer(model: ToolPRMChatModel) -> None:
    bound = model.bind_tools([set_light, get_weather], tool_choice="any")
    first, second = bound.invoke("x"), bound.invoke("x")
    strip = [(c["name"], c["args"]) for c in first.tool_calls]
    assert strip == [(c["name"], c["args"]) for c in second.tool_calls]


# -- structured output --------------------------------------------------------------------------------


def test_structured_output_pydantic(model: ToolPRMChatModel) -> None:
    result = model.with_structured_output(Verdict).invoke("Is the sky blue?")
    assert isinstance(result, Verdict)
    chunks = list(model.with_structured_output(Verdict).stream("Is the sky blue?"))
    assert chunks and isinstance(chunks[-1], Verdict)


@pytest.mark.parametrize("schema", [VerdictDict, Verdict.model_json_schema()])
def test_structured_output_dicts(model: ToolPRMChatModel, schema: Any) -> None:
    result = model.with_structured_output(schema, method="json_schema").invoke("Is the sky blue?")
    assert isinstance(result, dict) and result["label"] in ("yes", "no") and isinstance(result["sure"], bool)


def test_structured_output_include_raw(model: ToolPRMChatModel) -> None:
    out = model.with_structured_output(Verdict, include_raw=True).invoke("Is the sky blue?")
    assert isinstance(out["raw"], AIMessage) and isinstance(out["parsed"], Verdict) and out["parsing_error"] is None


def test_structured_output_bad_arguments(model: ToolPRMChatModel) -> None:
    with pytest.raises(ValueError, match="method"):
        model.with_structured_output(Verdict, method="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unsupported"):
        model.with_structured_output(Verdict, foo=1)


# -- tracing ------------------------------------------------------------------------------------------


class Events(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any, UUID]] = []
        self.model_runs: list[UUID] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.model_runs.append(run_id)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append((name, data, run_id))


def _check_events(handler: Events) -> None:
    names = [name for name, _, _ in handler.events]
    assert names[-1] == RESULT_EVENT and STEP_EVENT in names
    assert {run for _, _, run in handler.events} == set(handler.model_runs)  # attached to the model's run
    steps = [data for name, data, _ in handler.events if name == STEP_EVENT]
    assert [s["round"] for s in steps] == list(range(len(steps)))
    candidates = [c for s in steps for c in s["candidates"]]
    assert {"FUNC_NAME", "ARG_NAME", "ARG_VALUE"} <= {c["tag"] for c in candidates}
    assert all(c["score"] is not None for c in candidates if not c["forced"])  # the PRM's scores
    assert any(c["kept"] for c in candidates)
    result = handler.events[-1][1]
    assert result["calls"] and result["cost"]["prm_candidates"] > 0


def test_search_steps_are_custom_events_of_the_model_run(judged: ToolPRMChatModel) -> None:
    model = judged
    handler = Events()
    model.bind_tools([set_light], tool_choice="any").invoke("go", config={"callbacks": [handler]})
    _check_events(handler)


async def test_async_search_events(judged: ToolPRMChatModel) -> None:
    model = judged
    handler = Events()
    await model.bind_tools([set_light], tool_choice="any").ainvoke("go", config={"callbacks": [handler]})
    _check_events(handler)


async def test_astream_events_nest_steps_under_the_model(model: ToolPRMChatModel) -> None:
    bound = model.bind_tools([set_light], tool_choice="any")
    events = [e async for e in bound.astream_events("go", version="v2")]
    start = next(e for e in events if e["event"] == "on_chat_model_start")
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert custom and {e["run_id"] for e in custom} == {start["run_id"]}
    assert {e["name"] for e in custom} == {STEP_EVENT, RESULT_EVENT}


def test_streamed_search_events(judged: ToolPRMChatModel) -> None:
    model = judged
    # LangChain's stream() gives `_stream` no run manager; the events must still reach the run's handlers.
    handler = Events()
    for _ in model.bind_tools([set_light], tool_choice="any").stream("go", config={"callbacks": [handler]}):
        pass
    _check_events(handler)


def test_invoke_with_streaming_handlers_keeps_events(judged: ToolPRMChatModel) -> None:
    model = judged
    # With streaming on, invoke() goes through `_stream` without a run manager too (LangGraph's messages mode).
    handler = Events()
    streaming = model.model_copy(update={"streaming": True})
    streaming.bind_tools([set_light], tool_choice="any").invoke("go", config={"callbacks": [handler]})
    _check_events(handler)


def test_max_tool_turns_answers_in_text(model: ToolPRMChatModel, scripted_prm: Any) -> None:
    eager = model.model_copy(update={"prm": scripted_prm(keep_calling=True), "max_tool_turns": 1})
    history = [
        HumanMessage("Light in the kitchen, please."),
        AIMessage("", tool_calls=[{"name": "set_light", "args": {"room": "kitchen", "on": True}, "id": "c1"}]),
        ToolMessage("kitchen light on", tool_call_id="c1", name="set_light"),
    ]
    message = eager.bind_tools([set_light]).invoke(history)
    assert not message.tool_calls and message.response_metadata["toolprm"]["max_tool_turns_reached"]
    # A forced choice is the caller's explicit wish: the guard leaves it alone.
    assert eager.bind_tools([set_light], tool_choice="any").invoke(history).tool_calls
    # A new user message starts a new count.
    assert eager.bind_tools([set_light]).invoke([*history, AIMessage("Done."), HumanMessage("Bedroom too")]).tool_calls


def test_an_answered_call_is_not_made_again(model: ToolPRMChatModel, scripted_prm: Any) -> None:
    """An agent whose PRM always wants ``ping`` gets its result once, then answers; ``repeat_calls`` allows more."""
    eager = model.model_copy(update={"prm": scripted_prm(keep_calling=True, prefer="ping"), "max_tool_turns": None})
    history = [HumanMessage("Is the server up?"), AIMessage("", tool_calls=[{"name": "ping", "args": {}, "id": "c1"}]),
               ToolMessage("pong", tool_call_id="c1", name="ping")]
    assert eager.bind_tools([ping, set_light]).invoke(history).tool_calls == []
    again = eager.bind_tools([ping, set_light]).invoke(history, repeat_calls=True).tool_calls
    assert [c["name"] for c in again] == ["ping"]
    # a new user message starts a new exchange: the same call is open again
    later = [*history, AIMessage("It is up."), HumanMessage("And now?")]
    assert [c["name"] for c in eager.bind_tools([ping, set_light]).invoke(later).tool_calls] == ["ping"]

def test_a_call_written_as_the_text_answer_is_a_tool_call() -> None:
    from unit_tests.engine_fakes import TargetPolicy

    text = '{"name": "get_weather", "arguments": {"city": "Tokyo"}}'
    model = ToolPRMChatModel(policy=TargetPolicy([], free_text=text), strategy="greedy")
    message = model.bind_tools([get_weather]).invoke("Weather in Tokyo?")
    answer = ToolPRMChatModel(policy=TargetPolicy([], free_text="Sunny."), strategy="greedy").invoke("Weather?")
    assert answer.content == "Sunny." and answer.response_metadata["finish_reason"] == "stop"
    assert message.content == "" and [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_weather", {"city": "Tokyo"})]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    bad = ToolPRMChatModel(policy=TargetPolicy([], free_text=text.replace("Tokyo", "Oslo")), strategy="greedy")
    message = bad.bind_tools([get_weather]).invoke("Weather in Oslo?")
    assert message.content == "" and not message.tool_calls
    [invalid] = message.invalid_tool_calls
    assert invalid["name"] == "get_weather" and "does not validate" in (invalid["error"] or "")
    assert "Oslo" in (invalid["error"] or "") and message.response_metadata["finish_reason"] == "stop"


def test_timeout_is_the_search_time_limit(tiny_model_dir: Path) -> None:
    model = ToolPRMChatModel(policy=str(tiny_model_dir), timeout=1e-9, **FAST)
    assert model.search.time_limit == 1e-9
    assert ToolPRMChatModel(policy="p", request_timeout=3).search.time_limit == 3
    assert ToolPRMChatModel(policy="p", timeout=None).search.time_limit is None
    message = model.bind_tools([set_light], tool_choice="any").invoke("kitchen light on")
    assert not message.tool_calls and message.response_metadata["finish_reason"] == "length"
    assert message.response_metadata["toolprm"]["timed_out"] is True
    answer = model.invoke("hello")
    assert answer.content == "" and answer.response_metadata["finish_reason"] == "length"


async def test_16_concurrent_ainvoke_calls_equal_the_sequential_results(model: ToolPRMChatModel) -> None:
    bound = model.bind_tools([set_light, get_weather], tool_choice="any")
    prompts = [f"request {i}" for i in range(16)]

    def key(message: AIMessage) -> Any:
        return message.content, [(c["name"], c["args"]) for c in message.tool_calls]

    sequential = [key(bound.invoke(p)) for p in prompts]
    concurrent = [key(m) for m in await asyncio.gather(*(bound.ainvoke(p) for p in prompts))]
    assert concurrent == sequential
