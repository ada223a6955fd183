"""Shared fixtures: a tiny random chat model saved like a hub model, so tests run the real loading code.

`tiny_model_dir` is a Qwen2-shaped causal LM (2 layers, hidden size 48) with a byte-level BPE
tokenizer trained on a few KB of tool-calling text and a Qwen-like chat template that renders tools
and teaches ``<tool_call>`` tags. Its outputs are random but well-formed, which is what tests of the
search machinery need: every call the grammar builds must still validate, whatever the model says.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

TINY_CORPUS = (
    "the user asks for the weather in paris and the assistant calls get_weather with city paris. "
    "what is 12 times 7? the assistant calls multiply with a 12 and b 7 and answers 84. "
    "convert 5 miles to kilometers; add 3 days to 2024-01-31; hello, how are you today? "
    "numbers 0 1 2 3 4 5 6 7 8 9 10 42 3.14 -1 and symbols + - * / = { } [ ] : , \" ' ( ) _ are common. "
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}} '
    '[{"name": "multiply", "arguments": {"a": 12, "b": 7}}] true false null '
    "You are a helpful assistant. You may call one or more functions to assist with the user query. "
    "```json\n{}\n``` function description parameters properties required type object string integer number "
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
                  "<tools>", "</tools>", "<tool_response>", "</tool_response>"]
# A shortened Qwen2.5 template: tools in the system turn, calls inside <tool_call> tags, tool results as
# <tool_response> blocks in a user turn.
TINY_CHAT_TEMPLATE = """{%- if tools %}<|im_start|>system
{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% else %}You are a helpful assistant.{% endif %}

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0]['role'] == 'system' %}<|im_start|>system
{{ messages[0]['content'] }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{{ message.content or '' }}
{%- for tc in message.tool_calls or [] %}
<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def save_tiny_model(folder: Path, *, seed: int = 0, hidden_size: int = 48, layers: int = 2,
                    chat_template: str | None = TINY_CHAT_TEMPLATE) -> Path:
    """Save a random Qwen2 model with a trained BPE tokenizer and a tool-aware chat template.

    Args:
        folder: Where to save (created).
        seed: Weight initialisation seed (different seeds give different random "preferences").
        hidden_size: Width of the model.
        layers: Number of decoder layers.
        chat_template: The template to store; ``None`` stores none (tests of the fallback template).

    Returns:
        ``folder``, loadable with ``from_pretrained`` / ``TransformersPolicy.from_pretrained``.

    """
    import torch
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    backend = Tokenizer(tok_models.BPE(unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([TINY_CORPUS] * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[3:],
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.model_max_length = 2048
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-style chat model with tool support, saved once per test session."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny-qwen2")


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def save_tiny_lora(folder: Path, base: Path, *, layers: tuple[int, ...] = (1,), seed: int = 0) -> Path:
    """A plain LoRA adapter (rank 4) on ``base``, saved as `toolprm train` saves one, with large random factors."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in LORA_TARGETS and any(f"layers.{i}." in name for i in layers):
            out_features, in_features = module.weight.shape
            prefix = f"base_model.model.{name}"
            weights[f"{prefix}.lora_A.weight"] = torch.randn(4, in_features, generator=generator) * 0.3
            weights[f"{prefix}.lora_B.weight"] = torch.randn(out_features, 4, generator=generator) * 0.3
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "base_model_name_or_path": str(base), "r": 4, "lora_alpha": 8,
              "target_modules": list(LORA_TARGETS), "layers_to_transform": list(layers), "bias": "none"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="session")
def tiny_lora_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A plain LoRA PRM adapter on the tiny model (random factors), saved once per test session."""
    return save_tiny_lora(tmp_path_factory.mktemp("tiny-lora") / "prm", tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_policy(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    """The tiny model loaded as a policy, once per session (the same object `load_policy` would give)."""
    from langchain_toolprm.components import load_policy

    return load_policy(str(tiny_model_dir))


@functools.cache
def _scripted_prm_class() -> type:
    """A PRM with a fixed opinion, so a random tiny policy still runs a sensible agent loop.

    Before any tool result it wants a call (of ``prefer`` when given); after a tool result it wants the
    turn to end in text, unless ``keep_calling`` (a model that never stops calling). Every other step
    scores ``other``. Defined when first asked for, so importing conftest does not import the engine.
    """
    from langchain_toolprm.grammar import StepTag
    from langchain_toolprm.lm import Usage
    from langchain_toolprm.prm.base import PRM, PRMSession

    class _Session(PRMSession):
        def __init__(self, prm: _Scripted, messages: list[dict], specs: list) -> None:
            self.prm = prm
            self.after_tool = bool(messages) and messages[-1]["role"] == "tool" and not prm.keep_calling
            self.usage = Usage()

        def score(self, path, state, candidates):  # type: ignore[no-untyped-def]
            out = []
            for action in candidates:
                if action.tag is StepTag.FUNC_NAME:
                    good = not self.after_tool and not state.calls
                    if good and self.prm.prefer is not None:
                        good = action.name == self.prm.prefer
                    out.append(0.95 if good else 0.02)
                elif action.tag is StepTag.TOTAL_FINISH:
                    out.append(0.95 if (self.after_tool or state.calls) else 0.02)
                else:
                    out.append(self.prm.other)
            return out

    class _Scripted(PRM):
        name = "scripted"

        def __init__(self, prefer: str | None = None, other: float = 0.9, keep_calling: bool = False) -> None:
            self.prefer = prefer
            self.other = other
            self.keep_calling = keep_calling

        def session(self, messages, specs):  # type: ignore[no-untyped-def]
            return _Session(self, list(messages), list(specs))

    return _Scripted


@pytest.fixture
def scripted_prm():  # type: ignore[no-untyped-def]
    """A scripted PRM factory: ``scripted_prm(prefer="multiply")``."""
    return _scripted_prm_class()


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never reach the Hugging Face hub: a bare name that is no packaged model fails at once.

    The hub-reference tests (`unit_tests/test_model_refs.py`) undo this and point the hub at a local port.
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
