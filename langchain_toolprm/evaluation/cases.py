"""Evaluation cases from BFCL files or record-form files, each with the grader of its kind."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_toolprm.evaluation.bfcl_checker import calls_to_bfcl, check_case
from langchain_toolprm.evaluation.metrics import call_counts, exact_match
from langchain_toolprm.evaluation.readers import (
    BFCLCase,
    Record,
    bfcl_category,
    bfcl_data_dir,
    load_bfcl,
    load_records,
)

if TYPE_CHECKING:
    pass

from langchain_toolprm.evaluation.config import DEFAULT_BFCL_CATEGORIES, RECORD_CATEGORY, EvalConfig
from langchain_toolprm.tool_forms import record_tool_to_openai


@dataclass(frozen=True)
class EvalCase:
    """One case in the form the loop needs, whatever file it came from.

    Attributes:
        id: The case id (BFCL id, record id, or ``record_<index>``); the resume key.
        category: The BFCL category, or ``"records"``.
        messages: The conversation.
        tools: Tool definitions `run_search` accepts (BFCL docs, OpenAI tool dicts).
        grade: Returns ``(correct, extra fields for the prediction line)`` for predicted calls.

    """

    id: str
    category: str
    messages: str | list[dict[str, str]]
    tools: list[dict[str, Any]]
    grade: Callable[[list[dict[str, Any]]], tuple[bool, dict[str, Any]]] = field(repr=False, compare=False)


def _bfcl_grader(case: BFCLCase) -> Callable[[list[dict[str, Any]]], tuple[bool, dict[str, Any]]]:
    def grade(calls: list[dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
        verdict = check_case(case.category, case.functions, calls_to_bfcl(calls), case.ground_truth)
        return verdict.valid, ({} if verdict.valid else {"error_type": verdict.error_type})

    return grade


def _record_grader(record: Record) -> Callable[[list[dict[str, Any]]], tuple[bool, dict[str, Any]]]:
    def grade(calls: list[dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
        counts = call_counts(calls, record.answers)
        return exact_match(calls, record.answers), {"counts": dataclasses.asdict(counts)}

    return grade


def _is_bfcl(path: Path) -> bool:
    if path.is_dir():
        return True
    try:
        bfcl_category(path)
    except ValueError:
        return False
    return True


def load_cases(config: EvalConfig) -> list[EvalCase]:
    """Read the dataset named by the config, BFCL or record form, into cases.

    Raises:
        FileNotFoundError: No data given and no ``bfcl-eval`` installed, or a missing file.
        ValueError: Duplicate case ids (resumption keys on them).

    """
    if config.data is None:
        folder = bfcl_data_dir()
        if folder is None:
            raise FileNotFoundError("No --data given and the bfcl-eval package is not installed.")
        path = folder
    else:
        path = Path(config.data)
    if _is_bfcl(path):
        categories = config.categories
        if categories is None and path.is_dir():
            present = {bfcl_category(f) for f in path.glob("BFCL_v*_*.json")}
            categories = [c for c in DEFAULT_BFCL_CATEGORIES if c in present]
        bfcl = load_bfcl(path, categories, config.answers, config.limit)
        cases = [EvalCase(c.id, c.category, c.messages, c.functions, _bfcl_grader(c)) for c in bfcl]
    else:
        records = load_records(path, config.limit)
        cases = [
            EvalCase(
                r.id if r.id is not None else f"record_{i}",
                RECORD_CATEGORY,
                r.query,
                [record_tool_to_openai(t) for t in r.tools],
                _record_grader(r),
            )
            for i, r in enumerate(records)
        ]
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError("Case ids are not unique; predictions could not be resumed by id.")
    return cases
