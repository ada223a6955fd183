"""Eval summaries as tables: a rich table for the terminal, Markdown for docs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from langchain_toolprm.evaluation.summary import EvalSummary

if TYPE_CHECKING:
    from langchain_toolprm.train.evaluate import EvalResult


def _percent(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _table_rows(summary: EvalSummary) -> tuple[list[str], list[list[str]]]:
    has_lenient = any(r.lenient_accuracy for r in summary.runs)
    has_records = any(r.records for r in summary.runs)
    headers = ["run", "PRM", "cases", *summary.categories]
    if len(summary.categories) > 1:
        headers.append("overall")
    if has_lenient:
        headers.append("lenient parse")
    if has_records:
        headers += ["API F1", "args F1"]
    headers += ["policy tokens", "PRM cands", "wall s"]
    rows = []
    for r in summary.runs:
        row = [r.name, r.prm or "-", str(r.cases)]
        row += [_percent(r.accuracy.get(c)) for c in summary.categories]
        if len(summary.categories) > 1:
            row.append(_percent(r.accuracy["overall"]))
        if has_lenient:
            row.append(_percent(r.lenient_accuracy["overall"]) if r.lenient_accuracy else "")
        if has_records:
            row += [_percent(r.records["api_f1"]), _percent(r.records["args_f1"])] if r.records else ["", ""]
        row += [f"{r.policy_tokens:.0f}", f"{r.prm_candidates:.1f}", f"{r.wall_seconds:.2f}"]
        rows.append(row)
    return headers, rows


def render_summary(summary: EvalSummary, console: Any = None) -> None:
    """Print the summary as a rich table: accuracy (%) per category, then mean cost per case."""
    from rich.console import Console
    from rich.table import Table

    headers, rows = _table_rows(summary)
    table = Table(title=f"toolprm eval: {summary.source}  (policy {summary.policy}; accuracy in %, cost per case)")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    (console or Console()).print(table)


def summary_markdown(summary: EvalSummary) -> str:
    """The summary as a Markdown table (for docs such as ``docs/benchmarks.md``)."""
    headers, rows = _table_rows(summary)
    rule = "|" + "|".join("---" if i < 2 else "---:" for i in range(len(headers))) + "|"
    lines = ["| " + " | ".join(headers) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def prm_eval_tables(results: Sequence[EvalResult]) -> str:
    """``toolprm eval-prm`` results as Markdown: accuracy beside "always +", per decision, answer selection."""
    first = results[0]
    lines = [
        f"{first.queries} queries, {first.steps} labelled steps, {first.trajectories} complete trajectories",
        *([] if len({(r.steps, r.trajectories) for r in results}) == 1 else [
            "**Not comparable**: the models judged different steps ("
            + ", ".join(f"{r.model}: {r.steps} steps, {r.trajectories} trajectories" for r in results)
            + "); score them in one `toolprm eval-prm` run.", ""]),
        "| model | loss | step acc | trajectory acc | candidate ranking acc |",
        "|---|---:|---:|---:|---:|",
        f"| always + (ranking: random pick) | - | {first.always_positive_step_accuracy:.4f} | "
        f"{first.always_positive_trajectory_accuracy:.4f} | {first.random_ranking_accuracy:.4f} |",
    ]
    lines += [f"| {r.model} | {r.loss:.4f} | {r.step_accuracy:.4f} | {r.trajectory_accuracy:.4f} "
              f"| {r.ranking_accuracy:.4f} |" for r in results]
    lines += ["", "| decision | steps | always + | " + " | ".join(r.model for r in results) + " |",
              "|---|---:|---:|" + "---:|" * len(results)]
    lines += [f"| {name} | {f['steps']:.0f} | {f['always_positive']:.4f} | "
              + " | ".join(f"{r.focus.get(name, {}).get('accuracy', float('nan')):.4f}" for r in results) + " |"
              for name, f in first.focus.items()]
    hows = list(first.selection_accuracy)
    lines += ["", f"Answer selection by aggregation ({first.selection_groups} queries with right and wrong answers)",
              "| model | " + " | ".join(hows) + " |", "|---|" + "---:|" * len(hows),
              "| random pick | " + " | ".join(f"{first.random_selection_accuracy:.4f}" for _ in hows) + " |"]
    lines += [f"| {r.model} | " + " | ".join(f"{r.selection_accuracy[h]:.4f}" for h in hows) + " |" for r in results]
    return "\n".join(lines)
