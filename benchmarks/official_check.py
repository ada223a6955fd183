"""Grade `toolprm eval` results with BFCL's own checker (``bfcl-eval``), beside the package's verdicts.

The package's checker (`langchain_toolprm.evaluation.bfcl_checker`) follows BFCL's rules and is
tested against recorded official verdicts; this script re-grades every row of a results folder with
the official ``ast_checker`` itself, so a table can carry both columns:

    python benchmarks/official_check.py benchmarks/results/lift/nonlive --data ../shared/data/bfcl_v4

``bfcl-eval`` is installed without its dependencies (Makefile); its checker imports the model
registry only to ask whether a model writes ``.`` as ``_`` in function names. The calls here keep
BFCL's names as they are, so a one-entry registry that says "no" stands in for it. Irrelevance
categories follow BFCL's rule: right when the answer holds no call.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

MODEL = "toolprm"


def _official_checker() -> Any:
    """BFCL's ``ast_checker``, with the model registry it consults replaced by one plain entry."""
    registry = types.ModuleType("bfcl_eval.constants.model_config")
    registry.MODEL_CONFIG_MAPPING = {MODEL: types.SimpleNamespace(underscore_to_dot=False)}  # type: ignore[attr-defined]
    sys.modules.setdefault("bfcl_eval.constants.model_config", registry)
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return ast_checker


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _cases(data: Path, categories: set[str]) -> dict[str, tuple[list[Any], list[Any] | None]]:
    cases: dict[str, tuple[list[Any], list[Any] | None]] = {}
    for category in categories:
        answers = data / "possible_answer" / f"BFCL_v4_{category}.json"
        truth = {row["id"]: row["ground_truth"] for row in _read_jsonl(answers)} if answers.exists() else {}
        for row in _read_jsonl(data / f"BFCL_v4_{category}.json"):
            cases[row["id"]] = (row["function"], truth.get(row["id"]))
    return cases


def official_verdict(checker: Any, language: Any, category: str, functions: list[Any], truth: list[Any] | None,
                     calls: list[dict[str, Any]]) -> bool:
    """BFCL's verdict on one answer."""
    if "irrelevance" in category:
        return not calls
    output = [{c["name"]: c["arguments"]} for c in calls]
    if not output:
        return False
    return bool(checker(functions, output, truth, language, category, MODEL)["valid"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="toolprm eval output folders")
    parser.add_argument("--data", type=Path, required=True, help="the BFCL v4 folder the eval read")
    parser.add_argument("--output", type=Path, help="write per-case verdicts as JSON")
    args = parser.parse_args()
    checker = _official_checker()
    from bfcl_eval.constants.enums import Language

    rows = [(folder, file.stem, row) for folder in args.results for file in sorted(folder.glob("*.jsonl"))
            for row in _read_jsonl(file)]
    cases = _cases(args.data, {row["category"] for _, _, row in rows})
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    verdicts = []
    for folder, run, row in rows:
        functions, truth = cases[row["id"]]
        official = official_verdict(checker, Language.PYTHON, row["category"], functions, truth, row["calls"])
        key = (run, row["category"])
        counts[key]["cases"] += 1
        counts[key]["package"] += bool(row["correct"])
        counts[key]["official"] += official
        counts[key]["agree"] += official == bool(row["correct"])
        verdicts.append({"folder": str(folder), "run": run, "id": row["id"], "package": row["correct"],
                         "official": official})
    print("| run | category | cases | package | official (bfcl-eval) | agree |")
    print("|---|---|---:|---:|---:|---:|")
    for (run, category), c in sorted(counts.items()):
        print(f"| {run} | {category} | {c['cases']} | {c['package']} | {c['official']} | {c['agree']} |")
    if args.output:
        args.output.write_text(json.dumps(verdicts, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
