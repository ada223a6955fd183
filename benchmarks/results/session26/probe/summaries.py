"""Exploratory: summaries of the per-token relevance reading (`token_relevance.py`'s files), set side by side.

For each summary of a tool's per-token gains (the sum, which `search.relevance` uses; the best span of
consecutive tokens; the best span once the sum is taken off), the request's score is its best tool's.
Printed: the AUC of relevant against irrelevant held-out requests, and, at the threshold that leaves as
many irrelevant held-out requests below it as the sum does at 0 nats, how many relevant requests fall
below it, held-out and in BFCL's live parallel categories.

    python summaries.py held_out.jsonl live_parallel.jsonl
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable


def best_span(gains: list[float]) -> float:
    """The largest sum of consecutive tokens' gains (at least one token)."""
    best, run = float("-inf"), 0.0
    for g in gains:
        run = max(g, run + g)
        best = max(best, run)
    return best


SUMMARIES: dict[str, Callable[[dict], float]] = {
    "sum (the check)": lambda t: t["sum"],
    "best span": lambda t: best_span(t["tokens"]),
    "gains above 0": lambda t: sum(g for g in t["tokens"] if g > 0),
    "sum with the worst span left out": lambda t: t["sum"] - min(0.0, -best_span([-g for g in t["tokens"]])),
}


def auc(pos: list[float], neg: list[float]) -> float:
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def main() -> None:
    held = [json.loads(line) for line in open(sys.argv[1])]
    live = [json.loads(line) for line in open(sys.argv[2])] if len(sys.argv) > 2 else []
    irrelevant = [r for r in held if r["category"].endswith("irrelevance")]
    relevant = [r for r in held if not r["category"].endswith("irrelevance")]
    zero = sum(max(t["sum"] for t in r["gains"].values()) < 0 for r in irrelevant)
    print(f"{len(relevant)} relevant and {len(irrelevant)} irrelevant held-out requests, {len(live)} live parallel;"
          f" thresholds leave {zero} irrelevant below (the sum's count at 0 nats)")
    print("| summary | AUC | threshold | relevant held-out below | live parallel below |")
    print("|---|---:|---:|---:|---:|")
    for name, summary in SUMMARIES.items():
        def score(r: dict, summary: Callable[[dict], float] = summary) -> float:
            return max(summary(t) for t in r["gains"].values())
        neg = sorted(score(r) for r in irrelevant)
        threshold = (neg[zero - 1] + neg[zero]) / 2 if 0 < zero < len(neg) else 0.0
        below = [r["id"] for r in live if score(r) < threshold]
        print(f"| {name} | {auc([score(r) for r in relevant], neg):.3f} | {threshold:.1f} |"
              f" {sum(score(r) < threshold for r in relevant)} | {len(below)} {below} |")


if __name__ == "__main__":
    main()
