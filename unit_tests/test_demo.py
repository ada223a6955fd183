"""The demo's tools, its tree drawing, and ``toolprm demo`` end to end on the tiny model."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from langchain_toolprm.cli import COMMANDS, build_parser, main
from langchain_toolprm.demo import (
    DEMO_TOOLS,
    add_days,
    calculator,
    chosen_path,
    convert_units,
    days_between,
    render_trace,
    run_demo,
    separation,
)


def test_calculator() -> None:
    assert calculator.invoke({"expression": "(12 + 30) * 1.5"}) == "63"
    assert calculator.invoke({"expression": "sqrt(16) + 2 ** 3"}) == "12"
    assert calculator.invoke({"expression": "__import__('os').getcwd()"}).startswith("Error")
    assert calculator.invoke({"expression": "1 / 0"}).startswith("Error")
    assert calculator.invoke({"expression": "9 ** 9 ** 9"}).startswith("Error")


def test_convert_units() -> None:
    assert convert_units.invoke({"value": 26.2, "from_unit": "mile", "to_unit": "kilometer"}).endswith(
        "42.1648 kilometer")
    assert "212 fahrenheit" in convert_units.invoke({"value": 100, "from_unit": "celsius", "to_unit": "fahrenheit"})
    assert convert_units.invoke({"value": 1, "from_unit": "mile", "to_unit": "pound"}).startswith("Error")


def test_dates() -> None:
    assert add_days.invoke({"date": "2024-01-31", "days": 1}) == "2024-02-01 (Thursday)"
    assert add_days.invoke({"date": "31/01/2024", "days": 1}).startswith("Error")
    assert days_between.invoke({"start": "2024-01-01", "end": "2024-03-01"}) == "60 days"


def _node(tag: str | None, text: str, children: list[Any] = (), *, score: float | None = None,
          kept: bool = True, forced: bool = False) -> dict[str, Any]:
    return {"tag": tag, "text": text, "logprob": None if forced else -0.5, "score": score, "kept": kept,
            "forced": forced, "children": list(children)}


CALLS = [{"name": "add_days", "arguments": {"date": "2024-01-31", "days": 1}}]


def _trace() -> dict[str, Any]:
    return _node(None, "", [
        _node("FUNC_NAME", "call add_days", [
            _node("ARG_NAME", "argument date", [
                _node("ARG_VALUE", 'value "2024-01-31"', [
                    _node("ARG_NAME", "argument days", [
                        _node("ARG_VALUE", "value 1", [
                            _node("ARG_END", "end arguments", [
                                _node("FUNC_END", "end call", [_node("TOTAL_FINISH", "finish", score=0.8)],
                                      forced=True),
                            ], forced=True),
                        ], score=0.7),
                    ], forced=True),
                ], score=0.95),
                _node("ARG_VALUE", 'value "2024-13-01"', score=0.2, kept=False),
            ], score=0.9),
        ], score=0.93),
        _node("FUNC_NAME", "call calculator", score=0.31, kept=False),
        _node("TOTAL_FINISH", "finish", score=0.3, kept=False),
    ])


def test_render_trace_marks_the_chosen_path_and_the_pruned() -> None:
    chosen = chosen_path(CALLS, DEMO_TOOLS)
    assert chosen[0] == "call add_days" and chosen[-1] == "finish"
    trace = _trace()
    console = Console(record=True, width=140, color_system=None)
    console.print(render_trace(trace, title="turn 1", chosen=chosen))
    out = console.export_text()
    assert "★ FUNC_NAME    call add_days" in out and "★ ARG_VALUE    value \"2024-01-31\"" in out
    assert out.count("✗ pruned") == 3 and "prm 0.93" in out
    assert "★ ARG_END      end arguments → end call  forced" in out  # forced chains read as one line
    assert "★ TOTAL_FINISH finish" in out
    console = Console(record=True, width=140, color_system=None)
    console.print(render_trace(trace, title="turn 1", chosen=chosen, show_pruned=False))
    out = console.export_text()
    assert "call calculator" not in out and "… 2 pruned" in out


def test_demo_arguments() -> None:
    args = build_parser().parse_args(["demo", "--beams", "3", "--width", "8", "--prm", "none"])
    assert (args.beams, args.width, args.prm, args.question) == (3, 8, "none", None)
    assert main(["demo", "--beams", "0"]) == 1


def test_demo_runs_end_to_end(tiny_model_dir: Path, tiny_policy: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--policy", str(tiny_model_dir), "--prm", "rules", "--beams", "1", "--width", "2",
                 "--max-tokens", "4", "--question", "What is 12 times 7?"])
    assert code == 0
    out = capsys.readouterr().out
    assert "What is 12 times 7?" in out and "turn 1" in out and "answer" in out
    assert "★" in out or "unfinished call" in out  # a random model may not finish a call


def test_separation_names_the_step_where_the_runner_up_leaves_the_winner() -> None:
    runner_up = [{"name": "add_days", "arguments": {"date": "2024-13-01", "days": 1}}]
    console = Console(record=True, width=200, color_system=None)
    console.print(separation(_trace(), CALLS, runner_up, DEMO_TOOLS))
    out = console.export_text()
    assert 'the same 2 steps, then ARG_VALUE value "2024-01-31" (prm 0.95, logp -0.50)' in out
    assert 'over value "2024-13-01" (prm 0.20, logp -0.50)' in out
    bracketed = _trace()
    bracketed["children"][0]["children"][0]["children"][1]["text"] = 'value "[bold]x"'  # not rich markup
    console = Console(record=True, width=200, color_system=None)
    console.print(separation(bracketed, CALLS, [{"name": "add_days", "arguments": {"date": "[bold]x", "days": 1}}],
                             DEMO_TOOLS))
    assert 'over value "[bold]x"' in console.export_text()
    console = Console(record=True, width=200, color_system=None)
    console.print(separation(_trace(), CALLS, [{"name": "days_between", "arguments": {}}], DEMO_TOOLS))
    assert "outside the drawn tree" in console.export_text()  # the runner-up's first step was never drawn


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_shows_every_default(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: None)" not in text and "(default: False)" not in text
    if command == "demo":
        assert "(default: 2)" in text and "(default: qwen2.5-coder-0.5b-instruct)" in text


@pytest.mark.parametrize("terminal", [True, False])
def test_demo_shows_progress_on_a_terminal_only(tiny_model_dir: Path, tiny_policy: Any, terminal: bool) -> None:
    from transformers.utils import logging as hf_logging

    from langchain_toolprm.demo import DemoSettings

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=terminal, width=200, color_system=None)
    run_demo(DemoSettings(policy=str(tiny_model_dir), prm="rules", num_beams=1, beam_width=2, max_tokens=4,
                          question="What is 12 times 7?"), console=console)
    out = stream.getvalue()
    assert "turn 1" in out and "answer" in out
    # The live line (step, candidates, beams, elapsed) is drawn on a terminal; a pipe gets the results only.
    assert ("turn 1 · search step 1" in out) is terminal
    assert ("kept as beams" in out) is terminal
    assert hf_logging.is_progress_bar_enabled()  # transformers' bars are back on after the demo


def test_library_bars_are_off_during_the_demo_only() -> None:
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    from langchain_toolprm.demo import _quiet_library_bars

    gguf_tqdm = gguf_utils.tqdm
    with _quiet_library_bars():
        assert not hf_logging.is_progress_bar_enabled()
        assert gguf_utils.tqdm(range(3)).disable
    assert hf_logging.is_progress_bar_enabled() and gguf_utils.tqdm is gguf_tqdm


def _turn(prm_candidates: int) -> Any:
    from langchain_core.messages import AIMessage

    runner_up = [{"name": "add_days", "arguments": {"date": "2024-13-01", "days": 1}}]
    toolprm = {"strategy": "beam", "aggregation": "min", "score": 0.7, "logprob": -1.5, "trace": _trace(),
               "cost": {"wall_seconds": 1.0, "policy_forwards": 3, "prm_candidates": prm_candidates},
               "alternatives": [{"calls": runner_up, "score": 0.7, "logprob": -1.7}]}
    return AIMessage("", tool_calls=[{"name": c["name"], "args": c["arguments"], "id": "c1"} for c in CALLS],
                     response_metadata={"toolprm": toolprm})


def test_turn_header_says_what_the_score_is_and_what_separates_the_runner_up() -> None:
    from langchain_toolprm.demo import _print_turn

    console = Console(record=True, width=300, color_system=None)
    _print_turn(console, _turn(prm_candidates=6), 1)
    out = console.export_text()
    assert "path score 0.70 (min: the lowest PRM step score on the path)" in out
    assert 'then ARG_VALUE value "2024-01-31" (prm 0.95, logp -0.50) over value "2024-13-01"' in out
    assert "equal path scores: the policy's log-probability of the whole path broke the tie (-1.50 over -1.70)" in out
    console = Console(record=True, width=300, color_system=None)
    _print_turn(console, _turn(prm_candidates=0), 1)  # nothing was scored (a forced turn): no score to explain
    assert "path score" not in console.export_text().split("runner-up")[0]


def test_threads_default_to_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from langchain_toolprm.cli_options import thread_count

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # torch's default: the physical cores
    monkeypatch.setattr("os.getloadavg", lambda: (7.4, 7.0, 6.0))
    assert thread_count(None) == 1  # a busy machine: one thread
    monkeypatch.setattr("os.getloadavg", lambda: (5.0, 5.0, 5.0))
    assert thread_count(None) == 3
    monkeypatch.setattr("os.getloadavg", lambda: (0.1, 0.1, 0.1))
    assert thread_count(None) == 4  # an idle machine: torch's own choice
    assert thread_count(6) == 6  # asked for: as asked
    with pytest.raises(ValueError, match="--threads"):
        thread_count(0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert thread_count(None) is None  # the environment asked already; torch has read it
