"""A policy from a real `langchain-huggingface` model on a tiny transformers model: the same weights, searched."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.tools import tool

from langchain_toolprm import ToolPRMChatModel, TransformersPolicy
from langchain_toolprm.policy.huggingface import from_langchain, from_pipeline, is_huggingface_model

pytest.importorskip("langchain_huggingface")

FAST = {"num_beams": 1, "beam_width": 2, "max_value_tokens": 8, "max_tokens": 8, "prm": "rules", "seed": 0}


@tool
def set_light(room: Literal["kitchen", "bedroom", "hall"], on: bool) -> str:
    """Switch the light of a room on or off."""
    return f"{room} light {'on' if on else 'off'}"


@pytest.fixture(scope="module")
def pipe(tiny_model_dir: Path) -> Any:
    """A transformers text-generation pipeline on the tiny model, built as a user builds one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return pipeline("text-generation", model=model, tokenizer=AutoTokenizer.from_pretrained(tiny_model_dir),
                    max_new_tokens=8)


@pytest.fixture(scope="module")
def chat(pipe: Any) -> Any:
    from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline

    return ChatHuggingFace(llm=HuggingFacePipeline(pipeline=pipe), tokenizer=pipe.tokenizer)


def _calls(model: ToolPRMChatModel) -> list[tuple[str, dict[str, Any]]]:
    msg = model.bind_tools([set_light], tool_choice="any").invoke("Turn the kitchen light on.")
    return [(c["name"], c["args"]) for c in msg.tool_calls]


def test_a_chat_huggingface_is_searched_on_its_own_model(chat: Any, pipe: Any, tiny_model_dir: Path) -> None:
    model = ToolPRMChatModel(policy=chat, **FAST)
    policy = model.policy
    assert isinstance(policy, TransformersPolicy)
    assert policy.lm.model is pipe.model and policy.lm.tokenizer is chat.tokenizer  # nothing loaded twice
    calls = _calls(model)
    assert len(calls) == 1 and calls[0][0] == "set_light"
    set_light.args_schema.model_validate(calls[0][1])
    # The same weights loaded by the package's own loader take the same steps.
    assert calls == _calls(ToolPRMChatModel(policy=TransformersPolicy.from_pretrained(str(tiny_model_dir)), **FAST))


def test_every_wrapper_level_and_the_model_alias_are_accepted(chat: Any, pipe: Any) -> None:
    for wrapped in (chat, chat.llm, pipe):
        assert is_huggingface_model(wrapped)
        assert ToolPRMChatModel(model=wrapped, **FAST).policy.lm.model is pipe.model
    assert TransformersPolicy.from_langchain(chat.llm).lm.tokenizer is pipe.tokenizer
    assert not is_huggingface_model("qwen2.5-coder-0.5b-instruct")


def test_what_cannot_be_searched_is_refused_with_the_way_out(pipe: Any) -> None:
    from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

    remote = ChatHuggingFace(llm=HuggingFaceEndpoint(endpoint_url="http://127.0.0.1:9/", max_new_tokens=8))
    with pytest.raises(TypeError, match="openai\\+http"):
        from_langchain(remote)
    with pytest.raises(TypeError, match="Expected a ChatHuggingFace"):
        from_langchain(object())
    pipe.model.train()
    try:
        with pytest.raises(TypeError, match="training mode"):
            from_pipeline(pipe)
    finally:
        pipe.model.eval()
