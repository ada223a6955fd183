"""Our BFCL checker against the official one: recorded verdicts, live re-runs, and the tricky rules."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest

from langchain_toolprm.evaluation import BFCLCase, bfcl_data_dir, calls_to_bfcl, check_case, load_bfcl
from langchain_toolprm.evaluation.bfcl_checker import standardize_string

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PREDICTIONS = FIXTURES / "bfcl_predictions.jsonl"
SHARED_BFCL = Path(__file__).resolve().parents[2] / "shared" / "data" / "bfcl_v4"
FIXTURE_CATEGORIES = {
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
    "live_relevance",
}


def _data_dir() -> Path | None:
    if SHARED_BFCL.is_dir():
        return SHARED_BFCL
    return bfcl_data_dir()


def _official_module() -> ModuleType:
    """Load the fixture script, whose ``Official`` class runs BFCL's own checker."""
    pytest.importorskip("bfcl_eval", reason="bfcl-eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
    spec = importlib.util.spec_from_file_location("make_bfcl_predictions", FIXTURES / "make_bfcl_predictions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lines() -> list[dict[str, Any]]:
    with PREDICTIONS.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def cases(lines: list[dict[str, Any]]) -> dict[str, BFCLCase]:
    data = _data_dir()
    if data is None:
        pytest.skip(f"BFCL data not found: neither {SHARED_BFCL} nor an installed bfcl-eval package")
    categories = sorted({line["category"] for line in lines})
    return {case.id: case for case in load_bfcl(data, categories=categories)}


@pytest.fixture(scope="module")
def official() -> Any:
    return _official_module().Official()


def _ours(case: BFCLCase, line: dict[str, Any]) -> Any:
    return check_case(
        case.category,
        case.functions,
        line["prediction"],
        case.ground_truth,
        underscore_to_dot=line.get("underscore_to_dot", False),
    )


# --------------------------------------------------------------------------------------------------
# Recorded official verdicts
# --------------------------------------------------------------------------------------------------


def test_fixture_spans_categories_and_verdicts(lines: list[dict[str, Any]]) -> None:
    assert len(lines) >= 400
    assert {line["category"] for line in lines} == FIXTURE_CATEGORIES
    verdicts = Counter((line["category"], line["official_valid"]) for line in lines)
    for category in FIXTURE_CATEGORIES:
        assert verdicts[(category, True)] > 0 and verdicts[(category, False)] > 0, category


def test_agrees_with_recorded_official_verdicts(lines: list[dict[str, Any]], cases: dict[str, BFCLCase]) -> None:
    disagreements = []
    for line in lines:
        result = _ours(cases[line["id"]], line)
        if (result.valid, result.error_type) != (line["official_valid"], line["official_error_type"]):
            disagreements.append((line["id"], line["kind"], line["official_error_type"], result))
    assert disagreements == [], f"{len(disagreements)} of {len(lines)} differ: {disagreements[:5]}"


def test_agrees_with_live_official_checker(
    lines: list[dict[str, Any]], cases: dict[str, BFCLCase], official: Any
) -> None:
    disagreements = []
    for line in lines:
        case = cases[line["id"]]
        verdict = official.verdict(case, line["prediction"], line.get("underscore_to_dot", False))
        if verdict["valid"] != line["official_valid"] or verdict["valid"] != _ours(case, line).valid:
            disagreements.append((line["id"], line["kind"], verdict, line["official_valid"]))
    assert disagreements == [], f"{len(disagreements)} of {len(lines)} differ: {disagreements[:5]}"


# --------------------------------------------------------------------------------------------------
# Hand-written rules (also checked against the official checker when it is installed)
# --------------------------------------------------------------------------------------------------


def _function(name: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "description": "",
        "parameters": {"type": "dict", "properties": properties, "required": required or []},
    }


NUMBERS = _function(
    "math.area",
    {
        "count": {"type": "integer", "description": ""},
        "ratio": {"type": "float", "description": ""},
        "flag": {"type": "boolean", "description": ""},
    },
    ["count"],
)
TEXT = _function(
    "find",
    {
        "city": {"type": "string", "description": ""},
        "tags": {"type": "array", "items": {"type": "string"}, "description": ""},
        "point": {"type": "tuple", "items": {"type": "float"}, "description": ""},
        "filters": {"type": "dict", "description": ""},
        "rows": {"type": "array", "items": {"type": "dict"}, "description": ""},
    },
    ["city"],
)
SHIFT = _function("shift", {"x": {"type": "integer", "description": ""}}, ["x"])


class Rule(NamedTuple):
    """One hand-written case: a BFCL rule and the verdict the official checker gives."""

    name: str
    category: str
    functions: list[dict[str, Any]]
    ground_truth: Any
    prediction: Any
    valid: bool
    underscore_to_dot: bool = False


RULES: list[Rule] = [
    Rule(
        "int where float is asked",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [2], "ratio": [2.0]}}],
        [{"math.area": {"count": 2, "ratio": 2}}],
        True,
    ),
    Rule(
        "float where int is asked",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [2]}}],
        [{"math.area": {"count": 2.0}}],
        False,
    ),
    Rule(
        "bool is not an int",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [1]}}],
        [{"math.area": {"count": True}}],
        False,
    ),
    Rule(
        "int as string",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [5]}}],
        [{"math.area": {"count": "5"}}],
        False,
    ),
    Rule(
        "empty string marks omittable",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [1], "flag": ["", True]}}],
        [{"math.area": {"count": 1}}],
        True,
    ),
    Rule(
        "optional in doc but not omittable",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [1], "flag": [True]}}],
        [{"math.area": {"count": 1}}],
        False,
    ),
    Rule(
        "missing required",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [1], "flag": ["", True]}}],
        [{"math.area": {"flag": True}}],
        False,
    ),
    Rule(
        "documented param the answer omits",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [1]}}],
        [{"math.area": {"count": 1, "flag": True}}],
        False,
    ),
    Rule(
        "unknown param",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [1]}}],
        [{"math.area": {"count": 1, "other": 1}}],
        False,
    ),
    Rule(
        "string standardised",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["New York, NY"]}}],
        [{"find": {"city": "new_york-ny."}}],
        True,
    ),
    Rule(
        "other punctuation kept",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["New York, NY"]}}],
        [{"find": {"city": "New York, NY!"}}],
        False,
    ),
    Rule(
        "single quote read as double",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["it's"]}}],
        [{"find": {"city": 'it"s'}}],
        True,
    ),
    Rule(
        "list strings standardised",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["x"], "tags": [["Big Apple"]]}}],
        [{"find": {"city": "x", "tags": ["BIG-APPLE"]}}],
        True,
    ),
    Rule(
        "list order matters",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["x"], "tags": [["a", "b"]]}}],
        [{"find": {"city": "x", "tags": ["b", "a"]}}],
        False,
    ),
    Rule(
        "empty string stands for empty list",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["x"], "tags": ["", ["a"]]}}],
        [{"find": {"city": "x", "tags": []}}],
        True,
    ),
    Rule(
        "tuple value for tuple param",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["x"], "point": [[1.5, 2.0]]}}],
        [{"find": {"city": "x", "point": (1.5, 2.0)}}],
        True,
    ),
    Rule(
        "no int to float inside lists",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["x"], "point": [[1.0, 2.0]]}}],
        [{"find": {"city": "x", "point": [1, 2]}}],
        False,
    ),
    Rule(
        "ints inside a float list when the answer has ints",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["x"], "point": [[1, 2]]}}],
        [{"find": {"city": "x", "point": [1, 2]}}],
        True,
    ),
    Rule(
        "dict values standardised, omittable key",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["x"], "filters": [{"a": ["Yes"], "b": ["", 1]}]}}],
        [{"find": {"city": "x", "filters": {"a": "YES"}}}],
        True,
    ),
    Rule(
        "dict unexpected key",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["x"], "filters": [{"a": ["y"]}]}}],
        [{"find": {"city": "x", "filters": {"a": "y", "c": 1}}}],
        False,
    ),
    Rule(
        "list of dicts",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["x"], "rows": [[{"a": [1]}, {"a": [2]}]]}}],
        [{"find": {"city": "x", "rows": [{"a": 1}, {"a": 2}]}}],
        True,
    ),
    Rule(
        "list of dicts in wrong order",
        "simple_python",
        [TEXT],
        [{"find": {"city": ["x"], "rows": [[{"a": [1]}, {"a": [2]}]]}}],
        [{"find": {"city": "x", "rows": [{"a": 2}, {"a": 1}]}}],
        False,
    ),
    Rule(
        "variable compared exactly",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": ["n"]}}],
        [{"math.area": {"count": "N"}}],
        False,
    ),
    Rule(
        "variable matches",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": ["n"]}}],
        [{"math.area": {"count": "n"}}],
        True,
    ),
    Rule(
        "null answer",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [None]}}],
        [{"math.area": {"count": None}}],
        True,
    ),
    Rule(
        "dotted name kept",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [1]}}],
        [{"math_area": {"count": 1}}],
        False,
    ),
    Rule(
        "dotted name as underscores",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [1]}}],
        [{"math_area": {"count": 1}}],
        True,
        underscore_to_dot=True,
    ),
    Rule(
        "original name when underscores expected",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [1]}}],
        [{"math.area": {"count": 1}}],
        False,
        underscore_to_dot=True,
    ),
    Rule(
        "simple needs one call",
        "simple_python",
        [NUMBERS],
        [{"math.area": {"count": [1]}}],
        [{"math.area": {"count": 1}}, {"math.area": {"count": 1}}],
        False,
    ),
    Rule(
        "multiple picks the answer's function",
        "multiple",
        [TEXT, NUMBERS],
        [{"math.area": {"count": [1]}}],
        [{"math.area": {"count": 1}}],
        True,
    ),
    Rule("multiple with no call", "multiple", [TEXT, NUMBERS], [{"math.area": {"count": [1]}}], [], False),
    Rule(
        "parallel in any order",
        "parallel",
        [SHIFT],
        [{"shift": {"x": [1]}}, {"shift": {"x": [2]}}],
        [{"shift": {"x": 2}}, {"shift": {"x": 1}}],
        True,
    ),
    Rule(
        "parallel matching is greedy",
        "parallel",
        [SHIFT],
        [{"shift": {"x": [1, 2]}}, {"shift": {"x": [1]}}],
        [{"shift": {"x": 1}}, {"shift": {"x": 2}}],
        False,
    ),
    Rule(
        "parallel missing a call",
        "live_parallel",
        [SHIFT],
        [{"shift": {"x": [1]}}, {"shift": {"x": [2]}}],
        [{"shift": {"x": 1}}],
        False,
    ),
    Rule(
        "two names in one call",
        "simple_python",
        [SHIFT],
        [{"shift": {"x": [1]}}],
        [{"shift": {"x": 1}, "other": {}}],
        False,
    ),
    Rule("irrelevance with no call", "irrelevance", [SHIFT], None, [], True),
    Rule("irrelevance with an empty call", "live_irrelevance", [SHIFT], None, [{}], True),
    Rule("irrelevance with text", "irrelevance", [SHIFT], None, "Sorry, I can't.", True),
    Rule("irrelevance with a call", "irrelevance", [SHIFT], None, [{"shift": {}}], False),
    Rule("relevance with a wrong call", "live_relevance", [SHIFT], None, [{"made_up": {"a": 1}}], True),
    Rule("relevance with no call", "live_relevance", [SHIFT], None, [], False),
]


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_rule(rule: Rule) -> None:
    result = check_case(
        rule.category, rule.functions, rule.prediction, rule.ground_truth, underscore_to_dot=rule.underscore_to_dot
    )
    assert result.valid is rule.valid, result
    assert (result.error_type is None) is rule.valid


def test_rules_match_official_checker(official: Any) -> None:
    for rule in RULES:
        case = BFCLCase(rule.name, rule.category, [], rule.functions, rule.ground_truth)
        assert official.verdict(case, rule.prediction, rule.underscore_to_dot)["valid"] is rule.valid, rule.name


def test_standardize_string() -> None:
    assert standardize_string("April 1, 2024") == standardize_string("april 1 2024") == "april12024"
    assert standardize_string("a/b.c-d_e*f^g") == "abcdefg"
    assert standardize_string("it's") == 'it"s'
    assert standardize_string("tab\there") == "tab\there"


def test_calls_to_bfcl() -> None:
    calls = [{"name": "f", "arguments": {"a": 1}}, {"name": "g", "args": {"b": 2}}, {"name": "h"}]
    assert calls_to_bfcl(calls) == [{"f": {"a": 1}}, {"g": {"b": 2}}, {"h": {}}]


def test_java_is_refused() -> None:
    with pytest.raises(ValueError, match="Java"):
        check_case("simple_java", [SHIFT], [{"shift": {"x": "1"}}], [{"shift": {"x": ["1"]}}])


def test_ast_category_needs_ground_truth() -> None:
    with pytest.raises(ValueError, match="ground truth"):
        check_case("simple_python", [SHIFT], [{"shift": {"x": 1}}], None)
