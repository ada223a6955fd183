"""Readers for BFCL cases and xLAM/Hammer records, on small synthetic files and on the shared data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from langchain_toolprm.evaluation import (
    DataFormatError,
    bfcl_category,
    bfcl_data_dir,
    load_bfcl,
    load_records,
    normalize_tool,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_BFCL = SHARED / "data" / "bfcl_v4"
HAMMER_EXAMPLE = SHARED / "data" / "train_samples" / "hammer_masking_sft_data_example.json"
FUNCTION = {
    "name": "f",
    "description": "d",
    "parameters": {"type": "dict", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
}


def _write_jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def _entry(case_id: str) -> dict[str, Any]:
    turn = [{"role": "system", "content": "s"}, {"role": "user", "content": case_id}]
    return {"id": case_id, "question": [turn], "function": [FUNCTION]}


@pytest.fixture
def bfcl_dir(tmp_path: Path) -> Path:
    _write_jsonl(tmp_path / "BFCL_v4_simple_python.json", [_entry("simple_python_0"), _entry("simple_python_1")])
    _write_jsonl(
        tmp_path / "possible_answer" / "BFCL_v4_simple_python.json",
        [
            {"id": "simple_python_1", "ground_truth": [{"f": {"x": [1]}}]},
            {"id": "simple_python_0", "ground_truth": [{"f": {"x": [0]}}]},
        ],
    )
    _write_jsonl(tmp_path / "BFCL_v4_irrelevance.json", [_entry("irrelevance_0")])
    _write_jsonl(tmp_path / "BFCL_v4_multi_turn_base.json", [_entry("multi_turn_base_0")])
    return tmp_path


# --------------------------------------------------------------------------------------------------
# BFCL
# --------------------------------------------------------------------------------------------------


def test_load_bfcl_folder_joins_answers_by_id(bfcl_dir: Path) -> None:
    cases = load_bfcl(bfcl_dir)
    assert [(case.id, case.category) for case in cases] == [
        ("simple_python_0", "simple_python"),
        ("simple_python_1", "simple_python"),
        ("irrelevance_0", "irrelevance"),
    ]
    assert cases[1].ground_truth == [{"f": {"x": [1]}}]
    assert cases[1].messages == [{"role": "system", "content": "s"}, {"role": "user", "content": "simple_python_1"}]
    assert cases[1].functions == [FUNCTION]
    assert cases[2].ground_truth is None


def test_load_bfcl_file_categories_and_limit(bfcl_dir: Path) -> None:
    assert [case.id for case in load_bfcl(bfcl_dir / "BFCL_v4_irrelevance.json")] == ["irrelevance_0"]
    assert [case.id for case in load_bfcl(bfcl_dir, categories=["simple_python"], limit=1)] == ["simple_python_0"]


def test_load_bfcl_answers_dir(bfcl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("answers")
    _write_jsonl(
        other / "BFCL_v4_simple_python.json",
        [{"id": f"simple_python_{i}", "ground_truth": [{"f": {"x": [9]}}]} for i in range(2)],
    )
    cases = load_bfcl(bfcl_dir / "BFCL_v4_simple_python.json", answers_dir=other)
    assert {json.dumps(case.ground_truth) for case in cases} == {json.dumps([{"f": {"x": [9]}}])}


def test_load_bfcl_errors(bfcl_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No BFCL file or folder"):
        load_bfcl(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="live_simple"):
        load_bfcl(bfcl_dir, categories=["live_simple"])
    with pytest.raises(ValueError, match="Not a BFCL data file"):
        bfcl_category("simple.json")
    broken = tmp_path / "broken"
    _write_jsonl(broken / "BFCL_v4_multiple.json", [_entry("multiple_0")])
    with pytest.raises(FileNotFoundError, match="possible-answer"):
        load_bfcl(broken)
    with (broken / "BFCL_v4_multiple.json").open("a", encoding="utf-8") as handle:
        handle.write("\n{not json\n")
    _write_jsonl(broken / "possible_answer" / "BFCL_v4_multiple.json", [{"id": "multiple_0", "ground_truth": []}])
    with pytest.raises(DataFormatError, match=r"BFCL_v4_multiple.json:3: malformed JSON line"):
        load_bfcl(broken)


def test_load_bfcl_missing_answer(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "BFCL_v4_parallel.json", [_entry("parallel_0")])
    _write_jsonl(tmp_path / "possible_answer" / "BFCL_v4_parallel.json", [{"id": "other", "ground_truth": []}])
    with pytest.raises(DataFormatError, match="no possible answer for parallel_0"):
        load_bfcl(tmp_path)


def test_bfcl_data_dir_points_at_installed_data() -> None:
    folder = bfcl_data_dir()
    if folder is None:
        pytest.skip("bfcl-eval is not installed")
    assert (folder / "BFCL_v4_simple_python.json").is_file()


@pytest.mark.skipif(not SHARED_BFCL.is_dir(), reason=f"shared BFCL data not found at {SHARED_BFCL}")
def test_load_shared_bfcl_counts() -> None:
    counts: dict[str, int] = {}
    for case in load_bfcl(SHARED_BFCL):
        counts[case.category] = counts.get(case.category, 0) + 1
        assert case.messages and case.messages[-1]["role"] in {"user", "assistant", "system"}
        assert (case.ground_truth is None) == (case.category in {"irrelevance", "live_irrelevance", "live_relevance"})
    assert counts == {
        "simple_python": 400,
        "simple_java": 100,
        "simple_javascript": 50,
        "multiple": 200,
        "parallel": 200,
        "parallel_multiple": 200,
        "live_simple": 258,
        "live_multiple": 1053,
        "live_parallel": 16,
        "live_parallel_multiple": 24,
        "irrelevance": 240,
        "live_irrelevance": 884,
        "live_relevance": 16,
    }


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------

XLAM_TOOLS = [
    {
        "name": "live_giveaways_by_type",
        "description": "Retrieve live giveaways.",
        "parameters": {"type": {"description": "Type of giveaway.", "type": "str", "default": "game"}},
    }
]
XLAM_ANSWERS = [{"name": "live_giveaways_by_type", "arguments": {"type": "beta"}}]


def test_load_records_xlam_jsonl_with_string_fields(tmp_path: Path) -> None:
    item = {"id": 7, "query": "Beta giveaways?", "tools": json.dumps(XLAM_TOOLS), "answers": json.dumps(XLAM_ANSWERS)}
    path = _write_jsonl(tmp_path / "xlam.jsonl", [item, {**item, "id": 8, "answers": "[]"}])
    records = load_records(path)
    assert records[0].id == "7"
    assert records[0].query == "Beta giveaways?"
    assert records[0].tools == XLAM_TOOLS
    assert records[0].answers == XLAM_ANSWERS
    assert records[1].answers == []
    assert len(load_records(path, limit=1)) == 1


def test_load_records_json_array_with_schema_tools(tmp_path: Path) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "description": "d",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer", "default": 1}},
                "required": ["a"],
            },
        },
    }
    messages = [{"role": "user", "content": "hi"}]
    item = {"query": messages, "tools": [tool], "answers": [{"name": "f", "arguments": '{"a": "x"}'}]}
    path = tmp_path / "records.json"
    path.write_text(json.dumps([item]), encoding="utf-8")
    (record,) = load_records(path)
    assert record.query == messages
    assert record.tools == [
        {
            "name": "f",
            "description": "d",
            "parameters": {"a": {"type": "string", "required": True}, "b": {"type": "integer", "default": 1}},
        }
    ]
    assert record.answers == [{"name": "f", "arguments": {"a": "x"}}]
    assert record.id is None


def test_normalize_tool_keeps_flat_parameters_named_like_schema_keys() -> None:
    flat = {"name": "f", "parameters": {"type": {"type": "str"}, "properties": {"type": "str"}}}
    assert normalize_tool(flat) == flat


def test_load_records_hammer_instruction(tmp_path: Path) -> None:
    instruction = (
        "[BEGIN OF TASK INSTRUCTION]\nDo it.\n[END OF TASK INSTRUCTION]\n\n"
        f"[BEGIN OF AVAILABLE TOOLS]\n{json.dumps(XLAM_TOOLS)}\n[END OF AVAILABLE TOOLS]\n\n"
        "[BEGIN OF QUERY]\nBeta giveaways?\n[END OF QUERY]\n\n"
    )
    output = f"```\n{json.dumps(XLAM_ANSWERS)}\n```"
    path = tmp_path / "hammer.json"
    path.write_text(json.dumps([{"instruction": instruction, "input": "", "output": output}]), encoding="utf-8")
    (record,) = load_records(path)
    assert (record.query, record.tools, record.answers) == ("Beta giveaways?", XLAM_TOOLS, XLAM_ANSWERS)


@pytest.mark.skipif(not HAMMER_EXAMPLE.is_file(), reason=f"shared Hammer example not found at {HAMMER_EXAMPLE}")
def test_load_records_shared_hammer_example() -> None:
    records = load_records(HAMMER_EXAMPLE)
    assert len(records) == 10
    assert sum(not record.answers for record in records) == 2
    for record in records:
        names = {tool["name"] for tool in record.tools}
        assert isinstance(record.query, str) and record.query
        assert all(call["name"] in names for call in record.answers)


def test_load_records_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_records(tmp_path / "missing.jsonl")
    good = {"query": "q", "tools": [], "answers": []}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.jsonl:3: expected a JSON object"):
        load_records(path)
    path.write_text(json.dumps({"query": "q", "tools": "[oops", "answers": []}) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.jsonl:1: field 'tools' is a string but not valid JSON"):
        load_records(path)
    path.write_text(json.dumps({"query": "q"}) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"lacks fields \['tools', 'answers'\]"):
        load_records(path)
    array = tmp_path / "bad.json"
    array.write_text('[{"query": "q",\n "tools": [}]', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.json:2: malformed JSON"):
        load_records(array)
