"""The one converter of xLAM/Hammer record tools, shared by training data and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

from langchain_toolprm.data.sources import examples_from_records
from langchain_toolprm.evaluation.cases import load_cases
from langchain_toolprm.evaluation.config import EvalConfig
from langchain_toolprm.evaluation.readers import Record
from langchain_toolprm.tool_forms import record_tool_to_openai
from langchain_toolprm.tools import to_tool_specs

TOOL = {"name": "f", "description": "d", "parameters": {
    "xs": {"type": "List[int]", "description": "numbers"},
    "name": {"type": "str, optional"},
    "mode": {"type": "Optional[str]"},
    "opt": {"type": "str", "default": "a", "description": "a mode"},
    "ratio": {"type": "double"},
    "limit": {"type": "int | None"},
    "any": {"type": "Callable"},
}}


def test_record_tools_become_json_schema() -> None:
    params = record_tool_to_openai(TOOL)["function"]["parameters"]
    props = params["properties"]
    assert props["xs"] == {"type": "array", "items": {"type": "integer"}, "description": "numbers"}
    assert props["mode"] == {"type": "string"}
    assert props["ratio"] == {"type": "number"}
    assert props["limit"] == {"type": "integer"}
    assert props["opt"] == {"type": "string", "description": "a mode (default: a)"}
    assert props["any"] == {}
    assert params["required"] == ["xs", "ratio", "any"]


def test_a_required_flag_decides_alone() -> None:
    flagged = record_tool_to_openai({"name": "g", "parameters": {
        "a": {"type": "string", "required": True}, "b": {"type": "integer", "enum": [1, 2]}}})
    assert flagged["function"]["parameters"]["required"] == ["a"]
    assert flagged["function"]["parameters"]["properties"]["b"] == {"type": "integer", "enum": [1, 2]}


def test_training_data_and_evaluation_read_a_record_tool_alike(tmp_path: Path) -> None:
    answers = [{"name": "f", "arguments": {"xs": [1], "ratio": 0.5, "any": 1}}]
    examples, skipped = examples_from_records([Record(id="r1", query="q", tools=[TOOL], answers=answers)])
    assert not skipped
    file = tmp_path / "records.jsonl"
    file.write_text(json.dumps({"id": "r1", "query": "q", "tools": [TOOL], "answers": answers}) + "\n")
    (case,) = load_cases(EvalConfig(data=str(file)))
    trained = to_tool_specs(examples[0].tools)[0]
    evaluated = to_tool_specs(case.tools)[0]
    assert trained.parameters == evaluated.parameters
