"""LangChain's standard unit tests for `ToolPRMChatModel` (construction only: no model is loaded)."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_toolprm import ToolPRMChatModel


class TestToolPRMChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ToolPRMChatModel]:
        return ToolPRMChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"policy": "smollm2-135m-instruct"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return ({"TOOLPRM_POLICY": "qwen2.5-coder-0.5b-instruct", "TOOLPRM_PRM": "rules"}, {},
                {"policy": "qwen2.5-coder-0.5b-instruct", "prm": "rules"})
