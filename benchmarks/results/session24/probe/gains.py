"""Exploratory probe (session 24): the gain of each call that beam search with --coverage writes after a list.

Runs beam with `Coverage()` on held-out cases and records every read-back of the request; for each list
read beside the list without its latest call, the latest call's gain (nats), labelled by the reference:
"needed" (it matches a reference call the rest of the list has not made), "near-repeat" (same function
as an earlier call of the list, matches nothing new), "other".

    python gains.py --data HELD_OUT --categories live_simple --limit 20 --output gains.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from langchain_toolprm import Coverage, SearchConfig, load_policy, load_prm, run_search
from langchain_toolprm.evaluation import load_bfcl
from langchain_toolprm.search.coverage import CoverageScorer


def matches(call: dict[str, Any], ref: dict[str, Any]) -> bool:
    (name, allowed), = ref.items()
    if call["name"] != name:
        return False
    args = call["arguments"]
    if any(k not in allowed for k in args):
        return False
    for k, values in allowed.items():
        if k in args:
            if args[k] not in values and str(args[k]) not in [str(v) for v in values]:
                return False
        elif "" not in values:
            return False
    return True


def label(calls: list[dict[str, Any]], truth: list[dict[str, Any]]) -> str:
    *made, last = calls
    free = list(truth)
    for call in made:
        hit = next((r for r in free if matches(call, r)), None)
        if hit is not None:
            free.remove(hit)
    if any(matches(last, r) for r in free):
        return "needed"
    return "near-repeat" if any(c["name"] == last["name"] for c in made) else "other"


def setup() -> tuple[argparse.Namespace, Any, Any]:
    """The probe's arguments and its models (session 25's probe shares them)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--categories", nargs="+", required=True)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--output", required=True)
    return parser.parse_args(), load_policy("qwen2.5-coder-0.5b-instruct"), load_prm("default")


def searched(args: argparse.Namespace, policy: Any, prm: Any) -> Iterator[tuple[Any, Any]]:
    """Each case with the result of beam search with `Coverage()` on it."""
    for case in load_bfcl(args.data, args.categories, limit=args.limit):
        yield case, run_search(case.messages, case.functions, policy=policy, prm=prm,
                               config=SearchConfig(coverage=Coverage()))


def main() -> None:
    args, policy, prm = setup()
    original = CoverageScorer.scores
    reads: dict[str, float] = {}

    def recording(self: CoverageScorer, lists: Any) -> list[float]:
        values = original(self, lists)
        reads.update((json.dumps(list(calls)), v) for calls, v in zip(lists, values, strict=True))
        return values

    CoverageScorer.scores = recording  # type: ignore[method-assign]
    with open(args.output, "w") as out:
        for case, result in searched(args, policy, prm):
            rows = []
            for text, value in reads.items():
                calls = json.loads(text)
                before = json.dumps(calls[:-1])
                if len(calls) >= 2 and before in reads:
                    rows.append({"calls": len(calls), "gain": value - reads[before],
                                 "label": label(calls, case.ground_truth or []), "last": calls[-1]})
            out.write(json.dumps({"id": case.id, "asked": len(case.ground_truth or []), "answer": result.calls,
                                  "gains": rows}) + "\n")
            out.flush()
            print(case.id, [(r["label"][0], round(r["gain"], 1)) for r in rows], flush=True)
            reads.clear()


if __name__ == "__main__":
    main()
