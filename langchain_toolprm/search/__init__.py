"""Search strategies over the step grammar, and the baselines they are measured against."""

from langchain_toolprm.search.config import AdaptiveBudget, Coverage, Relevance, SearchConfig
from langchain_toolprm.search.results import Alternative, Cost, SearchResult, TraceNode
from langchain_toolprm.search.run import run_search

__all__ = [
    "AdaptiveBudget",
    "Alternative",
    "Cost",
    "Coverage",
    "Relevance",
    "SearchConfig",
    "SearchResult",
    "TraceNode",
    "run_search",
]
