"""The budget figure, drawn from hand-written result folders (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_toolprm.cli import main
from langchain_toolprm.evaluation.plots import budget_figure, plot_budget
from langchain_toolprm.evaluation.runner import RunSpec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result_folder(folder: Path, runs: dict[str, tuple[int, int]]) -> Path:
    """A result folder: per run, ``(correct cases out of 4, policy tokens per case)``."""
    folder.mkdir(parents=True)
    meta = {}
    for name, (correct, tokens) in runs.items():
        spec = RunSpec.from_name(name)
        meta[name] = {"strategy": spec.strategy, "file": f"{name}.jsonl", "prm": "rules" if spec.uses_prm else None}
        lines = [
            {"id": f"simple_python_{i}", "category": "simple_python", "calls": [], "correct": i < correct,
             "cost": {"policy_tokens": tokens, "prm_candidates": 10 if spec.uses_prm else 0, "wall_seconds": 0.5}}
            for i in range(4)
        ]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "manifest.json").write_text(json.dumps({"policy_name": "fake", "runs": meta}))
    return folder


RUNS = {
    "greedy": (1, 300),
    "unconstrained": (0, 350),
    "majority_n4": (2, 900),
    "beam_N1_M2": (2, 500),
    "beam_N1_M4": (3, 800),
    "beam_N2_M2": (2, 900),
    "beam_N2_M4": (4, 1500),
}


def test_plot_has_one_line_per_fixed_n_and_per_fixed_m(tmp_path: Path) -> None:
    folder = _result_folder(tmp_path / "a", RUNS)
    figure = budget_figure([folder])
    left, right = figure.axes
    left_labels = [line.get_label() for line in left.get_lines()]
    right_labels = [line.get_label() for line in right.get_lines()]
    assert left_labels == ["beam N=1", "beam N=2", "majority", "unconstrained", "greedy"]
    assert right_labels == ["beam M=2", "beam M=4", "majority", "unconstrained", "greedy"]
    n1 = left.get_lines()[0]
    assert list(n1.get_xdata()) == [500, 800] and list(n1.get_ydata()) == [50.0, 75.0]
    m4 = right.get_lines()[1]
    assert list(m4.get_xdata()) == [800, 1500] and list(m4.get_ydata()) == [75.0, 100.0]
    assert left.get_xscale() == "log"


def test_adaptive_beam_is_its_own_line_on_both_panels(tmp_path: Path) -> None:
    folder = _result_folder(tmp_path / "a", {**RUNS, "beam_adaptive_N2_M4": (3, 700), "beam_adaptive_N2_M8": (4, 1000)})
    for ax in budget_figure([folder]).axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        adaptive = lines["adaptive beam (caps)"]
        assert list(adaptive.get_xdata()) == [700, 1000] and list(adaptive.get_ydata()) == [75.0, 100.0]
        assert not any(label.startswith("beam") and "=" in label and 700 in line.get_xdata()
                       for label, line in lines.items())


def test_plot_writes_a_png_from_several_folders(tmp_path: Path) -> None:
    a = _result_folder(tmp_path / "rules", RUNS)
    b = _result_folder(tmp_path / "learned", {"beam_N1_M2": (3, 520), "greedy": (1, 300)})
    path = plot_budget([a, b], tmp_path / "figs" / "budget.png", x="prm_candidates", category="simple_python")
    assert path.read_bytes().startswith(PNG_MAGIC)
    labels = [line.get_label() for line in budget_figure([a, b]).axes[0].get_lines()]
    assert "rules: beam N=1" in labels and "learned: beam N=1" in labels
    assert budget_figure([a], x="prm_candidates").axes[0].get_xscale() == "symlog"  # greedy spent no PRM


def test_plot_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _result_folder(tmp_path / "a", RUNS)
    out = tmp_path / "fig.png"
    assert main(["plot", str(folder), "--output", str(out), "--x", "wall_seconds"]) == 0
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert str(out) in capsys.readouterr().out


def test_plot_rejects_empty_results_and_unknown_axes(tmp_path: Path) -> None:
    empty = _result_folder(tmp_path / "empty", {})
    with pytest.raises(ValueError, match="No predictions"):
        plot_budget([empty], tmp_path / "x.png")
    with pytest.raises(ValueError, match="cost axis"):
        plot_budget([empty], tmp_path / "x.png", x="joules")  # type: ignore[arg-type]
    assert main(["plot", str(tmp_path / "nowhere"), "--output", str(tmp_path / "y.png")]) == 1


def test_total_tokens_axis_adds_the_prm_tokens(tmp_path: Path) -> None:
    folder = _result_folder(tmp_path / "a", {"greedy": (1, 300), "beam_N2_M4": (4, 1500)})
    beam = folder / "beam_N2_M4.jsonl"
    lines = [json.loads(line) for line in beam.read_text().splitlines()]
    beam.write_text("".join(json.dumps({**x, "cost": {**x["cost"], "prm_tokens": 500}}) + "\n" for x in lines))
    left, _ = budget_figure([folder], x="total_tokens").axes
    lines_by_label = {line.get_label(): line for line in left.get_lines()}
    assert list(lines_by_label["beam N=2"].get_xdata()) == [2000]
    assert list(lines_by_label["greedy"].get_xdata()) == [300]
    assert left.get_xlabel() == "policy + PRM tokens per case (mean)"
