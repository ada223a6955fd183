"""Where a model reference points: a packaged name, a GGUF file, a local folder or a hub id."""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    pass

from langchain_toolprm.models.gguf import _convert_gguf_files, _convert_packaged, _has_gguf_magic, _safe_name
from langchain_toolprm.models.registry import (
    ModelLoadError,
    _packaged_model,
    _packaged_names,
    default_cache_dir,
    short_model_names,
    unknown_name_message,
)

logger = logging.getLogger(__name__)

_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]


def _looks_like_path(ref: str) -> bool:
    r"""Tell whether a string that names nothing on disk was meant as a path rather than a hub id.

    Hub ids look like ``name`` or ``namespace/name`` (letters, digits, ``-``, ``_``, ``.``). Anything
    else (``./x``, ``/abs/x``, ``~/x``, ``a/b/c``, ``C:\\x``, ``x.gguf``) is a path; sending it to the hub
    would only give a confusing network error.
    """
    if ref.lower().endswith(".gguf") or ref.startswith((".", "/", "~")):
        return True
    if "\\" in ref or (os.altsep and os.altsep != "/" and os.altsep in ref):
        return True
    try:
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return ref.count("/") > 1 or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", ref)
    try:
        validate_repo_id(ref)
    except HFValidationError:
        return True
    return False


_TRUE = {"1", "on", "yes", "true"}


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def _hub_unreachable() -> str | None:
    """Why the hub cannot be reached now (``HF_HUB_OFFLINE``, or no connection within two seconds), or None.

    Without this check an offline machine spends a long time in HTTP retries before the error
    (docs/benchmarks.md, "Model loading").
    """
    if any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(_hub_endpoint())
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=2).close()
    except OSError as error:
        return f"the Hugging Face hub at {endpoint.geturl()} cannot be reached ({error})"
    return None


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _hub_online(repo_id: str) -> bool:
    """Whether to reach the hub for ``repo_id`` (``False``: its files are in the local hub cache; use them).

    Raises:
        ModelLoadError: The hub cannot be reached and the repo is not in the local cache.

    """
    problem = _hub_unreachable()
    if problem is None:
        return True
    if _hub_cached(repo_id):
        return False
    raise ModelLoadError(
        f"{repo_id!r} is not a local file or folder nor a packaged model ({_packaged_names()}), nor in the"
        f" local hub cache, and it cannot be downloaded: {problem}. Pass a local folder, a .gguf file or a"
        " packaged model name."
    )


def check_bare_name(ref: str, names: list[str], what: str) -> None:
    """Let a bare name (no owner, such as ``gpt2``) through only when it is a model of the hub.

    Bare names are both typos of the short names (``prm="rulez"``) and the hub's oldest ids; one bounded
    look-up (a connection check, then one request with no retries) tells them apart, so a typo fails
    at once with the valid names listed and a bare hub id still loads. The local hub cache answers first.

    Args:
        ref: The bare name.
        names: The short names there are, for the error.
        what: What the names are (``"packaged model"``, ``"PRM"``), for the error.

    Raises:
        ModelLoadError: The name is not in the local hub cache and the hub has no such model, or
            cannot be reached to say.

    """
    if _hub_cached(ref):
        return
    problem = _hub_unreachable()
    if problem is None:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            HfApi(endpoint=_hub_endpoint()).model_info(ref, timeout=10)
            return
        except RepositoryNotFoundError:
            problem = "the Hugging Face hub has no model of that id"
        except Exception as error:
            problem = f"asking the Hugging Face hub failed ({error})"
    raise ModelLoadError(f"{unknown_name_message(ref, names, what)} Looking it up on the hub: {problem}.")


def locate_model(ref: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None) -> Path | str:
    """Resolve a reference to a local folder (converting GGUF files on first use) or a hub id string.

    Kept apart from :func:`resolve_model` so :func:`load_causal_lm` can hand hub ids straight to
    ``from_pretrained``, which knows best which weight files of a hub repo to fetch.
    """
    if not isinstance(ref, (str, os.PathLike)):
        raise ModelLoadError(f"Model reference must be a string or a path, not {type(ref).__name__}: {ref!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if isinstance(ref, str):
        text = ref.strip()
        if not text:
            raise ModelLoadError(f"Empty model reference. Packaged models: {_packaged_names()}.")
        packaged = _packaged_model(text)
        if packaged is not None:
            return _convert_packaged(packaged, cache)
    path = Path(os.fspath(ref)).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _convert_gguf_files([ggufs[0]], ggufs[0].name, _safe_name(ggufs[0].stem), cache)
        raise ModelLoadError(
            f"Folder {str(path)!r} is not a model folder: it has no config.json"
            + (f" and {len(ggufs)} .gguf files (pass one of them)." if ggufs else ".")
            + " Pass a folder saved with save_pretrained, a .gguf file, a hub id or a packaged model name"
            f" ({_packaged_names()})."
        )
    if path.is_file():
        if path.suffix.lower() != ".gguf" and not _has_gguf_magic(path):
            raise ModelLoadError(
                f"File {str(path)!r} is not a GGUF file. Pass a .gguf file, a folder saved with"
                " save_pretrained, a hub id or a packaged model name."
            )
        return _convert_gguf_files([path], path.name, _safe_name(path.stem), cache)
    if not isinstance(ref, str) or _looks_like_path(ref.strip()):
        raise ModelLoadError(
            f"No such file or folder: {os.fspath(ref)!r}. Pass an existing .gguf file or model folder,"
            f" a hub id such as 'Qwen/Qwen2.5-0.5B-Instruct', or a packaged model name ({_packaged_names()})."
        )
    if "/" not in ref.strip():
        check_bare_name(ref.strip(), short_model_names(), "packaged model")
    return ref.strip()


def resolve_model(ref: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return a local folder that ``from_pretrained`` loads (config, tokenizer and weights).

    One entry point for every kind of reference, so the policy, the PRM and the trainer never care where
    a model came from:

    1. a packaged short name or alias (see :data:`PACKAGED_MODELS`): its GGUF is found in the installed
       packages, converted once and cached;
    2. a ``.gguf`` file (or a folder holding exactly one): converted once and cached;
    3. a local folder with ``config.json``: returned as is;
    4. anything else that looks like a hub id: downloaded with ``huggingface_hub`` (config, tokenizer and
       safetensors files) into its usual cache, whose folder is returned.

    Args:
        ref: The model reference.
        cache_dir: Where converted GGUF models live; defaults to :func:`default_cache_dir`.

    Returns:
        The folder to pass to ``from_pretrained``.

    Raises:
        ModelLoadError: The reference names nothing that exists, a packaged model's packages are missing,
            the conversion failed, or the hub download failed.

    """
    located = locate_model(ref, cache_dir)
    if isinstance(located, Path):
        return located
    return _download_hub(located)


def _download_hub(repo_id: str) -> Path:
    """Fetch a hub repo's config, tokenizer and weights; fall back to ``*.bin`` weights if needed."""
    local = not _hub_online(repo_id)
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=local))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(repo_id, allow_patterns=[*_HUB_PATTERNS, "*.bin"],
                                            local_files_only=local))
    except Exception as error:
        raise ModelLoadError(
            f"{repo_id!r} is not a local file or folder nor a packaged model ({_packaged_names()}), and"
            f" downloading it from the Hugging Face hub failed: {error}"
        ) from error
    return folder
