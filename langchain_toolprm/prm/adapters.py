"""Load a trained PRM: a LoRA adapter folder merged into its base, the packaged default, or any model.

`toolprm train` saves a LoRA adapter of a few MB that names its base by the reference it was trained
from (for example the packaged ``smollm2-135m-instruct``), so loading it needs no hub: the base comes
through `load_causal_lm` and the adapter is merged into it (``merge_and_unload``), so scoring runs at
the base model's speed with no PEFT code on the hot path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DEFAULT_PRM", "META_FILE", "default_prm_path", "is_adapter", "load_prm_model"]

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
        ImportError: An adapter was given and ``peft`` is not installed.

    """
    from langchain_toolprm.models import load_causal_lm

    folder = default_prm_path() if str(ref) == DEFAULT_PRM else Path(ref)
    if not is_adapter(folder):
        return load_causal_lm(str(ref), **load_kwargs)
    from peft import PeftModel

    adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    meta_file = folder / META_FILE
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    base = meta.get("base") or adapter["base_model_name_or_path"]
    model, tokenizer = load_causal_lm(base, **load_kwargs)
    model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    model.eval()
    return model, tokenizer
