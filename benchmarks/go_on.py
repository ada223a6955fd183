"""How likely the policy finds "one more call" after its first call, with the list in one fence or a fence per call.

The grammar reads "one more call, or stop?" off the policy's probabilities of the two texts that
follow a finished call in the policy's format (`search.engine`: the format's ``branch`` against its
list end). A code model that writes calls in ```json fences lists several calls one per line in one
fence; after a closing fence it ends its turn. This prints, per BFCL case of a folder (the live
parallel categories, say), the policy's P(more) after the reference's first call under both
layouts, beside how many calls the reference holds:

    python benchmarks/held_out.py --out live-par --test-fraction 1.0 --per-category 100 \
        --categories live_parallel live_parallel_multiple
    python benchmarks/go_on.py --data live-par --output benchmarks/results/session16/go_on.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from statistics import median
from typing import Any

from langchain_toolprm import load_policy
from langchain_toolprm.data.sources import reference_calls
from langchain_toolprm.evaluation import load_bfcl
from langchain_toolprm.formats import FencedJSONFormat
from langchain_toolprm.messages import to_chat_messages
from langchain_toolprm.policy.base import PolicySession
from langchain_toolprm.tools import ToolSchemaError, to_tool_specs


def p_more(session: PolicySession, text: str, more: str, end: str) -> float:
    """P(more) over P(more) + P(end), both read after ``text`` by the policy."""
    lp_more, lp_end = (sum(x) for x in session.token_logprobs([(text, more), (text, end)]))
    return 1.0 / (1.0 + math.exp(lp_end - lp_more))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="BFCL folder (with possible_answer/)")
    parser.add_argument("--categories", nargs="+", default=["live_parallel", "live_parallel_multiple"])
    parser.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    policy = load_policy(args.policy)
    rows: list[dict[str, Any]] = []
    for case in load_bfcl(args.data, args.categories):
        if not case.ground_truth:
            continue
        try:
            specs = to_tool_specs(case.functions)
        except ToolSchemaError as error:  # BFCL holds a few schemas no call can satisfy
            print(f"{case.id}: skipped ({error})")
            continue
        session = policy.session(to_chat_messages(case.messages), specs, seed=0)
        fmt = session.format
        if not isinstance(fmt, FencedJSONFormat):
            print(f"{case.id}: the policy chose {fmt.name}, not fenced JSON; skipped")
            continue
        # The reference's first call as the grammar writes it (`reference_calls`: each argument's first accepted value).
        first = json.dumps(reference_calls(case.ground_truth, specs)[0], ensure_ascii=False)
        eot = fmt.end_of_turn
        one_fence = p_more(session, "```json\n" + first, fmt.branch(1), fmt.list_close() + eot)
        per_call = p_more(session, "```json\n" + first + "\n```", "\n```json", eot)
        rows.append({"id": case.id, "reference_calls": len(case.ground_truth), "p_more_one_fence": round(one_fence, 4),
                     "p_more_fence_per_call": round(per_call, 4)})
        print(json.dumps(rows[-1]), flush=True)
    for key in ("p_more_one_fence", "p_more_fence_per_call"):
        values = [r[key] for r in rows]
        print(f"{key}: median {median(values):.3f}, above 0.5 on {sum(v > 0.5 for v in values)} of {len(values)}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
