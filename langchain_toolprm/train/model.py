"""The model being trained: a backbone with a fresh or a loaded LoRA adapter, and its label logits."""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from langchain_toolprm.prm.context_format import CONTEXT_PROMPT_VERSION
from langchain_toolprm.prm.prompt import LABEL_NEGATIVE, LABEL_POSITIVE, PROMPT_VERSION

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

from langchain_toolprm.train.config import TrainConfig
from langchain_toolprm.train.context_packing import ContextPacked
from langchain_toolprm.train.packing import Packed, encode_text

logger = logging.getLogger(__name__)

def label_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """The ids of ``" +"`` and ``" -"``.

    Raises:
        ValueError: The tokenizer splits a label into several tokens.

    """
    ids = [encode_text(tokenizer, label) for label in (LABEL_POSITIVE, LABEL_NEGATIVE)]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"The PRM labels must be single tokens; this tokenizer gives {ids}.")
    return ids[0][0], ids[1][0]


PROMPT_VERSIONS = (PROMPT_VERSION, CONTEXT_PROMPT_VERSION)


def model_for_training(config: TrainConfig) -> tuple[Any, PreTrainedTokenizerBase]:
    """The backbone with what `TrainConfig` asks: a loaded adapter, a fresh LoRA, or full fine-tuning."""
    from langchain_toolprm.models import load_causal_lm

    if config.init is not None:
        return _init_adapter(config)
    model, tokenizer = load_causal_lm(config.base, dtype=config.dtype)
    model.config.use_cache = False
    if config.lora:
        from peft import LoraConfig, get_peft_model

        layers = None
        if config.lora_layers is not None:
            total = int(model.config.num_hidden_layers)
            layers = list(range(max(total - config.lora_layers, 0), total))
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.lora_targets), layers_to_transform=layers,
                          task_type="CAUSAL_LM")
        with _quiet_peft():
            return get_peft_model(model, lora), tokenizer
    return model, tokenizer


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """Peft 0.21 reads transformers' deprecated ``is_gradient_checkpointing``: not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def _init_adapter(config: TrainConfig) -> tuple[Any, PreTrainedTokenizerBase]:
    """The base of a trained LoRA PRM with its adapter loaded trainable (continued fine-tuning).

    An adapter of the other prompt format is a warm start, not a mistake: both formats read the label
    after a judgement on the same base, so what the adapter learned about the steps carries over while
    the run trains it on the new format's text (``toolprm_prm.json`` records the run's own format and
    the init's, `init_prompt_version`).

    Raises:
        ValueError: ``init`` is not a LoRA adapter, names another base than ``base``, or was trained on
            a prompt version this package does not write.

    """
    from peft import PeftModel

    from langchain_toolprm.models import load_causal_lm
    from langchain_toolprm.prm.adapters import is_adapter, prm_folder, prm_meta

    folder = prm_folder(config.init or "")
    if not is_adapter(folder):
        raise ValueError(f"init={config.init!r} is not a LoRA adapter folder (no adapter_config.json in {folder}).")
    meta = prm_meta(folder)
    if meta.get("prompt_version", PROMPT_VERSION) not in PROMPT_VERSIONS:
        raise ValueError(f"init={config.init!r} was trained on prompt format {meta['prompt_version']!r}; this "
                         f"version of langchain-toolprm writes {' and '.join(map(repr, PROMPT_VERSIONS))}.")
    if meta.get("base", config.base) != config.base:
        raise ValueError(f"init={config.init!r} adapts {meta['base']!r}, not base={config.base!r}.")
    model, tokenizer = load_causal_lm(config.base, dtype=config.dtype)
    model.config.use_cache = False
    with _quiet_peft():
        return PeftModel.from_pretrained(model, str(folder), is_trainable=True), tokenizer


def _causal_lm(model: Any) -> Any:
    """The ``*ForCausalLM`` module under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def label_logits(model: Any, packed: Packed, device: Any) -> torch.Tensor:
    """Logits at every node's label position, ``[nodes, vocab]``; the head runs on those rows only."""
    import torch

    if isinstance(packed, ContextPacked):
        return judged_label_logits(_causal_lm(model), packed, device, plain=lambda: _adapter_off(model))
    lm = _causal_lm(model)
    ids = torch.tensor([packed.ids], device=device)
    positions = torch.tensor([packed.positions], device=device)
    mask = packed.attention_mask().to(device)
    hidden = lm.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state
    rows = hidden[0, torch.tensor(packed.label_at, device=device)]
    return lm.get_output_embeddings()(rows).float()


def _adapter_off(model: Any) -> contextlib.AbstractContextManager[Any]:
    """The plain weights of a PEFT model (the context and the candidates are read without the adapter)."""
    import torch

    if not hasattr(model, "disable_adapter"):
        raise ValueError("A PRM in the policy-context format is a LoRA adapter; train it with lora=True.")
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    stack.enter_context(model.disable_adapter())
    return stack


def judged_label_logits(lm: Any, packed: ContextPacked, device: Any,
                        plain: Callable[[], contextlib.AbstractContextManager[Any]],
                        adapted: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                        ) -> torch.Tensor:
    """Logits after every node's judgement suffix, ``[nodes, vocab]``, in the two passes of inference.

    The tree (prompt and call texts) runs under ``plain()`` (no adapter, no gradient), the suffixes
    under ``adapted()`` on its cache, as `JudgingLM.judged_logits` scores them; so only the suffixes'
    few tokens are back-propagated through.
    """
    import torch

    forward = lm.model
    cache_kwarg = "cache" if "cache" in inspect.signature(forward.forward).parameters else "past_key_values"
    ids, mask, positions = packed.tree.tree_inputs(0)
    with plain():
        out = forward(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                      use_cache=True)
    cache = out[cache_kwarg]  # the output names it as the forward does (``cache`` in recent transformers)
    ids, mask, positions, last = packed.tree.suffix_inputs(0)
    with adapted():
        hidden = forward(input_ids=ids.to(device), attention_mask=mask.to(device),
                         position_ids=positions.to(device), use_cache=True, **{cache_kwarg: cache}).last_hidden_state
        return lm.get_output_embeddings()(hidden[0, torch.tensor(last, device=device)]).float()
