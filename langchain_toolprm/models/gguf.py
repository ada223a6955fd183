"""GGUF files converted once into a cache folder that ``from_pretrained`` loads quickly.

The conversion is written to a temporary folder and renamed into place, so an interrupted conversion never
leaves a half-written cache, and a file lock keeps two processes from converting the same file at once.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from langchain_toolprm.models.registry import ModelLoadError, PackagedModel, _packaged_pieces

logger = logging.getLogger(__name__)

# Bump when the layout or the conversion of a cache folder changes: old caches are then ignored.
# 2: the key hashes the files' content (1 hashed their paths and modification times).
_CACHE_FORMAT = "2"
# Written last into a cache folder, before the rename that publishes it; describes where it came from.
_SOURCE_FILE = "toolprm_source.json"
_GGUF_MAGIC = b"GGUF"
# 64 KiB windows of a source file read into its cache key, besides its first and last MiB (see _fingerprint).
_SAMPLES = 16


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
    """Hold an exclusive lock on ``path``, saying so when another process holds it first.

    Without the lock two processes that start together would both spend a minute and a few GB converting
    the same model; with it the second waits and then reuses the first one's cache. Correctness does not
    depend on it: the cache is published by an atomic rename either way.
    """
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        logger.warning("Another process is converting this model; waiting for it (%s)", path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


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
        # We hold the lock, so any temporary folder for this target was left by a dead process.
        for stale in cache.glob(f".tmp-{target.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # incomplete or damaged: set aside, rebuild
            broken = cache / f".tmp-{target.name}-broken-{os.getpid()}"
            os.replace(target, broken)
            shutil.rmtree(broken, ignore_errors=True)
        _convert_into(pieces, gguf_name, name, target)
    return target


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
    because random initialisation of weights that are overwritten at once is most of the time of a
    conversion (docs/benchmarks.md, "Model loading"); buffers that are not in the state dict (rotary
    frequencies) are copied over from the source model.
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
