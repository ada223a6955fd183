"""``toolprm bench`` on the tiny model and a tiny LoRA PRM: every run, the floor, memory and the ratios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from langchain_toolprm.cli import main

LIGHT = {"name": "set_light", "description": "Switch a light.",
         "parameters": {"type": "dict", "properties": {"room": {"type": "string", "enum": ["kitchen", "hall"]},
                                                       "on": {"type": "boolean"}}, "required": ["room", "on"]}}


@pytest.fixture
def bfcl_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bfcl"
    (folder / "possible_answer").mkdir(parents=True)
    questions = ["kitchen light on", "hall light off", "not counted"]
    (folder / "BFCL_v4_simple_python.json").write_text("".join(
        json.dumps({"id": f"simple_python_{i}", "question": [[{"role": "user", "content": q}]], "function": [LIGHT]})
        + "\n" for i, q in enumerate(questions)))
    (folder / "possible_answer" / "BFCL_v4_simple_python.json").write_text("".join(
        json.dumps({"id": f"simple_python_{i}", "ground_truth": [{"set_light": {"room": ["kitchen"], "on": [True]}}]})
        + "\n" for i in range(len(questions))))
    return folder


def test_bench_runs_greedy_the_floor_and_beam_on_one_model(bfcl_dir: Path, tiny_model_dir: Path, tiny_policy: Any,
                                                           tiny_lora_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--data", str(bfcl_dir), "--limit", "2", "--policy", str(tiny_model_dir), "--prm",
                 str(tiny_lora_dir), "--beams", "1", "--widths", "2", "3", "--output", str(out),
                 "--policy-sure", "none", "--no-progress"]) == 0  # the tiny model is sure: ask the PRM anyway
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["cases"] == ["simple_python_0", "simple_python_1"]
    runs = [line["run"] for line in report["lines"]]
    assert runs == ["greedy", "floor"] * 2 + ["beam_N1_M2"] * 2 + ["beam_N1_M3"] * 2
    assert report["memory"]["prm_shares_policy_model"] is True
    for line in report["lines"]:
        assert line["peak_mb"] > 0 and line["wall_seconds"] > 0
        if line["run"] == "floor":  # one prefill, then one step per token of the calls
            assert line["policy_forwards"] == 1 + line["call_tokens"] and line["prm_tokens"] == 0
        elif line["run"].startswith("beam"):
            assert line["prm_tokens"] > 0 and line["prm_forwards"] > 0
    greedy_tokens = [line["policy_tokens"] for line in report["lines"] if line["run"] == "greedy"]
    floor_tokens = [line["policy_tokens"] for line in report["lines"] if line["run"] == "floor"]
    assert all(f <= g for f, g in zip(floor_tokens, greedy_tokens, strict=True))
    header, _, *rows = table.split("\n\n")[0].splitlines()
    assert header.split("|")[2:-1] == [" greedy ", " floor ", " beam_N1_M2 ", " beam_N1_M3 "]
    by_name = {row.split("|")[1].strip(): row.split("|")[2:-1] for row in rows}
    assert by_name["wall seconds / greedy"][0].strip() == "1.00"
    assert by_name["total tokens / floor"][1].strip() == "1.00"
    assert "resident memory: policy alone" in table and "PRM on the policy's weights: True" in table


def test_the_beam_runs_take_the_relevance_check_unless_told_not_to_and_the_coverage_check_if_told() -> None:
    from langchain_toolprm.evaluation.bench import BenchSettings
    from langchain_toolprm.search.config import Coverage, Relevance

    assert BenchSettings().search(4).relevance == Relevance()
    assert BenchSettings(relevance=False).search(4).relevance is None
    assert BenchSettings().search(4).coverage is None
    assert BenchSettings(coverage=True).search(4).coverage == Coverage()
    assert BenchSettings().search(None).strategy == "greedy"
