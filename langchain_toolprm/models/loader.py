"""`load_causal_lm`: a resolved model folder loaded on a device in a dtype."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

from langchain_toolprm.models.locate import _hub_online, locate_model
from langchain_toolprm.models.registry import ModelLoadError, _packaged_names

logger = logging.getLogger(__name__)

def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    """Turn ``"float32"``, ``"bf16"``, ``torch.float16``... into a torch dtype (``"auto"`` passes)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    aliases = {
        "fp32": "float32",
        "fp16": "float16",
        "half": "float16",
        "bf16": "bfloat16",
        "float": "float32",
    }
    key = aliases.get(str(dtype).lower(), str(dtype).lower())
    if key == "auto":
        return "auto"
    value = getattr(torch, key, None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use 'float32', 'bfloat16', 'float16' or 'auto'.")
    return value


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_device(device: str) -> None:
    """Refuse a device this torch cannot use before any loading, rather than with torch's error after it."""
    import torch

    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        cuda = torch.version.cuda
        build = "a CPU-only build" if cuda is None else f"built for CUDA {cuda}, but no GPU is visible"
        raise ModelLoadError(f"device={device!r} was asked, but this torch ({torch.__version__}) is {build}."
                             " Pass device='cpu', or install a CUDA build of torch.")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device={device!r} was asked, but MPS is not available here. Pass device='cpu'.")


def load_causal_lm(
    ref: str | os.PathLike[str],
    *,
    dtype: str | torch.dtype = "float32",
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM in eval mode and its tokenizer from any model reference.

    ``float32`` is the default because on CPUs without bf16 hardware it is the faster choice for prefill,
    and GGUF conversions are stored in float32 so nothing is lost; pass ``"bfloat16"`` on a GPU.

    Args:
        ref: A packaged model name, a ``.gguf`` file, a model folder or a hub id (see
            :func:`resolve_model`).
        dtype: Weight dtype: a ``torch.dtype``, its name (``"float32"``, ``"bfloat16"``, ``"bf16"``...) or
            ``"auto"`` (the dtype stored in the checkpoint).
        cache_dir: Where converted GGUF models live; defaults to :func:`default_cache_dir`.
        device: Where to put the model; defaults to ``"cuda"`` when available, else ``"cpu"``.

    Returns:
        ``(model, tokenizer)``, the model in eval mode on ``device``.

    Raises:
        ModelLoadError: The reference cannot be resolved or ``from_pretrained`` fails on it.

    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype)
    target = device or _default_device()
    _check_device(target)
    located = locate_model(ref, cache_dir)
    local = isinstance(located, str) and not _hub_online(located)
    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(located, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(located, dtype=torch_dtype, local_files_only=local)
    except Exception as error:
        where = (
            f"the folder {str(located)!r}"
            if isinstance(located, Path)
            else f"the hub id {located!r} (it is not a local path nor a packaged model: {_packaged_names()})"
        )
        raise ModelLoadError(f"Could not load model {os.fspath(ref)!r} from {where}: {error}") from error
    module: torch.nn.Module = model  # transformers' `to` wrapper hides torch's signature from type checkers
    module.to(target)  # in place: a module's `to` returns the module itself
    model.eval()
    logger.info("Loaded %s on %s in %.1f s", located, target, time.perf_counter() - started)
    return model, tokenizer
