"""Summaries of an eval folder: accuracy per category and mean cost per case, for every run."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_toolprm.evaluation.metrics import CallCounts, CallMetrics

if TYPE_CHECKING:
    pass

from langchain_toolprm.evaluation.config import MANIFEST, RunSpec
from langchain_toolprm.evaluation.store import read_predictions, run_order


@dataclass
class RunSummary:
    """The numbers of one run.

    Attributes:
        name: The run name (file stem).
        strategy: Its strategy.
        num_beams: N (beam only).
        beam_width: M (beam only).
        num_samples: Samples (best_of_n and majority only).
        prm: The PRM that took part, ``None`` for policy-only strategies.
        cases: Cases with a prediction.
        accuracy: Share correct per category, and ``"overall"`` over all cases (micro).
        lenient_accuracy: For ``unconstrained``, the same with the lenient parse.
        policy_tokens: Mean policy token positions per case.
        prm_candidates: Mean PRM-scored candidates per case.
        total_tokens: Mean token positions per case through the policy and the PRM together.
        wall_seconds: Mean wall seconds per case.
        errors: Cases the engine raised on (counted wrong).
        records: For record-form data, name and argument P/R/F1 and exact match.

    """

    name: str
    strategy: str
    num_beams: int | None
    beam_width: int | None
    num_samples: int | None
    prm: str | None
    cases: int
    accuracy: dict[str, float]
    lenient_accuracy: dict[str, float] | None
    policy_tokens: float
    prm_candidates: float
    wall_seconds: float
    total_tokens: float = 0.0
    errors: int = 0
    records: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return dataclasses.asdict(self)


@dataclass
class EvalSummary:
    """Every run's summary, with the data they share."""

    runs: list[RunSummary]
    categories: list[str]
    policy: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {"policy": self.policy, "source": self.source, "categories": self.categories,
                "runs": [r.to_dict() for r in self.runs]}

    def run(self, name: str) -> RunSummary:
        """A run by name.

        Raises:
            KeyError: No such run.

        """
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)


def _accuracy(lines: Iterable[dict[str, Any]], key: str) -> dict[str, float]:
    by_category: dict[str, list[bool]] = defaultdict(list)
    everything = []
    for line in lines:
        by_category[line["category"]].append(bool(line[key]))
        everything.append(bool(line[key]))
    out = {c: sum(v) / len(v) for c, v in sorted(by_category.items())}
    out["overall"] = sum(everything) / len(everything) if everything else 0.0
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _record_scores(lines: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    with_counts = [line["counts"] for line in lines if "counts" in line]
    if not with_counts:
        return None
    total = CallCounts()
    for counts in with_counts:
        total += CallCounts(**counts)
    metrics = CallMetrics.from_counts(total)
    return {
        "exact_match": metrics.exact_match,
        "api_precision": metrics.api.precision, "api_recall": metrics.api.recall, "api_f1": metrics.api.f1,
        "args_precision": metrics.arguments.precision, "args_recall": metrics.arguments.recall,
        "args_f1": metrics.arguments.f1,
    }


def _summarize_run(name: str, lines: Sequence[dict[str, Any]], prm: str | None) -> RunSummary:
    spec = RunSpec.from_name(name)
    with_lenient = [line for line in lines if "lenient_correct" in line]
    return RunSummary(
        name=name,
        strategy=spec.strategy,
        num_beams=spec.num_beams,
        beam_width=spec.beam_width,
        num_samples=spec.num_samples,
        prm=prm,
        cases=len(lines),
        accuracy=_accuracy(lines, "correct"),
        lenient_accuracy=_accuracy(with_lenient, "lenient_correct") if with_lenient else None,
        policy_tokens=_mean([line["cost"]["policy_tokens"] for line in lines]),
        prm_candidates=_mean([line["cost"]["prm_candidates"] for line in lines]),
        total_tokens=_mean([line["cost"]["policy_tokens"] + line["cost"].get("prm_tokens", 0) for line in lines]),
        wall_seconds=_mean([line["cost"]["wall_seconds"] for line in lines]),
        errors=sum(1 for line in lines if line.get("error")),
        records=_record_scores(lines),
    )


def load_results(output: str | Path, runs: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The prediction lines of each run in a result folder (all runs of the manifest when ``runs`` is None).

    Raises:
        FileNotFoundError: The folder has no manifest.

    """
    folder = Path(output)
    manifest_file = folder / MANIFEST
    if not manifest_file.exists():
        raise FileNotFoundError(f"{folder} is not a toolprm eval folder (no {MANIFEST}).")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    names = list(runs) if runs is not None else list(manifest.get("runs", {}))
    return {name: read_predictions(folder / f"{name}.jsonl") for name in names}


def summarize(output: str | Path, runs: Sequence[str] | None = None,
              case_ids: Sequence[str] | None = None) -> EvalSummary:
    """Summarise a result folder from its files alone (nothing is recomputed).

    Args:
        output: The result folder.
        runs: Runs to include (all runs of the manifest when None).
        case_ids: Only these cases (the current dataset), so a folder that once held more cases still
            compares every run on the same ones.

    Returns:
        One summary per run that has predictions, in the manifest's order.

    """
    folder = Path(output)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    wanted = set(case_ids) if case_ids is not None else None
    summaries, categories = [], set()
    for name, lines in load_results(folder, runs).items():
        unique: dict[str, dict[str, Any]] = {}
        for line in lines:
            unique.setdefault(line["id"], line)  # a file concatenated by hand must not count a case twice
        lines = [line for key, line in unique.items() if wanted is None or key in wanted]
        if not lines:
            continue
        categories |= {line["category"] for line in lines}
        meta = manifest.get("runs", {}).get(name, {})
        summaries.append(_summarize_run(name, lines, meta.get("prm")))
    summaries.sort(key=lambda s: run_order(RunSpec.from_name(s.name)))
    return EvalSummary(summaries, sorted(categories), manifest.get("policy_name"), str(folder))
