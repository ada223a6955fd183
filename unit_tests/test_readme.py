"""Every ```python block of README.md runs as written, with the tiny model standing in for the packaged one.

Each block runs alone, in a fresh namespace, as a reader who copies one block would run it. The packaged
model's resolution is redirected to the tiny test model (and the packaged PRM to a generative PRM on
it), so the blocks run in seconds; `integration_tests/test_readme_real.py` runs the agent example on the
packaged model itself.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def readme_blocks() -> list[tuple[int, str]]:
    """``(line number, code)`` of every python block in README.md."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in _BLOCK.finditer(text)]


def run_block(line: int, code: str) -> dict[str, object]:
    """Run one block as a script of its own; returns its namespace."""
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(code, f"{README.name}:{line}", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def long_tiny_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with the packaged model's context (32k): its random calls make agent prompts long."""
    folder = tmp_path_factory.mktemp("tiny-long")
    shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
    for name, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        data = json.loads((folder / name).read_text())
        data[key] = 32768
        (folder / name).write_text(json.dumps(data))
    return folder


@pytest.fixture
def packaged_is_tiny(long_tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The packaged model's name resolves to the tiny model; ``"default"`` PRM is a generative PRM on it."""
    from langchain_toolprm import components
    from langchain_toolprm.models import locate
    from langchain_toolprm.prm import generative

    tiny_model_dir = long_tiny_model_dir

    load_prm_model = generative.load_prm_model
    monkeypatch.setattr(locate, "_convert_packaged", lambda model, cache: tiny_model_dir)
    monkeypatch.setattr(generative, "load_prm_model",
                        lambda ref, **kw: load_prm_model(tiny_model_dir if ref == "default" else ref, **kw))
    # The stand-in "default" is a whole model, not the packaged adapter: it cannot share the policy's weights
    # (that path has its own tests, unit_tests/test_shared_prm.py).
    monkeypatch.setattr(components, "_prm_on", lambda ref, lm: None)
    # Models loaded by reference are kept per reference: no tiny stand-in may outlive this test.
    for cache in (components._policy, components._prm):
        cache.cache_clear()
    yield
    for cache in (components._policy, components._prm):
        cache.cache_clear()


def test_the_readme_has_its_examples() -> None:
    codes = "\n".join(code for _, code in readme_blocks())
    for needed in ("run_search(", "load_prm(", "create_agent(model", "ToolPRMMiddleware(", "include_trace=True",
                   "render_trace("):
        assert needed in codes, needed


@pytest.mark.parametrize(("line", "code"), readme_blocks(), ids=[f"line{line}" for line, _ in readme_blocks()])
def test_readme_block_runs(line: int, code: str, packaged_is_tiny: None) -> None:
    run_block(line, code)
