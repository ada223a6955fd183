"""How the policy reads a request back after reference call lists cut short or grown by a repeat.

`SearchConfig.coverage` rests on one premise: ``log P(request | calls)`` under the policy falls by much
more when a list leaves out a part of the request than it rises when a call is repeated. This checks
that on held-out cases before any search runs: for each case, the reference answer's prefixes (one
call, two, ... all) and, for one-call answers, the call written twice. ``--report`` prints how often the
whole list reads the request likeliest, and the gains of a missing call against those of a repeat:

    python benchmarks/held_out.py --out held-out --per-category 40 --composed 30 \\
        --categories live_simple live_multiple live_parallel live_parallel_multiple live_irrelevance
    python benchmarks/coverage_offline.py --data held-out --output coverage.jsonl
    python benchmarks/coverage_offline.py --report coverage.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from langchain_toolprm import load_policy
from langchain_toolprm.data.sources import reference_calls
from langchain_toolprm.evaluation import load_bfcl
from langchain_toolprm.messages import to_chat_messages
from langchain_toolprm.models.registry import DEFAULT_POLICY
from langchain_toolprm.search.coverage import CoverageScorer
from langchain_toolprm.tools import to_tool_specs

CATEGORIES = ["live_parallel", "live_parallel_multiple", "composed_parallel", "composed_parallel_multiple",
              "live_simple"]


def measure(data: str, output: Path, policy_ref: str, categories: list[str], single_limit: int) -> None:
    policy = load_policy(policy_ref)
    with output.open("w") as out:
        for category in categories:
            limit = single_limit if category in ("live_simple", "live_multiple") else None
            for case in load_bfcl(data, [category], limit=limit):
                reference = reference_calls(case.ground_truth or [], to_tool_specs(case.functions))
                chat = to_chat_messages(case.messages)
                session = policy.session(chat, [], seed=0)
                lists = [reference[:k] for k in range(1, len(reference) + 1)]
                repeat = [reference + reference] if len(reference) == 1 else []
                read = CoverageScorer(policy, chat, session, 0).scores(lists + repeat)
                row = {"id": case.id, "calls": len(reference), "prefixes": read[: len(lists)],
                       "repeat": read[len(lists):], "policy_tokens": session.usage.tokens}
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(row["id"], [round(x, 1) for x in read], flush=True)


def report(paths: list[Path]) -> None:
    rows = [json.loads(line) for path in paths for line in path.open()]
    several = [r for r in rows if r["calls"] > 1]
    gains = [r["prefixes"][k + 1] - r["prefixes"][k] for r in several for k in range(r["calls"] - 1)]
    repeats = [r["repeat"][0] - r["prefixes"][0] for r in rows if r["repeat"]]
    whole = sum(r["prefixes"][-1] == max(r["prefixes"]) for r in several)
    print(f"answers of several calls: {len(several)}; the whole list reads the request likeliest on {whole}")
    if gains:
        print(f"a missing call's gain (nats), {len(gains)}: median {statistics.median(gains):.1f}, "
              f"lowest {sorted(round(g, 1) for g in gains)[:5]}")
    if repeats:
        print(f"a repeated call's gain (nats), {len(repeats)}: median {statistics.median(repeats):.1f}, "
              f"highest {sorted((round(g, 1) for g in repeats), reverse=True)[:5]}")
    print(f"policy tokens a case: {statistics.mean(r['policy_tokens'] for r in rows):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a held-out folder (benchmarks/held_out.py)")
    parser.add_argument("--output", type=Path, help="one line per case")
    parser.add_argument("--policy", default=DEFAULT_POLICY)
    parser.add_argument("--categories", nargs="+", default=CATEGORIES)
    parser.add_argument("--single-limit", type=int, default=20, help="cases of each one-call category")
    parser.add_argument("--report", nargs="+", type=Path, metavar="JSONL", help="summarise measured files")
    args = parser.parse_args()
    if args.report:
        report(args.report)
    elif args.data and args.output:
        measure(args.data, args.output, args.policy, args.categories, args.single_limit)
    else:
        parser.error("give --data and --output to measure, or --report FILES")


if __name__ == "__main__":
    main()
