"""Load a trained PRM: a LoRA adapter folder merged into its base, the packaged default, or any model.

`toolprm train` saves a LoRA adapter of a few MB that names its base by the reference it was trained
from (for example the packaged ``smollm2-135m-instruct``), so loading it needs no hub: the base comes
through `load_causal_lm` and the adapter is merged into it (a plain sum of the LoRA products; peft
only for LoRA variants), so scoring runs at the base model's speed with no PEFT code on the hot path.
When the base is the policy's own model, `langchain_toolprm.prm.shared` runs the adapter on the
policy's weights instead (`plain_lora`, `lora_factors`), and no second copy is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_toolprm.prm.context_format import CONTEXT_PROMPT_VERSION
from langchain_toolprm.prm.prompt import PROMPT_VERSION

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DEFAULT_PRM", "META_FILE", "default_prm_path", "is_adapter", "load_prm_model", "lora_factors",
           "lora_variant", "merge_lora", "plain_lora", "prm_folder", "prm_meta", "prompt_version"]

DEFAULT_PRM = "default"
"""The reference that names the PRM packaged with the library."""

META_FILE = "toolprm_prm.json"
"""Written by `toolprm train` beside the weights: base, objective, prompt version, data and timing."""


def default_prm_path() -> Path:
    """The packaged default PRM adapter folder.

    Raises:
        FileNotFoundError: The package was installed without it.

    """
    path = Path(__file__).resolve().parents[1] / "assets" / "prm"
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(f"No packaged PRM in {path}; train one with `toolprm train`.")
    return path


def prm_folder(ref: str | Path) -> Path:
    """The folder a PRM reference points at: the packaged one for ``"default"``, else ``ref`` as a path.

    Raises:
        FileNotFoundError: ``"default"`` was asked and no packaged PRM is installed.

    """
    return default_prm_path() if str(ref) == DEFAULT_PRM else Path(ref)


def is_adapter(ref: str | Path) -> bool:
    """Whether ``ref`` is ``"default"`` or a folder holding a LoRA adapter (``adapter_config.json``)."""
    if str(ref) == DEFAULT_PRM:
        return True
    folder = Path(ref)
    return folder.is_dir() and (folder / "adapter_config.json").is_file()


def load_prm_model(ref: str | Path, **load_kwargs: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A PRM's model and tokenizer, ready for `CausalLM`.

    Args:
        ref: ``"default"`` (the packaged PRM), a LoRA adapter folder, or any reference
            `load_causal_lm` accepts (a full fine-tuned folder, a hub id, a packaged name).
        **load_kwargs: Passed to `load_causal_lm` for the base (``dtype``, ``device``, ``cache_dir``).

    Raises:
        FileNotFoundError: ``"default"`` was asked and no packaged PRM is installed.
        ValueError: The PRM was trained on another prompt format than this version writes.
        ValueError: The adapter is not a plain LoRA adapter and ``peft`` is not installed.

    """
    from langchain_toolprm.models import load_causal_lm

    folder = prm_folder(ref)
    meta = _checked_meta(folder)
    if not is_adapter(folder):
        return load_causal_lm(str(ref), **load_kwargs)
    adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    base = meta.get("base") or adapter["base_model_name_or_path"]
    model, tokenizer = load_causal_lm(base, **load_kwargs)
    variant = lora_variant(adapter)
    if not variant:
        merge_lora(model, folder, adapter)  # what peft's merge computes, without peft's import and warnings
    else:
        try:
            from peft import PeftModel
        except ImportError as error:
            raise ValueError(f"Install peft to load the adapter in {folder} (it uses {variant}).") from error
        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    model.eval()
    return model, tokenizer


def prompt_version(ref: str | Path) -> str:
    """The prompt format a PRM was trained on (`PROMPT_VERSION` when it does not say: older PRMs, other models)."""
    folder = prm_folder(ref)
    return str(prm_meta(folder).get("prompt_version", PROMPT_VERSION)) if folder.is_dir() else PROMPT_VERSION


def plain_lora(ref: str | Path, version: str = PROMPT_VERSION) -> tuple[Path, dict[str, Any], str] | None:
    """``(folder, adapter config, base reference)`` of a plain LoRA PRM, ``None`` for any other PRM.

    A plain LoRA (`lora_variant` empty) can run as a switchable adapter on its base's loaded weights
    (`langchain_toolprm.prm.shared`); anything else needs its own merged copy.

    Args:
        ref: The PRM reference.
        version: The prompt format the caller scores in.

    Raises:
        FileNotFoundError: ``"default"`` was asked and no packaged PRM is installed.
        ValueError: The PRM was trained on another prompt format than ``version``.

    """
    if not is_adapter(ref):
        return None
    folder = prm_folder(ref)
    meta = _checked_meta(folder, version)
    adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if lora_variant(adapter):
        return None
    return folder, adapter, str(meta.get("base") or adapter["base_model_name_or_path"])


def _checked_meta(folder: Path, version: str = PROMPT_VERSION) -> dict[str, Any]:
    """`prm_meta`, refusing a PRM trained on another prompt format than ``version``."""
    meta = prm_meta(folder)
    found = meta.get("prompt_version", PROMPT_VERSION)
    if found == version:
        return meta
    if found == CONTEXT_PROMPT_VERSION:
        raise ValueError(
            f"The PRM in {folder} reads the policy's own context ({found!r}): it scores only as an adapter on its"
            f" base model {meta.get('base')!r} while that model is the search's policy (policy={meta.get('base')!r},"
            " a local model), not as a model of its own."
        )
    raise ValueError(
        f"The PRM in {folder} was trained on prompt format {found!r}, this version of langchain-toolprm writes "
        f"{version!r}: its scores would be meaningless. Retrain it (`toolprm train`) or install the version it "
        "was trained with."
    )


def prm_meta(folder: str | Path) -> dict[str, Any]:
    """What `toolprm train` recorded beside a PRM (base, objective, prompt version, timing); empty if none."""
    meta_file = Path(folder) / META_FILE
    if not meta_file.is_file():
        return {}
    return json.loads(meta_file.read_text(encoding="utf-8"))


_VARIANT_KEYS = ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save", "use_rslora", "fan_in_fan_out",
                 "lora_bias", "use_qalora", "trainable_token_indices", "target_parameters", "layer_replication")


def lora_variant(adapter: dict[str, Any]) -> list[str]:
    """The features of an adapter config beyond a plain LoRA (empty for one `merge_lora` can merge)."""
    if adapter.get("peft_type", "LORA") != "LORA":
        return [str(adapter.get("peft_type"))]
    found = [k for k in _VARIANT_KEYS if adapter.get(k)]
    if adapter.get("bias", "none") != "none":
        found.append(f"bias={adapter['bias']}")
    return found


def lora_factors(model: Any, folder: Path, adapter: dict[str, Any]) -> list[tuple[Any, Any, Any, float]]:
    """``(layer, A, B, alpha / r)`` for every layer a plain LoRA adapter changes, as stored (no copy of the model).

    Raises:
        ValueError: The adapter uses a LoRA variant that a plain sum does not compute.

    """
    from safetensors.torch import load_file

    variant = lora_variant(adapter)
    if variant:
        raise ValueError(f"Install peft to load this adapter (it uses {variant}).")
    scale = float(adapter["lora_alpha"]) / float(adapter["r"])
    weights = load_file(str(folder / "adapter_model.safetensors"))
    modules = dict(model.named_modules())
    factors = []
    for key, a in weights.items():
        if ".lora_A." not in key:
            continue
        path = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        factors.append((modules[path], a, weights[key.replace(".lora_A.", ".lora_B.")], scale))
    return factors


def merge_lora(model: Any, folder: Path, adapter: dict[str, Any]) -> None:
    """Merge a plain LoRA adapter into ``model`` in place, without ``peft``: ``W += (B A) alpha / r``.

    A plain LoRA (see `lora_variant`) needs nothing more than this sum, computed in the order peft's
    ``merge_and_unload`` computes it, so both give the same weights. The packaged PRM loads this way
    when it does not share the policy's model: where only the inference extras are installed, and
    without peft's import time and its deprecation warnings.

    Raises:
        ValueError: The adapter uses a LoRA variant this merge does not know.

    """
    import torch

    with torch.no_grad():
        for layer, a, b, scale in lora_factors(model, folder, adapter):
            layer.weight += ((b.float() @ a.float()) * scale).to(layer.weight.dtype)
