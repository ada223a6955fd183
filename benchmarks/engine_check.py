"""Issue 2's acceptance run: beam N=2, M=4 with RulePRM on the first 10 simple_python cases.

Prints, per case, whether the calls validate against their schemas, the trace's step kinds and the cost.
Usage: python benchmarks/engine_check.py [--limit 10] [--data ../shared/data/bfcl_v4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from langchain_toolprm import RulePRM, SearchConfig, StepTag, TransformersPolicy, run_search
from langchain_toolprm.evaluation import calls_to_bfcl, check_case, load_bfcl
from langchain_toolprm.tools import to_tool_specs

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bfcl_v4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    policy = TransformersPolicy.from_pretrained("qwen2.5-coder-0.5b-instruct")
    cases = load_bfcl(args.data / "BFCL_v4_simple_python.json", limit=args.limit)
    valid = correct = 0
    started = time.perf_counter()
    for case in cases:
        result = run_search(case.messages, case.functions, policy=policy, prm=RulePRM(),
                            config=SearchConfig(strategy="beam", num_beams=2, beam_width=4))
        specs = {s.name: s for s in to_tool_specs(case.functions)}
        ok = result.finished and all(not specs[c["name"]].argument_errors(c["arguments"]) for c in result.calls)
        tags = {StepTag.FUNC_NAME, StepTag.ARG_VALUE, StepTag.TOTAL_FINISH} <= result.trace.tags()
        right = check_case(case.category, case.functions, calls_to_bfcl(result.calls), case.ground_truth).valid
        valid += ok
        correct += right
        c = result.cost
        print(f"{case.id:20s} valid={ok} tags={tags} correct={right} tokens={c.policy_tokens} "
              f"forwards={c.policy_forwards} prm={c.prm_candidates} s={c.wall_seconds:.1f} {result.calls}")
    print(f"schema-valid {valid}/{len(cases)}, BFCL-correct {correct}/{len(cases)}, "
          f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
