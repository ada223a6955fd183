"""The files of an eval folder: predictions per run, and the manifest that keeps runs compatible.

Each run writes one JSON Lines file of predictions; the manifest keeps a resumed run from mixing
incompatible results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_toolprm.search.results import SearchResult

from langchain_toolprm.evaluation.cases import EvalCase
from langchain_toolprm.evaluation.config import MANIFEST, STRATEGY_ORDER, EvalConfig, RunSpec


def read_predictions(file: Path) -> list[dict[str, Any]]:
    """Read a run's lines, cutting off a last line a killed process left half written."""
    if not file.exists():
        return []
    data = file.read_bytes()
    lines, good_end = [], 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            break
        lines.append(item)
        good_end += len(raw)
    if good_end != len(data):
        with file.open("r+b") as handle:
            handle.truncate(good_end)
    return lines


def prediction_line(case: EvalCase, result: SearchResult) -> dict[str, Any]:
    """The prediction file's line for a case the search answered: calls, verdict, cost."""
    calls = [{"name": c["name"], "arguments": c.get("arguments") or {}} for c in result.calls]
    correct, extra = case.grade(calls)
    line: dict[str, Any] = {
        "id": case.id,
        "category": case.category,
        "calls": calls,
        "correct": bool(correct),
        "cost": result.cost.to_dict(),
        "finished": result.finished,
        "score": result.score,
        **extra,
    }
    if result.lenient_calls is not None:
        lenient = [{"name": c["name"], "arguments": c.get("arguments") or {}} for c in result.lenient_calls]
        line["lenient_calls"] = lenient
        line["lenient_correct"] = bool(case.grade(lenient)[0])
    return line


def failure_line(case: EvalCase, error: Exception, seconds: float) -> dict[str, Any]:
    """A line for a case the engine could not run: wrong, never silently skipped (the run stays complete)."""
    from langchain_toolprm.search.results import Cost

    cost = Cost(wall_seconds=seconds).to_dict()
    return {"id": case.id, "category": case.category, "calls": [], "correct": False, "cost": cost,
            "finished": False, "score": None, "error": f"{type(error).__name__}: {error}"}


# --------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------


def _cases_digest(cases: Sequence[EvalCase]) -> str:
    return hashlib.sha256("\n".join(c.id for c in cases).encode()).hexdigest()[:16]


def write_json(path: Path, value: Any) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def check_manifest(output: Path, config: EvalConfig) -> dict[str, Any]:
    """The folder's manifest (empty when new), after checking that its settings are the config's.

    Raises:
        ValueError: The folder holds results made with other settings.

    """
    path = output / MANIFEST
    if not path.exists():
        return {}
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    old, new = manifest.get("fingerprint", {}), config.fingerprint()
    changed = sorted(k for k in new if k in old and old[k] != new[k])
    if changed:
        details = ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed)
        raise ValueError(f"{output} holds results made with other settings ({details}); use another --output folder.")
    return manifest


def update_manifest(output: Path, config: EvalConfig, cases: Sequence[EvalCase], runs: Sequence[RunSpec],
                     policy_name: str, prm_name: str) -> dict[str, Any]:
    """Create or extend the manifest; refuse to mix results of different settings in one folder.

    Raises:
        ValueError: The folder holds results made with other settings (policy, PRM, data, seed...).

    """
    path = output / MANIFEST
    fingerprint = config.fingerprint()
    manifest = check_manifest(output, config)
    runs_meta = dict(manifest.get("runs", {}))
    for run in runs:
        runs_meta[run.name] = {
            **dataclasses.asdict(run),
            "file": f"{run.name}.jsonl",
            "prm": prm_name if run.uses_prm else None,
        }
    manifest.update({
        "fingerprint": fingerprint,
        "config": config.model_dump(),
        "policy_name": policy_name,
        "prm_name": prm_name,
        "cases": len(cases),
        "cases_digest": _cases_digest(cases),
        "categories": sorted({c.category for c in cases}),
        "runs": dict(sorted(runs_meta.items(), key=lambda kv: run_order(RunSpec.from_name(kv[0])))),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    manifest.setdefault("created", manifest["updated"])
    write_json(path, manifest)
    return manifest


def run_order(run: RunSpec) -> tuple[int, int, int, int]:
    """Sort key of runs: `STRATEGY_ORDER`, then budgets from small to large."""
    return (STRATEGY_ORDER.index(run.strategy), run.num_samples or 0, run.num_beams or 0, run.beam_width or 0)
