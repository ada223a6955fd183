"""Write the BFCL ``live_*`` cases that a PRM build put in its test split, as a BFCL folder.

Search settings (aggregation, budgets) must be chosen on cases that neither trained the PRM nor
grade it: the non-live categories are the evaluation, the ``live_*`` training split trained the PRM,
and what is left is the ``live_*`` test split. ``toolprm build-data`` splits by a hash of the case id
(`split_of`), so the same seed and test fraction give the same held-out cases without rebuilding:

    python benchmarks/held_out.py --out held-out --per-category 8
    toolprm eval --data held-out --categories live_simple live_multiple live_irrelevance ...

The ``live_*`` test split holds only a handful of parallel cases, so ``--composed N`` also writes N
parallel requests of each BFCL shape made of held-out single-call cases, as the PRM data composes
its training ones (`langchain_toolprm.data.compose`): ``composed_parallel``, one function called
for each part ("the weather in A. Also, the weather in B"), and ``composed_parallel_multiple``,
parts that call different functions. The checker grades both as parallel (any call order).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_toolprm.data.build import default_bfcl_dir, split_of
from langchain_toolprm.data.compose import called_tool, distinct_calls, join_requests, merged_tools

CATEGORIES = ("live_simple", "live_multiple", "live_irrelevance")
SINGLE_CALL_SOURCES = ("live_simple", "live_multiple")
Case = tuple[dict[str, Any], dict[str, Any]]


def _read(source: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (source / name).read_text(encoding="utf-8").splitlines() if line]


def _single_calls(source: Path, seed: float, test_fraction: float) -> list[Case]:
    """Held-out one-turn, one-call cases with their answers, live_simple's first (their tool lists are short)."""
    found = []
    for category in SINGLE_CALL_SOURCES:
        answers = {a["id"]: a for a in _read(source / "possible_answer", f"BFCL_v4_{category}.json")}
        for case in _read(source, f"BFCL_v4_{category}.json"):
            answer = answers[case["id"]]
            if (split_of(case["id"], seed, test_fraction) == "test" and len(case["question"]) == 1
                    and len(answer["ground_truth"]) == 1):
                found.append((case, answer))
    return found


def _called(case: Case) -> str:
    return called_tool(case[0]["function"], case[1]["ground_truth"][0])


def _compose(parts: list[Case], rng: random.Random, case_id: str) -> Case | None:
    tools = merged_tools(case["function"] for case, _ in parts)
    truth = [answer["ground_truth"][0] for _, answer in parts]
    if tools is None or not distinct_calls(truth):
        return None
    text = join_requests([case["question"][0][-1]["content"] for case, _ in parts], rng)
    system = [m for m in parts[0][0]["question"][0] if m["role"] == "system"]
    return ({"id": case_id, "question": [[*system, {"role": "user", "content": text}]],
             "function": tools, "parts": [case["id"] for case, _ in parts]},
            {"id": case_id, "ground_truth": truth})


def _composed(pool: list[Case], n: int, same_function: bool, rng: random.Random, category: str) -> Iterator[Case]:
    """Up to ``n`` parallel requests of 2 or 3 parts, none made twice."""
    groups: dict[str, list[Case]] = {}
    for case in pool:
        groups.setdefault(_called(case) if same_function else "all", []).append(case)
    pools = [g for g in groups.values() if len(g) >= 2]
    seen: set[tuple[str, ...]] = set()
    made = 0
    for _ in range(50 * n):
        if made == n or not pools:
            return
        group = rng.choice(pools)
        parts = rng.sample(group, min(len(group), rng.choice((2, 2, 3))))
        key = tuple(sorted(case["id"] for case, _ in parts))
        if key in seen or (not same_function and len({_called(p) for p in parts}) < len(parts)):
            continue
        composed = _compose(parts, rng, f"{category}_{made}-0-0")
        if composed is not None:
            seen.add(key)
            made += 1
            yield composed


def _write(out: Path, category: str, cases: list[Case]) -> None:
    name = f"BFCL_v4_{category}.json"
    (out / name).write_text("".join(json.dumps(case) + "\n" for case, _ in cases), encoding="utf-8")
    (out / "possible_answer" / name).write_text("".join(json.dumps(answer) + "\n" for _, answer in cases),
                                                encoding="utf-8")
    print(f"{category}: {len(cases)} cases")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="BFCL v4 folder (default: as build-data)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (BFCL layout)")
    parser.add_argument("--categories", nargs="+", default=list(CATEGORIES))
    parser.add_argument("--per-category", type=int, default=8, help="at most this many cases per category")
    parser.add_argument("--seed", type=int, default=0, help="build-data's --seed")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="build-data's test fraction")
    parser.add_argument("--composed", type=int, default=0, metavar="N",
                        help="also write N composed parallel requests of each shape")
    args = parser.parse_args()
    source = args.data or default_bfcl_dir()
    (args.out / "possible_answer").mkdir(parents=True, exist_ok=True)
    for category in args.categories:
        name = f"BFCL_v4_{category}.json"
        cases = [json.loads(line) for line in (source / name).read_text(encoding="utf-8").splitlines() if line]
        held = [c for c in cases if split_of(c["id"], args.seed, args.test_fraction) == "test"][: args.per_category]
        (args.out / name).write_text("".join(json.dumps(c) + "\n" for c in held), encoding="utf-8")
        answers = source / "possible_answer" / name
        if answers.exists():
            ids = {c["id"] for c in held}
            lines = [line for line in answers.read_text(encoding="utf-8").splitlines()
                     if line and json.loads(line)["id"] in ids]
            (args.out / "possible_answer" / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        print(f"{category}: {len(held)} of {len(cases)} cases")
    if args.composed:
        pool = _single_calls(source, args.seed, args.test_fraction)
        for category, same in (("composed_parallel", True), ("composed_parallel_multiple", False)):
            simple = [c for c in pool if c[0]["id"].startswith("live_simple")]
            cases = list(_composed(pool if same else simple, args.composed, same, random.Random(args.seed), category))
            _write(args.out, category, cases)


if __name__ == "__main__":
    main()
