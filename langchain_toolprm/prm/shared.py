"""A LoRA PRM on the policy's own weights: one base model in memory, the adapter switched on to score.

The packaged PRM is a LoRA adapter over the default policy's base model. Merged into a second copy
of that base, it doubles the resident memory for a few MB of adapter weights. Here the PRM shares
the policy's loaded model: its LoRA products are added by forward hooks that exist only while the
PRM runs a forward pass, so the policy runs on the plain weights at full speed.

Safety: the hooks are registered while the PRM holds the model's lock, which every forward pass of
the policy's `CausalLM` also holds (`ScoringLM._lock`, shared here), so no policy pass runs with the
adapter on; and each hook adds its product only in the thread that switched the adapter on, so
even code that calls the model outside that lock (a LangChain pipeline on the same model) never sees
it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_toolprm.lm import CausalLM

if TYPE_CHECKING:
    import torch

__all__ = ["AdaptedLM", "LoraSwitch", "adapted_lm", "lora_switch_on"]


class LoraSwitch:
    """A plain LoRA adapter held beside a model's weights and added only inside `active`.

    Args:
        model: The base model the adapter was trained on.
        folder: The adapter folder (``adapter_model.safetensors``).
        adapter: Its ``adapter_config.json``, a plain LoRA (`lora_variant` empty).

    Raises:
        ValueError: The adapter uses a LoRA variant (see `lora_factors`).

    """

    def __init__(self, model: Any, folder: Path, adapter: dict[str, Any]):
        from langchain_toolprm.prm.adapters import lora_factors

        weight = next(model.parameters())
        # ``scale * B`` once, in the model's dtype, so a hook costs two thin products and one sum.
        self.factors = [(layer, a.to(weight), (b.float() * scale).to(weight))
                        for layer, a, b, scale in lora_factors(model, folder, adapter)]
        self._owner: int | None = None

    @contextmanager
    def active(self, rows: torch.Tensor | None = None) -> Iterator[None]:
        """Within this block, forward passes of this thread run with the adapter; nested blocks are free.

        Args:
            rows: The token positions (of the passes in this block) that get the adapter, as an index
                tensor; the others run on the plain weights. A PRM that judges a text's tokens on the
                plain weights and its judgement suffix with the adapter so needs one pass, not two
                (`JudgingLM.judged_logits`). ``None``: every position.

        """
        me = threading.get_ident()
        if self._owner == me:
            if rows is not None:
                raise RuntimeError("The PRM adapter is already on in this thread; its rows are chosen where it is"
                                   " switched on, not in a nested block.")
            yield
            return
        if self._owner is not None:
            raise RuntimeError("The PRM adapter is active in another thread; hold the model's lock to switch it.")
        self._owner = me
        handles = [layer.register_forward_hook(self._hook(a, b, rows)) for layer, a, b in self.factors]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._owner = None

    def _hook(self, a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor | None) -> Any:
        import torch.nn.functional as F

        def add_lora(module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            if threading.get_ident() != self._owner:
                return output
            if rows is None:
                return output + F.linear(F.linear(inputs[0], a), b)
            index = rows.to(output.device)
            return output.index_add(-2, index, F.linear(F.linear(inputs[0].index_select(-2, index), a), b))

        return add_lora


class AdaptedLM(CausalLM):
    """The PRM's `CausalLM`: the policy's model and lock, every pass with the adapter switched on.

    Args:
        base: The policy's loaded model.
        switch: The adapter on ``base.model``.
        name: A name for logs and metadata.

    """

    def __init__(self, base: CausalLM, switch: LoraSwitch, name: str):
        super().__init__(base.model, base.tokenizer, name=name)
        self._lock = base._lock  # one lock per model: the policy waits while the adapter is on
        self.switch = switch
        self._adapts_head = any(layer is self._head() for layer, _, _ in switch.factors)

    def _hidden(self, ids: torch.Tensor, cache: Any, usage: Any, mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        with self._lock, self.switch.active():
            return super()._hidden(ids, cache, usage, mask, positions)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        with self._lock, self.switch.active():  # the head too, for an adapter that targets it
            return super()._logits(hidden)

    def _token_logits(self, hidden: torch.Tensor, token_ids: Sequence[int]) -> torch.Tensor:
        if self._adapts_head:  # the adapter changes the head: all of it runs, with the adapter on
            return self._logits(hidden)[:, list(token_ids)]
        return super()._token_logits(hidden, token_ids)


def adapted_lm(ref: str | Path, lm: CausalLM) -> AdaptedLM | None:
    """The PRM ``ref`` on ``lm``'s weights, when it is a plain LoRA adapter of the model ``lm`` runs; else ``None``.

    "The model ``lm`` runs" is decided on the resolved reference: the adapter's base, resolved as
    `load_causal_lm` would resolve it, must be the folder (or hub id) ``lm``'s model was loaded from.

    Raises:
        FileNotFoundError: ``"default"`` was asked and no packaged PRM is installed.
        ValueError: The PRM was trained on another prompt format than this version writes.

    """
    from langchain_toolprm.prm.adapters import DEFAULT_PRM

    switch = lora_switch_on(ref, lm)
    if switch is None:
        return None
    name = "toolprm-default" if str(ref) == DEFAULT_PRM else str(ref)
    return AdaptedLM(lm, switch, name)


def lora_switch_on(ref: str | Path, lm: CausalLM, version: str | None = None) -> LoraSwitch | None:
    """The adapter ``ref`` beside ``lm``'s weights, when it is a plain LoRA of the model ``lm`` runs; else ``None``.

    Args:
        ref: The PRM reference.
        lm: The loaded model.
        version: The prompt format the caller scores in (default: `PROMPT_VERSION`).

    Raises:
        FileNotFoundError: ``"default"`` was asked and no packaged PRM is installed.
        ValueError: The PRM was trained on another prompt format than ``version``.

    """
    from langchain_toolprm.models import locate_model
    from langchain_toolprm.prm.adapters import plain_lora
    from langchain_toolprm.prm.prompt import PROMPT_VERSION

    lora = plain_lora(ref, version or PROMPT_VERSION)
    if lora is None:
        return None
    folder, adapter, base = lora
    loaded_from = getattr(lm.model.config, "_name_or_path", None)
    if not loaded_from or str(locate_model(base, None)) != str(loaded_from):
        return None
    return LoraSwitch(lm.model, folder, adapter)
