"""Accuracy against compute, from ``toolprm eval`` result folders (the paper's budget figure).

The figure has two panels over the same axes: on the left one line per fixed N (beams kept) as M
(candidates per step) grows, on the right one line per fixed M as N grows. The paper's finding,
"explore more, retain less", reads off it directly: the fixed-N lines should climb more steeply than
the fixed-M ones. Sampling baselines (``best_of_n``, ``majority``) appear as lines over their sample
counts and one-shot baselines (``greedy``, ``unconstrained``) as single marked points, on both panels,
so every strategy is compared at the compute it actually spent. Adaptive-budget beam runs are one more
line on both panels, each point labelled with its caps: the compute it spent is what it chose to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from langchain_toolprm.evaluation.runner import EvalSummary, RunSummary, summarize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["COST_AXES", "budget_figure", "plot_budget"]

CostAxis = Literal["policy_tokens", "total_tokens", "prm_candidates", "wall_seconds"]
COST_AXES: dict[str, str] = {
    "policy_tokens": "policy tokens per case (mean)",
    "total_tokens": "policy + PRM tokens per case (mean)",
    "prm_candidates": "PRM candidates per case (mean)",
    "wall_seconds": "wall seconds per case (mean)",
}
_BASELINE_MARKERS = {"unconstrained": "X", "greedy": "D"}
_SAMPLED_STYLES = {"best_of_n": ":", "majority": "-."}


def _accuracy(run: RunSummary, category: str | None) -> float | None:
    value = run.accuracy.get(category or "overall")
    return None if value is None else 100 * value


def _line(ax: object, runs: Sequence[RunSummary], x: CostAxis, category: str | None, label: str,
          note: Callable[[RunSummary], str] | None = None, **style: object) -> None:
    """One line through the runs, in order of cost; ``note`` labels each point with its varying budget."""
    points = sorted(
        ((getattr(r, x), acc, r) for r in runs if (acc := _accuracy(r, category)) is not None),
        key=lambda p: p[0],
    )
    if not points:
        return
    ax.plot([p[0] for p in points], [p[1] for p in points], label=label, **style)  # type: ignore[attr-defined]
    if note is not None:
        for px, py, run in points:
            ax.annotate(note(run), (px, py), textcoords="offset points", xytext=(4, 4),  # type: ignore[attr-defined]
                        fontsize="x-small", alpha=0.8)


def _draw_panel(ax: object, summary: EvalSummary, prefix: str, fixed: Literal["N", "M"], x: CostAxis,
                category: str | None) -> None:
    beams = [r for r in summary.runs if r.strategy == "beam"]
    groups: dict[int, list[RunSummary]] = defaultdict(list)
    for run in beams:
        key = run.num_beams if fixed == "N" else run.beam_width
        groups[key or 0].append(run)
    def varying(run: RunSummary) -> str:
        return f"M={run.beam_width}" if fixed == "N" else f"N={run.num_beams}"

    for key, runs in sorted(groups.items()):
        _line(ax, runs, x, category, f"{prefix}beam {fixed}={key}", varying, marker="o")
    adaptive = [r for r in summary.runs if r.strategy == "beam_adaptive"]
    _line(ax, adaptive, x, category, f"{prefix}adaptive beam (caps)", lambda r: f"N<={r.num_beams} M<={r.beam_width}",
          marker="*", markersize=10, linestyle="--", color="tab:red")
    for strategy, linestyle in _SAMPLED_STYLES.items():
        runs = [r for r in summary.runs if r.strategy == strategy]
        _line(ax, runs, x, category, f"{prefix}{strategy}", lambda r: f"n={r.num_samples}", marker="s",
              linestyle=linestyle, color="grey")
    for strategy, marker in _BASELINE_MARKERS.items():
        runs = [r for r in summary.runs if r.strategy == strategy]
        _line(ax, runs, x, category, f"{prefix}{strategy}", marker=marker, linestyle="none", color="black",
              markersize=8)


def plot_budget(
    results: Sequence[str | Path | EvalSummary],
    output: str | Path,
    *,
    x: CostAxis = "policy_tokens",
    category: str | None = None,
    title: str | None = None,
) -> Path:
    """Draw accuracy against compute for one or more result folders and save it as a PNG.

    Args:
        results: ``toolprm eval`` output folders, or summaries already computed.
        output: The PNG file to write (folders are created).
        x: The cost on the x axis (log scale): mean policy tokens, PRM candidates or wall seconds per case.
        category: A single category's accuracy; ``None`` plots the overall accuracy over all cases.
        title: The figure title (default: names the category).

    Returns:
        The written file.

    Raises:
        ValueError: Unknown cost axis, or no run has predictions to plot.

    """
    figure = budget_figure(results, x=x, category=category, title=title)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def budget_figure(
    results: Sequence[str | Path | EvalSummary],
    *,
    x: CostAxis = "policy_tokens",
    category: str | None = None,
    title: str | None = None,
) -> Figure:
    """The budget figure as a matplotlib `Figure` (for notebooks, or to restyle before saving).

    Arguments are those of `plot_budget`.

    Raises:
        ValueError: Unknown cost axis, or no run has predictions to plot.

    """
    if x not in COST_AXES:
        raise ValueError(f"Unknown cost axis {x!r}; choose one of {sorted(COST_AXES)}.")
    # A bare Figure on the Agg canvas: no pyplot state, no GUI backend, safe in threads and servers.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summaries = [r if isinstance(r, EvalSummary) else summarize(r) for r in results]
    if not any(s.runs for s in summaries):
        raise ValueError("No predictions to plot in the given results.")
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, sharey=True)
    for ax, fixed, heading in ((axes[0], "N", "fixed N (beams kept), growing M"),
                               (axes[1], "M", "fixed M (candidates per step), growing N")):
        for summary in summaries:
            prefix = f"{Path(summary.source or '').name}: " if len(summaries) > 1 else ""
            _draw_panel(ax, summary, prefix, fixed, x, category)  # type: ignore[arg-type]
        ax.set_title(heading)
        ax.set_xlabel(COST_AXES[x])
        values = [getattr(r, x) for s in summaries for r in s.runs]
        if any(v > 0 for v in values):
            # Budgets grow geometrically; runs that spent none of this cost (greedy has no PRM
            # candidates) stay visible on a linear stretch around zero.
            if any(v <= 0 for v in values):
                ax.set_xscale("symlog", linthresh=1.0)
            else:
                ax.set_xscale("log")
        ax.margins(x=0.1, y=0.12)  # room for the point labels at the ends of the lines
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    axes[0].set_ylabel(f"accuracy on {category} (%)" if category else "accuracy, all cases (%)")
    figure.suptitle(title or f"Accuracy against compute ({category or 'all categories'})")
    return figure
