"""langchain-toolprm: reliable tool calls from small models, by PRM-guided search over a step grammar."""

from langchain_toolprm.grammar import StepTag
from langchain_toolprm.policy import Policy, TransformersPolicy
from langchain_toolprm.prm import PRM, CombinedPRM, GenerativePRM, RulePRM
from langchain_toolprm.search import Cost, SearchConfig, SearchResult, TraceNode, run_search
from langchain_toolprm.tools import ToolSchemaError, ToolSpec, to_tool_specs

__all__ = [
    "PRM",
    "CombinedPRM",
    "Cost",
    "GenerativePRM",
    "Policy",
    "RulePRM",
    "SearchConfig",
    "SearchResult",
    "StepTag",
    "ToolSchemaError",
    "ToolSpec",
    "TraceNode",
    "TransformersPolicy",
    "run_search",
    "to_tool_specs",
]
