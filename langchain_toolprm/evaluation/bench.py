"""``toolprm bench``: what the search costs against greedy and against the physical floor, in one process.

One process, one policy model, a fixed set of BFCL cases: greedy first (the policy alone in memory),
then the PRM is loaded (on the policy's weights when it is a LoRA of the same model) and beam runs
at each width. The floor of a case is one prefill of the prompt plus one decoding step per token of
the calls greedy chose, timed on the same model: no search, no grammar, nothing a decoder could skip.
Every ratio comes from the same run, so a shared or slow machine changes the times but much less
the ratios, which are the claim.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from langchain_toolprm.models.registry import DEFAULT_POLICY
from langchain_toolprm.search.config import Coverage, Guidance, Relevance, SearchConfig

if TYPE_CHECKING:
    from langchain_toolprm.evaluation.cases import EvalCase
    from langchain_toolprm.policy.transformers import TransformersPolicy
    from langchain_toolprm.search.results import SearchResult

__all__ = ["BenchSettings", "bench_table", "run_bench"]

GREEDY, FLOOR = "greedy", "floor"


class BenchSettings(BaseModel):
    """What ``toolprm bench`` runs; every field is a command-line option of the same name (`langchain_toolprm.cli`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str | None = Field(None, description="BFCL data folder (default: the installed bfcl-eval package's)")
    category: str = Field("simple_python", description="the BFCL category the cases come from")
    limit: int = Field(10, ge=1, description="how many cases: the first ones of the category")
    policy: str = Field(DEFAULT_POLICY, description="policy model reference")
    prm: str = Field("default", description="PRM reference for the beam runs")
    beams: int = Field(2, ge=1, description="N of the beam runs (beams kept)")
    widths: list[int] = Field(default_factory=lambda: [4, 8], description="M of each beam run (candidates per beam)")
    greedy_values: bool = Field(SearchConfig.model_fields["greedy_values"].default,
                                description="the beam runs' " + (SearchConfig.model_fields["greedy_values"].description
                                                                 or ""))
    policy_sure: float | None = Field(Guidance.model_fields["policy_sure"].default, gt=0.5, le=1.0,
                                      description="the beam runs' " + (Guidance.model_fields["policy_sure"].description
                                                                       or ""))
    relevance: bool = Field(True, description="the beam runs' relevance check at its defaults (SearchConfig.relevance;"
                            " off: the PRM and the policy alone decide \"call or answer in text?\")")
    coverage: bool = Field(False, description="the beam runs' coverage check at its defaults (SearchConfig.coverage;"
                           " off, as in the library: the PRM and the policy alone decide \"one more call?\")")
    output: str | None = Field(None, description="JSON file for the settings, memory and per-case figures")
    threads: int | None = Field(None, ge=1, description="torch threads (default: torch's, or $OMP_NUM_THREADS)")

    def search(self, width: int | None) -> SearchConfig:
        """Greedy for ``None``, else beam at N=`beams`, M=``width``; the rest the library's defaults."""
        if width is None:
            return SearchConfig(strategy="greedy")
        return SearchConfig(strategy="beam", num_beams=self.beams, beam_width=width, greedy_values=self.greedy_values,
                            guidance=Guidance(policy_sure=self.policy_sure),
                            relevance=Relevance() if self.relevance else None,
                            coverage=Coverage() if self.coverage else None)


def _rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last `_reset_peak`) in MB; the process peak elsewhere."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024


def _load_average() -> float | None:
    """The 1-minute load average (what else was running), ``None`` where the platform has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _reset_peak() -> None:
    """Start a new peak (Linux: writing 5 to ``clear_refs`` resets ``VmHWM``); elsewhere it stays the process's."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _case_line(run: str, case: EvalCase, seconds: float, result: SearchResult | None, floor: dict[str, int] | None
               ) -> dict[str, Any]:
    line: dict[str, Any] = {"run": run, "case": case.id, "wall_seconds": round(seconds, 3)}
    if result is not None:
        cost = result.cost
        line |= {"policy_tokens": cost.policy_tokens, "prm_tokens": cost.prm_tokens,
                 "policy_forwards": cost.policy_forwards, "prm_forwards": cost.prm_forwards,
                 "correct": case.grade(result.calls)[0]}
    else:
        assert floor is not None
        line |= {**floor, "prm_tokens": 0, "prm_forwards": 0}
    line["peak_mb"] = round(_rss_mb("VmHWM"), 1)
    return line


def _cold(policy: TransformersPolicy, prm: Any) -> None:
    """Forget the prompts the models remember (`lm.RootMemory`), so no run reads one another run encoded.

    Each run then pays its whole prompt, as a first call would; a process that serves many requests
    pays less (docs/benchmarks.md, session 27).
    """
    from langchain_toolprm.lm import ScoringLM

    for lm in (policy.lm, getattr(prm, "lm", None)):
        if isinstance(lm, ScoringLM):
            lm.roots.clear()


def _floor(policy: TransformersPolicy, case: EvalCase, result: SearchResult) -> dict[str, int]:
    """One prefill of the prompt, then one decoding step (head and argmax included) per token of the chosen calls."""
    import torch

    from langchain_toolprm.formats import get_format
    from langchain_toolprm.grammar import Call, GrammarState
    from langchain_toolprm.lm import Usage
    from langchain_toolprm.messages import to_chat_messages
    from langchain_toolprm.tools import to_tool_specs

    lm = policy.lm
    fmt = get_format(result.format, lm.end_of_turn) if result.format else policy.native_format
    calls = tuple(Call(c["name"], tuple((k, json.dumps(v)) for k, v in c["arguments"].items())) for c in result.calls)
    text = fmt.render(GrammarState(calls=calls, done=True)) if calls else (result.text or "")
    usage = Usage()
    prefix = lm.prefix(policy.render_prompt(to_chat_messages(case.messages), to_tool_specs(case.tools), fmt), usage)
    tokens = lm.encode(text)
    with lm._lock:
        cache = lm._cache(prefix.kv, len(prefix.ids), 1)
        logits = lm._logits(prefix.last_hidden[None])
        for token in tokens:
            logits.argmax(-1)  # what choosing the token costs a decoder
            hidden = lm._hidden(torch.tensor([[token]]), cache, usage)
            logits = lm._logits(hidden[:, -1])
    return {"policy_tokens": usage.tokens, "policy_forwards": usage.forwards, "call_tokens": len(tokens)}


def run_bench(settings: BenchSettings, *, cases: Sequence[EvalCase] | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Greedy, the floor, then beam at each width, case by case; the figures as `bench_table` reads them.

    Raises:
        FileNotFoundError: No data given and no bfcl-eval installed, or a missing file.
        TypeError: The policy is not a local transformers model (the floor is timed on its weights).

    """
    from langchain_toolprm.components import load_policy, load_prm
    from langchain_toolprm.evaluation.cases import load_cases
    from langchain_toolprm.evaluation.config import EvalConfig
    from langchain_toolprm.policy.transformers import TransformersPolicy
    from langchain_toolprm.search.run import run_search

    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    if cases is None:
        cases = load_cases(EvalConfig(data=settings.data, categories=[settings.category], limit=settings.limit))
    cases = list(cases)[: settings.limit]
    load_at_start, start_mb = _load_average(), _rss_mb("VmRSS")
    policy = load_policy(settings.policy)
    if not isinstance(policy, TransformersPolicy):
        raise TypeError(f"toolprm bench times a local model; {settings.policy!r} is a {type(policy).__name__}.")
    lines: list[dict[str, Any]] = []

    def timed(run: str, case: EvalCase, config: SearchConfig, prm: Any) -> SearchResult:
        _cold(policy, prm)
        _reset_peak()
        began = time.perf_counter()
        result = run_search(case.messages, case.tools, policy=policy, prm=prm, config=config)
        lines.append(_case_line(run, case, time.perf_counter() - began, result, None))
        return result

    def say(text: str) -> None:
        if progress:
            print(text, file=sys.stderr, flush=True)

    run_search(cases[0].messages, cases[0].tools, policy=policy, config=settings.search(None))  # warm-up, not counted
    memory: dict[str, Any] = {"start_mb": round(start_mb, 1), "policy_mb": round(_rss_mb("VmRSS"), 1)}
    for i, case in enumerate(cases, 1):
        result = timed(GREEDY, case, settings.search(None), None)
        _cold(policy, None)
        _reset_peak()
        began = time.perf_counter()
        floor = _floor(policy, case, result)
        lines.append(_case_line(FLOOR, case, time.perf_counter() - began, None, floor))
        say(f"{GREEDY} {i}/{len(cases)} {case.id}: {lines[-2]['wall_seconds']:.1f} s, floor "
            f"{lines[-1]['wall_seconds']:.1f} s")
    prm = load_prm(settings.prm, policy)
    memory["policy_and_prm_mb"] = round(_rss_mb("VmRSS"), 1)
    memory["prm_shares_policy_model"] = getattr(getattr(prm, "lm", None), "model", None) is policy.lm.model
    for width in settings.widths:
        config = settings.search(width)
        for i, case in enumerate(cases, 1):
            timed(f"beam_N{settings.beams}_M{width}", case, config, prm)
            say(f"beam M={width} {i}/{len(cases)} {case.id}: {lines[-1]['wall_seconds']:.1f} s")
    import torch

    return {"settings": settings.model_dump(), "cases": [c.id for c in cases], "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "load_average": {"start": load_at_start, "end": _load_average()},
            "memory": memory, "lines": lines}


_COLUMNS = ("wall_seconds", "policy_tokens", "prm_tokens", "total_tokens", "forwards", "peak_mb")


def _means(lines: list[dict[str, Any]]) -> dict[str, float]:
    count = len(lines)
    sums = {"wall_seconds": sum(x["wall_seconds"] for x in lines),
            "policy_tokens": sum(x["policy_tokens"] for x in lines),
            "prm_tokens": sum(x["prm_tokens"] for x in lines),
            "forwards": sum(x["policy_forwards"] + x["prm_forwards"] for x in lines),
            "peak_mb": sum(x["peak_mb"] for x in lines)}
    sums["total_tokens"] = sums["policy_tokens"] + sums["prm_tokens"]
    return {k: v / count for k, v in sums.items()}


def bench_table(report: dict[str, Any]) -> str:
    """The per-case means of each run and their ratios to greedy and to the floor, as Markdown."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for line in report["lines"]:
        runs.setdefault(line["run"], []).append(line)
    means = {run: _means(lines) for run, lines in runs.items()}
    header = ["per case (mean)", *means]
    rows = [header, ["---", *["---:"] * len(means)]]
    for column in _COLUMNS:
        rows.append([column.replace("_", " "), *[f"{m[column]:.1f}" if column in ("wall_seconds", "peak_mb")
                                                 else f"{m[column]:.0f}" for m in means.values()]])
    for base in (GREEDY, FLOOR):
        for column in ("wall_seconds", "total_tokens", "forwards", "peak_mb"):
            denominator = means[base][column]
            rows.append([f"{column.replace('_', ' ')} / {base}",
                         *[f"{m[column] / denominator:.2f}" if denominator else "-" for m in means.values()]])
    correct = ["correct", *[f"{sum(x['correct'] for x in runs[r])}/{len(runs[r])}" if r != FLOOR else "-"
                            for r in means]]
    rows.append(correct)
    memory = report["memory"]
    ratio = memory["policy_and_prm_mb"] / memory["policy_mb"]
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    return (f"{table}\n\nresident memory: policy alone {memory['policy_mb']:.0f} MB, policy and PRM "
            f"{memory['policy_and_prm_mb']:.0f} MB ({ratio:.2f}x; PRM on the policy's weights: "
            f"{memory['prm_shares_policy_model']}); {report['threads']} torch threads, 1-minute load average "
            f"{_num(report['load_average']['start'])} at start, {_num(report['load_average']['end'])} at end")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
