"""Exploratory: the relevance check's reading kept per token (held-out requests and BFCL live parallel ones).

`search.relevance` sums, over the request's tokens, what a tool's description adds to their
log-probability. A request of two parts ("the weather in Boston and in San Francisco") can read less
likely after a tool that carries out each part than after nothing. This keeps every token's gain, so
that other summaries of the same reading (the best span of tokens, the gains above zero) can be set
against the sum on the same requests, before any search runs:

    python benchmarks/held_out.py --out ho165 --per-category 40 --composed 30 \\
        --categories live_simple live_multiple live_parallel live_parallel_multiple live_irrelevance
    python token_relevance.py --data ho165 --output held_out.jsonl
    python token_relevance.py --data ../shared/data/bfcl_v4 --categories live_parallel live_parallel_multiple \\
        --output live_parallel.jsonl
"""

from __future__ import annotations

import argparse
import json

from langchain_toolprm import load_policy
from langchain_toolprm.evaluation import load_bfcl
from langchain_toolprm.messages import latest_request, to_chat_messages
from langchain_toolprm.models.registry import DEFAULT_POLICY
from langchain_toolprm.search import relevance
from langchain_toolprm.tools import ToolSchemaError, to_tool_specs

CATEGORIES = ["live_irrelevance", "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
              "composed_parallel", "composed_parallel_multiple"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--categories", nargs="+", default=CATEGORIES)
    args = parser.parse_args()
    policy = load_policy(DEFAULT_POLICY)
    side = policy.session([{"role": "system", "content": relevance._SYSTEM},
                           {"role": "user", "content": relevance._USER}], [], seed=0)
    with open(args.output, "w") as out:
        for case in load_bfcl(args.data, args.categories):
            try:
                specs = to_tool_specs(case.functions)
            except ToolSchemaError as error:
                print(case.id, "skipped:", error, flush=True)
                continue
            request = latest_request(to_chat_messages(case.messages))
            items = [(relevance.describe(s) + relevance._REQUEST, request) for s in specs]
            rows = side.token_logprobs([*items, (relevance._REQUEST, request)])
            alone = rows[-1]
            # A row may hold one token more than the request's own (the tail's last, re-tokenised with the
            # request's first): the rows are set side by side from their ends, as the request's tokens are.
            tools = {s.name: {"sum": sum(row) - sum(alone),
                              "tokens": [w - a for w, a in zip(row[::-1], alone[::-1], strict=False)][::-1]}
                     for s, row in zip(specs, rows, strict=False)}
            out.write(json.dumps({"id": case.id, "category": case.category, "request": request, "gains": tools}) + "\n")
            out.flush()
            print(case.id, round(max(t["sum"] for t in tools.values()), 1), flush=True)


if __name__ == "__main__":
    main()
