"""What reading only the PRM's label rows of the output head saves, against the whole head, on the default PRM.

The default PRM (a LoRA on the packaged 0.5B policy's weights) scores the candidate steps of the first
state of BFCL simple_python cases; each round times the same scoring with the head's two label rows
(`ScoringLM._token_logits`) and with the whole 151,936-row head, interleaved, the best of each, and
checks that both give the same scores:

    OMP_NUM_THREADS=1 python benchmarks/label_logits.py --data ../shared/data/bfcl_v4 --cases 3 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", default=None, help="BFCL data folder (default: the installed bfcl-eval package's)")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from langchain_toolprm.components import load_policy, load_prm
    from langchain_toolprm.evaluation.cases import load_cases
    from langchain_toolprm.evaluation.config import EvalConfig
    from langchain_toolprm.grammar import Grammar
    from langchain_toolprm.lm.scoring import ScoringLM
    from langchain_toolprm.messages import to_chat_messages
    from langchain_toolprm.models.registry import DEFAULT_POLICY
    from langchain_toolprm.prm.generative import GenerativePRM
    from langchain_toolprm.tools import to_tool_specs

    policy = load_policy(DEFAULT_POLICY)
    prm = load_prm("default", policy)
    assert isinstance(prm, GenerativePRM)
    lm = prm.lm
    rows_only = type(lm)._token_logits

    def whole_head(self: ScoringLM, hidden: Any, token_ids: Any) -> Any:
        return self._logits(hidden)[:, list(token_ids)]

    for case in load_cases(EvalConfig(data=args.data, categories=["simple_python"], limit=args.cases)):
        specs = to_tool_specs(case.tools)
        grammar = Grammar(specs)
        session = prm.session(to_chat_messages(case.messages), specs)
        state = grammar.initial()
        actions = list(grammar.decision(state).actions)
        session.score((), state, actions)  # the context prefill, once, outside the timings
        best = {"rows": float("inf"), "whole": float("inf")}
        scores: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, method in (("rows", rows_only), ("whole", whole_head)):
                lm._token_logits = method.__get__(lm)  # type: ignore[method-assign]
                started = time.perf_counter()
                scores[name] = [float(s) for s in session.score((), state, actions)]
                best[name] = min(best[name], time.perf_counter() - started)
        lm._token_logits = rows_only.__get__(lm)  # type: ignore[method-assign]
        print(json.dumps({"case": case.id, "candidates": len(actions), "seconds": {k: round(v, 4) for k, v in
                                                                                  best.items()},
                          "max_score_difference": max(abs(a - b) for a, b in zip(scores["rows"], scores["whole"],
                                                                                   strict=True))}), flush=True)


if __name__ == "__main__":
    main()
