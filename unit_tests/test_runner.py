"""The eval loop on synthetic BFCL and record files with a deterministic fake policy (no model)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from langchain_toolprm.cli import main
from langchain_toolprm.evaluation.runner import (
    EvalConfig,
    RunSpec,
    load_cases,
    load_results,
    render_summary,
    run_eval,
    summarize,
    summary_markdown,
)
from langchain_toolprm.formats import HermesFormat
from langchain_toolprm.lm import Sample, StopFn, Usage
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.policy.base import Policy, PolicySession
from langchain_toolprm.prm.rules import RulePRM
from langchain_toolprm.search.config import Guidance
from langchain_toolprm.tools import ToolSpec

# --------------------------------------------------------------------------------------------------
# A policy that writes one fixed answer per question, in Hermes format
# --------------------------------------------------------------------------------------------------


def _hermes(calls: Sequence[dict[str, Any]]) -> str:
    """Text as the grammar renders it, so the fake's preferred continuations are the grammar's steps."""
    blocks = []
    for i, call in enumerate(calls):
        args = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in call["arguments"].items())
        blocks.append(("" if i == 0 else "\n") + '<tool_call>\n{"name": ' + json.dumps(call["name"])
                      + ', "arguments": {' + args + "}}\n</tool_call>")
    return "".join(blocks) or "Sorry, no tool fits."


class FakeSession(PolicySession):
    def __init__(self, target: str, prompt: str):
        self.format = self.native_format = HermesFormat()
        self.prompt = prompt
        self.target = target
        self.usage = Usage()
        self.usage.add(len(prompt) // 4 + 1)

    def token_logprobs(self, items: Sequence[tuple[str, str]]) -> list[list[float]]:
        self.usage.add(sum(len(c) for _, c in items))
        out = []
        for text, continuation in items:
            good = self.target.startswith(text + continuation)
            out.append([-0.01 if good else -4.0] * max(1, len(continuation) // 4))
        return out

    def sample(self, assistant_text: str, n: int, *, temperature: float, max_new_tokens: int,
               stop: StopFn | None = None) -> list[Sample]:
        rest = self.target[len(assistant_text):] if self.target.startswith(assistant_text) else ' "off"}}'
        end = stop(rest) if stop is not None else len(rest)
        text = rest if end is None else rest[:end]
        self.usage.add(len(text) * n)
        return [Sample(text, tuple(ord(ch) for ch in text), -0.1, end is not None) for _ in range(n)]


class FakePolicy(Policy):
    name = "fake"

    def __init__(self, answers: dict[str, list[dict[str, Any]]]):
        self.answers = answers
        self.sessions: list[str] = []

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], *, seed: int | None = None
                ) -> PolicySession:
        question = str(messages[-1]["content"])
        self.sessions.append(question)
        return FakeSession(_hermes(self.answers.get(question, [])), question)


# --------------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------------

AREA = {
    "name": "area",
    "description": "Area of a rectangle.",
    "parameters": {"type": "dict", "properties": {"width": {"type": "integer"}, "height": {"type": "float"}},
                   "required": ["width", "height"]},
}
WEATHER = {
    "name": "weather",
    "description": "Weather in a city.",
    "parameters": {"type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}

def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


SIMPLE = [  # (question, tool, ground truth, what the fake policy answers)
    ("area 2 by 3", AREA, {"area": {"width": [2], "height": [3.0]}}, [_call("area", width=2, height=3)]),
    ("area 4 by 5", AREA, {"area": {"width": [4], "height": [5.0]}}, [_call("area", width=4, height=6)]),
    ("weather Paris", WEATHER, {"weather": {"city": ["Paris"]}}, [_call("weather", city="Paris")]),
    ("weather Rome", WEATHER, {"weather": {"city": ["Rome"]}}, []),
]
IRRELEVANT = [("tell a joke", WEATHER, []), ("weather Oslo", WEATHER, [_call("weather", city="Oslo")])]
ANSWERS = {q: a for q, *_, a in SIMPLE} | {q: a for q, _, a in IRRELEVANT}


def _write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(i) + "\n" for i in items))


@pytest.fixture
def bfcl_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bfcl"
    simple = [{"id": f"simple_python_{i}", "question": [[{"role": "user", "content": q}]], "function": [tool]}
              for i, (q, tool, _, _) in enumerate(SIMPLE)]
    _write_jsonl(folder / "BFCL_v4_simple_python.json", simple)
    _write_jsonl(folder / "possible_answer" / "BFCL_v4_simple_python.json",
                 [{"id": f"simple_python_{i}", "ground_truth": [gt]} for i, (_, _, gt, _) in enumerate(SIMPLE)])
    irrelevant = [{"id": f"irrelevance_{i}", "question": [[{"role": "user", "content": q}]], "function": [tool]}
                  for i, (q, tool, _) in enumerate(IRRELEVANT)]
    _write_jsonl(folder / "BFCL_v4_irrelevance.json", irrelevant)
    return folder


def _config(data: Path, out: Path, **kw: Any) -> EvalConfig:
    base: dict[str, Any] = {"data": str(data), "output": str(out), "policy": "fake", "strategies": ["greedy", "beam"],
                            "beams": [1, 2], "widths": [2], "temperature": 0.0, "progress": False}
    return EvalConfig(**(base | kw))


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def test_grid_expands_into_runs() -> None:
    config = EvalConfig(strategies=["beam", "majority", "greedy", "unconstrained", "best_of_n"],
                        beams=[1, 2], widths=[2, 4])
    names = [r.name for r in config.runs()]
    assert names == ["unconstrained", "greedy", "majority_n2", "majority_n4", "majority_n8",
                     "best_of_n_n2", "best_of_n_n4", "best_of_n_n8",
                     "beam_N1_M2", "beam_N1_M4", "beam_N2_M2", "beam_N2_M4"]
    assert all(RunSpec.from_name(r.name) == r for r in config.runs())
    explicit = EvalConfig(strategies=["majority"], samples=[3, 3, 5]).runs()
    assert [r.num_samples for r in explicit] == [3, 5]
    sc = RunSpec("beam", 2, 8).search_config(EvalConfig(seed=7, temperature=0.5))
    assert (sc.strategy, sc.num_beams, sc.beam_width, sc.seed, sc.temperature) == ("beam", 2, 8, 7, 0.5)
    with pytest.raises(ValueError):
        EvalConfig(beams=[0])


def test_adaptive_beam_runs_beside_the_fixed_ones_with_its_own_settings() -> None:
    config = EvalConfig(strategies=["beam_adaptive", "beam"], beams=[2], widths=[4, 8],
                        adaptive={"policy_mass": 0.8, "score_margin": 0.1})
    runs = config.runs()
    assert [r.name for r in runs] == ["beam_N2_M4", "beam_N2_M8", "beam_adaptive_N2_M4", "beam_adaptive_N2_M8"]
    assert all(RunSpec.from_name(r.name) == r and r.uses_prm for r in runs)
    fixed, adaptive = runs[1].search_config(config), runs[3].search_config(config)
    assert fixed.strategy == adaptive.strategy == "beam" and fixed.adaptive is None
    assert adaptive.adaptive is not None and adaptive.adaptive.policy_mass == 0.8
    assert (adaptive.num_beams, adaptive.beam_width) == (2, 8)
    assert RunSpec("beam_adaptive", 1, 2).search_config(EvalConfig()).adaptive is not None  # the defaults
    assert config.fingerprint()["adaptive"] == {"policy_mass": 0.8, "score_margin": 0.1}
    with pytest.raises(ValueError):
        EvalConfig(strategies=["nope"])


def test_loads_default_categories_from_a_folder(bfcl_dir: Path) -> None:
    cases = load_cases(EvalConfig(data=str(bfcl_dir)))
    assert [c.category for c in cases] == ["simple_python"] * 4 + ["irrelevance"] * 2
    assert len(load_cases(EvalConfig(data=str(bfcl_dir), categories=["irrelevance"], limit=1))) == 1


def test_eval_writes_predictions_manifest_and_summary(bfcl_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    policy = FakePolicy(ANSWERS)
    # the fake policy is sure of every step: the PRM is asked anyway, so that its cost is counted
    summary = run_eval(_config(bfcl_dir, out, guidance=Guidance(policy_sure=None)), policy=policy, prm=RulePRM())
    written = sorted(p.name for p in out.iterdir() if p.name != ".lock")
    assert written == ["beam_N1_M2.jsonl", "beam_N2_M2.jsonl", "greedy.jsonl",
                       "manifest.json", "summary.json"]
    lines = [json.loads(line) for line in (out / "greedy.jsonl").read_text().splitlines()]
    ids = [f"simple_python_{i}" for i in range(4)] + ["irrelevance_0", "irrelevance_1"]
    assert [line["id"] for line in lines] == ids
    first = lines[0]
    assert first["calls"] == [{"name": "area", "arguments": {"width": 2, "height": 3}}]
    assert set(first["cost"]) >= {"policy_tokens", "prm_candidates", "wall_seconds"}
    # The fake answers right on simple 0, 2 and irrelevance 0; wrong value on 1; no call on 3; a call on irrelevance 1.
    assert [line["correct"] for line in lines] == [True, False, True, False, True, False]
    assert lines[1]["error_type"] == "value_error:others"
    greedy = summary.run("greedy")
    assert greedy.accuracy == {"irrelevance": 0.5, "simple_python": 0.5, "overall": 0.5}
    assert greedy.cases == 6 and greedy.prm is None and greedy.prm_candidates == 0
    assert greedy.policy_tokens == pytest.approx(sum(line["cost"]["policy_tokens"] for line in lines) / 6)
    beam = summary.run("beam_N2_M2")
    assert beam.prm == "rules" and beam.prm_candidates > 0 and (beam.num_beams, beam.beam_width) == (2, 2)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["policy_name"] == "fake" and manifest["cases"] == 6
    assert manifest["runs"]["beam_N1_M2"]["prm"] == "rules" and manifest["runs"]["greedy"]["prm"] is None
    assert json.loads((out / "summary.json").read_text())["runs"][0]["name"] == "greedy"


def test_two_evals_share_a_folder_with_their_own_runs(bfcl_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One eval per core, each its own runs, one folder: the manifest and the summary hold both.

    Reading the manifest is slowed down so that, without the lock, both evals would read it before
    either writes it, and the later write would drop the other's runs.
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    from langchain_toolprm.evaluation import store

    read = store.check_manifest

    def slow_read(*args: object) -> object:
        found = read(*args)  # type: ignore[arg-type]
        time.sleep(0.3)
        return found

    monkeypatch.setattr(store, "check_manifest", slow_read)
    out = tmp_path / "out"
    configs = [_config(bfcl_dir, out, strategies=["greedy"]), _config(bfcl_dir, out, strategies=["beam"])]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda c: run_eval(c, policy=FakePolicy(ANSWERS), prm=RulePRM()), configs))
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["runs"]) == ["beam_N1_M2", "beam_N2_M2", "greedy"]
    summary = run_eval(configs[0], policy=FakePolicy(ANSWERS), prm=RulePRM())  # nothing left: summarises
    assert [r.name for r in summary.runs] == ["greedy", "beam_N1_M2", "beam_N2_M2"]


def test_resume_skips_finished_cases_and_repairs_a_cut_line(bfcl_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = _config(bfcl_dir, out, strategies=["greedy"])
    run_eval(config, policy=FakePolicy(ANSWERS), prm=RulePRM())
    greedy = out / "greedy.jsonl"
    full = greedy.read_text().splitlines(keepends=True)
    # Simulate a run killed mid-write: three whole lines and half of the fourth.
    greedy.write_text("".join(full[:3]) + full[3][: len(full[3]) // 2])
    policy = FakePolicy(ANSWERS)
    summary = run_eval(config, policy=policy, prm=RulePRM())
    assert policy.sessions == ["weather Rome", "tell a joke", "weather Oslo"]  # only the unfinished cases
    def timeless(lines: list[str]) -> list[dict[str, Any]]:
        items = [json.loads(line) for line in lines]
        for item in items:
            item["cost"].pop("wall_seconds")
        return items

    assert timeless(greedy.read_text().splitlines()) == timeless(full)  # same lines, no duplicates
    assert summary.run("greedy").cases == 6
    # A third run has nothing left to do and loads no model.
    again = FakePolicy(ANSWERS)
    run_eval(config, policy=again, prm=RulePRM())
    assert again.sessions == []


def test_an_interrupted_eval_still_summarises_its_finished_cases(bfcl_dir: Path, tmp_path: Path) -> None:
    class Interrupted(FakePolicy):
        def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], *, seed: int | None = None
                    ) -> PolicySession:
            if len(self.sessions) == 2:
                raise KeyboardInterrupt  # Ctrl-C during the third case: not an engine error, the eval stops
            return super().session(messages, specs, seed=seed)

    out = tmp_path / "out"
    config = _config(bfcl_dir, out, strategies=["greedy"])
    with pytest.raises(KeyboardInterrupt):
        run_eval(config, policy=Interrupted(ANSWERS))
    written = json.loads((out / "summary.json").read_text())
    assert [(r["name"], r["cases"]) for r in written["runs"]] == [("greedy", 2)]
    assert run_eval(config, policy=FakePolicy(ANSWERS)).run("greedy").cases == 6  # and resumes from there


def test_a_terminated_eval_command_still_summarises_its_finished_cases(
        bfcl_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminated(FakePolicy):
        def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], *, seed: int | None = None
                    ) -> PolicySession:
            if len(self.sessions) == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # `kill PID` during the third case
            return super().session(messages, specs, seed=seed)

    monkeypatch.setattr("langchain_toolprm.components.load_policy", lambda ref: Terminated(ANSWERS))

    def outside(signum: int, frame: object) -> None:  # stands in for the default, which would end pytest
        raise AssertionError("SIGTERM reached the handler outside the command")

    out = tmp_path / "out"
    before = signal.signal(signal.SIGTERM, outside)
    try:
        with pytest.raises(SystemExit) as stopped:
            main(["eval", "--data", str(bfcl_dir), "--output", str(out), "--strategies", "greedy", "--no-progress"])
        assert signal.getsignal(signal.SIGTERM) is outside  # the command's handler does not outlive it
    finally:
        signal.signal(signal.SIGTERM, before)
    assert stopped.value.code == 128 + signal.SIGTERM
    written = json.loads((out / "summary.json").read_text())
    assert [(r["name"], r["cases"]) for r in written["runs"]] == [("greedy", 2)]


def test_resume_refuses_other_settings(bfcl_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    run_eval(_config(bfcl_dir, out, strategies=["greedy"]), policy=FakePolicy(ANSWERS))
    monkeypatch.chdir(tmp_path)  # the same data named by a relative path is the same data
    run_eval(_config(Path("bfcl"), out, strategies=["greedy"]), policy=FakePolicy(ANSWERS))
    with pytest.raises(ValueError, match="seed"):
        run_eval(_config(bfcl_dir, out, strategies=["greedy"], seed=1), policy=FakePolicy(ANSWERS))
    with pytest.raises(ValueError, match="policy: 'fake' -> 'no-such-model'"):  # refused before any loading
        run_eval(_config(bfcl_dir, out, strategies=["greedy", "unconstrained"], policy="no-such-model"))
    # Adding runs to the grid is fine: only the new run computes.
    policy = FakePolicy(ANSWERS)
    summary = run_eval(_config(bfcl_dir, out, strategies=["greedy", "unconstrained"]), policy=policy)
    assert len(policy.sessions) == 6
    assert [r.name for r in summary.runs] == ["unconstrained", "greedy"]
    unconstrained = summary.run("unconstrained")
    assert unconstrained.lenient_accuracy is not None
    assert unconstrained.accuracy["overall"] == pytest.approx(3 / 6)


def test_engine_errors_count_as_wrong(bfcl_dir: Path, tmp_path: Path) -> None:
    class Broken(FakePolicy):
        def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], *, seed: int | None = None
                    ) -> PolicySession:
            raise RuntimeError("boom")

    summary = run_eval(_config(bfcl_dir, tmp_path / "out", strategies=["greedy"]), policy=Broken({}))
    greedy = summary.run("greedy")
    assert greedy.errors == 6 and greedy.accuracy["overall"] == 0.0  # irrelevance included: no free passes
    line = next(iter(load_results(tmp_path / "out")["greedy"]))
    assert line["error"] == "RuntimeError: boom"


def test_record_form_is_scored_by_exact_match_and_prf(tmp_path: Path) -> None:
    tools = [{"name": "add", "description": "Add.", "parameters": {
        "a": {"type": "int", "description": "first"}, "b": {"type": "int, optional", "default": 0}}}]
    records = [
        {"id": "r1", "query": "add 1 and 2", "tools": json.dumps(tools),
         "answers": json.dumps([{"name": "add", "arguments": {"a": 1, "b": 2}}])},
        {"id": "r2", "query": "add 3 and 4", "tools": tools, "answers": [_call("add", a=3, b=4)]},
        {"id": "r3", "query": "hello", "tools": tools, "answers": []},
    ]
    data = tmp_path / "records.jsonl"
    _write_jsonl(data, records)
    answers = {"add 1 and 2": [{"name": "add", "arguments": {"a": 1, "b": 2}}],
               "add 3 and 4": [{"name": "add", "arguments": {"a": 3, "b": 5}}]}
    summary = run_eval(_config(data, tmp_path / "out", strategies=["greedy"]), policy=FakePolicy(answers))
    greedy = summary.run("greedy")
    assert summary.categories == ["records"]
    assert greedy.accuracy["records"] == pytest.approx(2 / 3)
    assert greedy.records is not None
    assert greedy.records["exact_match"] == pytest.approx(2 / 3)
    assert greedy.records["api_f1"] == pytest.approx(1.0)
    assert greedy.records["args_precision"] == pytest.approx(3 / 4)
    assert "API F1" in summary_markdown(summary)


def test_summary_renders_and_reads_back_from_files(bfcl_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    written = run_eval(_config(bfcl_dir, out), policy=FakePolicy(ANSWERS), prm=RulePRM())
    again = summarize(out)
    assert again.to_dict() == written.to_dict()
    from rich.console import Console

    render_summary(again, Console(width=200, force_terminal=False))
    printed = capsys.readouterr().out
    assert "simple_python" in printed and "beam_N2_M2" in printed and "policy tokens" in printed
    table = summary_markdown(again)
    assert table.splitlines()[0].startswith("| run | PRM | cases | irrelevance | simple_python | overall")


def test_cli_reports_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--data", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o"),
                 "--no-progress"]) == 1
    assert "missing.jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--strategies", "nope"])
