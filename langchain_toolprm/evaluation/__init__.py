"""Evaluation: data readers, a BFCL-faithful checker, call-level metrics, the eval loop and budget plots."""

from langchain_toolprm.evaluation.bfcl_checker import (
    CheckResult,
    calls_to_bfcl,
    check_case,
    has_no_call,
    is_call_list,
    standardize_string,
)
from langchain_toolprm.evaluation.cases import EvalCase, load_cases
from langchain_toolprm.evaluation.config import EvalConfig, RunSpec
from langchain_toolprm.evaluation.metrics import (
    PRF,
    CallCounts,
    CallMetrics,
    call_counts,
    canonical_value,
    exact_match,
    score_calls,
)
from langchain_toolprm.evaluation.plots import budget_figure, plot_budget
from langchain_toolprm.evaluation.readers import (
    AST_CATEGORIES,
    RELEVANCE_CATEGORIES,
    SINGLE_TURN_CATEGORIES,
    BFCLCase,
    DataFormatError,
    Record,
    bfcl_category,
    bfcl_data_dir,
    iter_jsonl,
    load_bfcl,
    load_records,
    normalize_call,
    normalize_tool,
)
from langchain_toolprm.evaluation.render import render_summary, summary_markdown
from langchain_toolprm.evaluation.runner import run_eval
from langchain_toolprm.evaluation.summary import EvalSummary, RunSummary, load_results, summarize
from langchain_toolprm.tool_forms import record_tool_to_openai

__all__ = [
    "AST_CATEGORIES",
    "PRF",
    "RELEVANCE_CATEGORIES",
    "SINGLE_TURN_CATEGORIES",
    "BFCLCase",
    "CallCounts",
    "CallMetrics",
    "CheckResult",
    "DataFormatError",
    "EvalCase",
    "EvalConfig",
    "EvalSummary",
    "Record",
    "RunSpec",
    "RunSummary",
    "bfcl_category",
    "bfcl_data_dir",
    "budget_figure",
    "call_counts",
    "calls_to_bfcl",
    "canonical_value",
    "check_case",
    "exact_match",
    "has_no_call",
    "is_call_list",
    "iter_jsonl",
    "load_bfcl",
    "load_cases",
    "load_records",
    "load_results",
    "normalize_call",
    "normalize_tool",
    "plot_budget",
    "record_tool_to_openai",
    "render_summary",
    "run_eval",
    "score_calls",
    "standardize_string",
    "summarize",
    "summary_markdown",
]
