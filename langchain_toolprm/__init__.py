"""langchain-toolprm: reliable tool calls from small models, by PRM-guided search over a step grammar."""

from langchain_toolprm.chat_models import ToolPRMChatModel
from langchain_toolprm.components import load_policy, load_prm
from langchain_toolprm.grammar import StepTag
from langchain_toolprm.graph import ToolPRMNode, create_toolprm_agent
from langchain_toolprm.lm import ContextLengthError
from langchain_toolprm.messages import UnsupportedContentError
from langchain_toolprm.policy import Policy, TransformersPolicy
from langchain_toolprm.prm import PRM, CombinedPRM, GenerativePRM, RulePRM
from langchain_toolprm.search import (
    AdaptiveBudget,
    Cost,
    Coverage,
    Relevance,
    SearchConfig,
    SearchResult,
    TraceNode,
    run_search,
)
from langchain_toolprm.tools import ToolSchemaError, ToolSpec, to_tool_specs

__all__ = [
    "PRM",
    "AdaptiveBudget",
    "CombinedPRM",
    "ContextLengthError",
    "Cost",
    "Coverage",
    "GenerativePRM",
    "Policy",
    "Relevance",
    "RulePRM",
    "SearchConfig",
    "SearchResult",
    "StepTag",
    "ToolPRMChatModel",
    "ToolPRMMiddleware",
    "ToolPRMNode",
    "ToolSchemaError",
    "ToolSpec",
    "TraceNode",
    "TransformersPolicy",
    "UnsupportedContentError",
    "create_toolprm_agent",
    "load_policy",
    "load_prm",
    "run_search",
    "to_tool_specs",
]


def __getattr__(name: str) -> object:
    # The middleware needs `langchain` (the `agents` extra); import it only when asked for.
    if name == "ToolPRMMiddleware":
        from langchain_toolprm.middleware import ToolPRMMiddleware

        return ToolPRMMiddleware
    raise AttributeError(f"module 'langchain_toolprm' has no attribute {name!r}")
