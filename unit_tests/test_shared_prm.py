"""A LoRA PRM on the policy's own model: the same scores as its merged copy, the policy untouched."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.tools import tool

from langchain_toolprm import ToolPRMChatModel
from langchain_toolprm.components import load_prm
from langchain_toolprm.grammar import Grammar
from langchain_toolprm.prm.generative import GenerativePRM
from langchain_toolprm.tools import to_tool_specs

TOOLS = [{"type": "function", "function": {
    "name": "set_light", "description": "Switch a light.",
    "parameters": {"type": "object", "properties": {"room": {"type": "string", "enum": ["kitchen", "hall"]},
                                                    "on": {"type": "boolean"}}, "required": ["room", "on"]}}}]


def _scores(prm: Any) -> list[float]:
    specs = to_tool_specs(TOOLS)
    grammar = Grammar(specs)
    state = grammar.initial()
    session = prm.session([{"role": "user", "content": "turn the kitchen light on"}], specs)
    return list(session.score((), state, list(grammar.decision(state).actions)))


def _policy_logits(policy: Any) -> Any:
    lm = policy.lm
    return lm._logits(lm.prefix("the user asks for the weather in paris").last_hidden[None])


def test_lora_prm_on_the_policy_model_scores_as_its_merged_copy(tiny_policy: Any, tiny_lora_dir: Path) -> None:
    import torch

    before = _policy_logits(tiny_policy)
    shared = load_prm(str(tiny_lora_dir), tiny_policy)
    assert isinstance(shared, GenerativePRM) and shared.lm.model is tiny_policy.lm.model
    assert load_prm(str(tiny_lora_dir), tiny_policy) is shared  # loaded once per policy model
    merged = GenerativePRM.from_pretrained(str(tiny_lora_dir))
    assert merged.lm.model is not tiny_policy.lm.model
    on_shared, on_merged, on_base = _scores(shared), _scores(merged), _scores(GenerativePRM(tiny_policy.lm))
    assert on_shared == pytest.approx(on_merged, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(on_shared, on_base, strict=True)) > 1e-3  # the adapter did something
    assert torch.equal(_policy_logits(tiny_policy), before)  # the policy runs on its own weights again
    assert all(not m._forward_hooks for m in tiny_policy.lm.model.modules())


def test_the_adapter_is_on_only_in_the_thread_that_switched_it(tiny_policy: Any, tiny_lora_dir: Path) -> None:
    import torch

    shared = load_prm(str(tiny_lora_dir), tiny_policy)
    assert isinstance(shared, GenerativePRM)
    model = tiny_policy.lm.model
    ids = torch.tensor([[5, 17, 42, 9]])
    with torch.inference_mode():
        plain = model(ids).logits
        other: list[torch.Tensor] = []
        with shared.lm.switch.active():
            adapted = model(ids).logits
            worker = threading.Thread(target=lambda: other.append(model(ids).logits))
            worker.start()
            worker.join()
    merged = GenerativePRM.from_pretrained(str(tiny_lora_dir)).lm.model
    with torch.inference_mode():
        assert torch.allclose(adapted, merged(ids).logits, atol=1e-5)
    assert torch.equal(other[0], plain) and not torch.allclose(adapted, plain, atol=1e-3)


def test_a_prm_of_another_base_loads_its_own_copy(tiny_policy: Any, tiny_lora_dir: Path, tmp_path: Path) -> None:
    other_base = Path(shutil.copytree(tiny_policy.lm.model.config._name_or_path, tmp_path / "other-base"))
    adapter = Path(shutil.copytree(tiny_lora_dir, tmp_path / "prm"))
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(other_base)}))
    assert GenerativePRM.on_policy_model(str(adapter), tiny_policy.lm) is None
    prm = load_prm(str(adapter), tiny_policy)
    assert isinstance(prm, GenerativePRM) and prm.lm.model is not tiny_policy.lm.model


@tool
def set_light(room: Literal["kitchen", "bedroom", "hall"], on: bool) -> str:
    """Switch the light of a room on or off."""
    return f"{room} light {'on' if on else 'off'}"


async def test_concurrent_calls_with_the_shared_prm_equal_the_sequential_ones(
        tiny_model_dir: Path, tiny_policy: Any, tiny_lora_dir: Path) -> None:
    """Searches in threads interleave policy and PRM passes on one model; none sees the other's weights."""
    model = ToolPRMChatModel(policy=str(tiny_model_dir), prm=str(tiny_lora_dir), num_beams=1, beam_width=2,
                             max_value_tokens=8, max_tokens=8).bind_tools([set_light], tool_choice="any")
    prompts = [f"request {i}" for i in range(8)]

    def key(message: Any) -> Any:
        return [(c["name"], c["args"]) for c in message.tool_calls], message.response_metadata["toolprm"]["score"]

    sequential = [key(model.invoke(p)) for p in prompts]
    concurrent = [key(m) for m in await asyncio.gather(*(model.ainvoke(p) for p in prompts))]
    assert concurrent == sequential
