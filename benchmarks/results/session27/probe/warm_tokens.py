"""Exploratory: what `lm.RootMemory` saves a process that serves one request after another (no agent turns).

Beam search with the package's defaults (or greedy) on the first cases of a BFCL category, one after another in one
process, the models' prompt memory kept (as a server or an evaluation keeps it) or off (size 0, every
prompt encoded whole). Prints per case the calls and the policy and PRM tokens; writes them as JSON.

    python warm_tokens.py --data ../shared/data/bfcl_v4 --limit 10 --memory on --output warm_on.json
    python warm_tokens.py --data ../shared/data/bfcl_v4 --limit 10 --memory on --strategy greedy --output greedy_on.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from langchain_toolprm.components import load_policy, load_prm
from langchain_toolprm.evaluation.cases import load_cases
from langchain_toolprm.evaluation.config import EvalConfig
from langchain_toolprm.search.config import SearchConfig
from langchain_toolprm.search.run import run_search


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--category", default="simple_python")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--memory", choices=["on", "off"], required=True)
    parser.add_argument("--strategy", choices=["beam", "greedy"], default="beam")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    policy = load_policy("qwen2.5-coder-0.5b-instruct")
    prm = load_prm("default", policy)
    if args.memory == "off":
        for lm in (policy.lm, getattr(prm, "lm", None)):
            if lm is not None:
                lm.roots.size = 0
    rows = []
    for case in load_cases(EvalConfig(data=args.data, categories=[args.category], limit=args.limit)):
        result = run_search(case.messages, case.tools, policy=policy, prm=prm, config=SearchConfig(strategy=args.strategy))
        rows.append({"id": case.id, "calls": result.calls, "policy_tokens": result.cost.policy_tokens,
                     "prm_tokens": result.cost.prm_tokens})
        print(json.dumps(rows[-1]), flush=True)
    args.output.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
