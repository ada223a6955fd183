"""How well the policy's reading of a request after each tool's description tells irrelevant requests apart.

`SearchConfig.relevance` rests on one premise: ``max over tools of log P(request | tool) - log P(request)``
under the policy is lower for requests no offered tool can carry out (BFCL ``live_irrelevance``) than for
requests one can (``live_simple``, ``live_multiple``, ``live_parallel*``, composed). This measures it on
held-out cases, before any search runs, and, with ``--decisions`` (a `benchmarks/decisions.py` file of
the same cases: the policy's and the PRM's say at each turn's first step), how the search's first
decision would come out for each threshold and weight under `guided` with `policy_sure` 0.95:

    python benchmarks/held_out.py --out held-out --per-category 40 --composed 30 \\
        --categories live_simple live_multiple live_parallel live_parallel_multiple live_irrelevance
    python benchmarks/relevance_offline.py --data held-out --output relevance.jsonl
    python benchmarks/relevance_offline.py --report relevance.jsonl --decisions decisions.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from langchain_toolprm import load_policy
from langchain_toolprm.evaluation import load_bfcl
from langchain_toolprm.messages import to_chat_messages
from langchain_toolprm.models.registry import DEFAULT_POLICY
from langchain_toolprm.search.config import Relevance
from langchain_toolprm.search.relevance import RelevanceScorer
from langchain_toolprm.tools import ToolSchemaError, to_tool_specs

CATEGORIES = ["live_irrelevance", "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
              "composed_parallel", "composed_parallel_multiple"]
THRESHOLDS = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)
WEIGHTS = (1.0, 2.0, 100.0)


def measure(data: str, output: Path, policy_ref: str, categories: list[str]) -> None:
    policy = load_policy(policy_ref)
    with output.open("w") as out:
        for case in load_bfcl(data, categories):
            try:
                specs = to_tool_specs(case.functions)
            except ToolSchemaError as error:  # the search refuses such a case before it starts
                print(case.id, "skipped:", error, flush=True)
                continue
            chat = to_chat_messages(case.messages)
            session = policy.session(chat, [], seed=0)
            gains = RelevanceScorer(policy, chat, specs, Relevance(), session, 0).gains()
            row = {"id": case.id, "category": case.category, "gains": gains, "policy_tokens": session.usage.tokens}
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(row["id"], round(max(gains.values(), default=0.0), 1), flush=True)


def _auc(positive: list[float], negative: list[float]) -> float:
    pairs = [(p > n) + 0.5 * (p == n) for p in positive for n in negative]
    return sum(pairs) / len(pairs)


def _first_decision(row: dict[str, Any], best_gain: float, threshold: float, weight: float) -> bool:
    """Whether the first decision is right once calling pays the check (as `_Plan` does), under `guided`."""
    off = weight * min(0.0, best_gain - threshold)
    candidates = row["candidates"]
    logprobs = [c["logprob"] + (0.0 if c["finish"] else off) for c in candidates]
    asked = not any(lp >= math.log(0.95) for lp in logprobs)
    values = [lp + (math.log(c["prm"] / (1 - c["prm"])) if asked else 0.0) for lp, c in zip(logprobs, candidates,
                                                                                             strict=True)]
    return bool(candidates[max(range(len(values)), key=values.__getitem__)]["right"])


def report(paths: list[Path], decisions: Path | None) -> None:
    rows = [json.loads(line) for path in paths for line in path.open()]
    best = {r["id"]: max(r["gains"].values(), default=0.0) for r in rows}
    irrelevant = [best[r["id"]] for r in rows if r["category"].endswith("irrelevance")]
    relevant = [best[r["id"]] for r in rows if not r["category"].endswith("irrelevance")]
    print(f"cases: {len(relevant)} relevant, {len(irrelevant)} irrelevant; AUC {_auc(relevant, irrelevant):.3f}")
    print("| threshold | irrelevant below | relevant below |\n|---:|---:|---:|")
    for t in THRESHOLDS:
        print(f"| {t:g} | {sum(g < t for g in irrelevant)} | {sum(g < t for g in relevant)} |")
    tokens = sum(r["policy_tokens"] for r in rows) / len(rows)
    print(f"policy tokens a case: {tokens:.0f}")
    if decisions is None:
        return
    first = [d for d in map(json.loads, decisions.open()) if d["made"] == 0 and d["id"] in best]
    categories = sorted({d["category"] for d in first})
    print("\nfirst decisions right, per category:\n| threshold | weight | " + " | ".join(categories) + " | all |")
    print("|---|---|" + "---:|" * (len(categories) + 1))
    for threshold, weight in [(None, 0.0), *((t, w) for t in THRESHOLDS for w in WEIGHTS)]:
        right = Counter(d["category"] for d in first
                        if _first_decision(d, best[d["id"]], threshold or 0.0, weight))
        total = Counter(d["category"] for d in first)
        cells = " | ".join(f"{right[c]}/{total[c]}" for c in categories)
        name = "off" if threshold is None else f"{threshold:g}"
        print(f"| {name} | {weight:g} | {cells} | {sum(right.values())} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a held-out folder (benchmarks/held_out.py)")
    parser.add_argument("--output", type=Path, help="one line per case")
    parser.add_argument("--policy", default=DEFAULT_POLICY)
    parser.add_argument("--categories", nargs="+", default=CATEGORIES)
    parser.add_argument("--report", nargs="+", type=Path, metavar="JSONL", help="summarise measured files")
    parser.add_argument("--decisions", type=Path, help="with --report: a benchmarks/decisions.py file")
    args = parser.parse_args()
    if args.report:
        report(args.report, args.decisions)
    elif args.data and args.output:
        measure(args.data, args.output, args.policy, args.categories)
    else:
        parser.error("give --data and --output to measure, or --report FILES")


if __name__ == "__main__":
    main()
