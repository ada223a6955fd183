"""How often the 0.5B policy's calls can be read at all, and how often they are right.

For the first ``--limit`` BFCL simple_python cases, side by side:

- ``unconstrained (strict)``: plain generation parsed in the model's own template format
  (``result.calls``), which is what a LangChain user gets today;
- ``unconstrained (lenient)``: the same text, every call-shaped JSON anywhere (``result.lenient_calls``);
- ``greedy``: the grammar-constrained argmax, policy only;
- ``beam``: grammar-constrained beam search with the PRM (``--prm``, default the rule PRM).

"Parseable" means a non-empty call list was read from the output (every simple_python case needs
one call); "correct" is BFCL's AST checker verdict on that list. The runs go through
`run_eval`, so the predictions land in ``--output`` and an interrupted run resumes.

    python benchmarks/parse_rates.py --limit 20 --output benchmarks/results/parse_rates
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from langchain_toolprm.evaluation.runner import EvalConfig, load_results, run_eval

SHARED_BFCL = Path(__file__).resolve().parents[2] / "shared" / "data" / "bfcl_v4"


def _rates(lines: list[dict[str, Any]], calls_key: str, correct_key: str) -> tuple[float, float]:
    parseable = sum(1 for line in lines if line.get(calls_key)) / len(lines)
    correct = sum(1 for line in lines if line.get(correct_key)) / len(lines)
    return parseable, correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(SHARED_BFCL) if SHARED_BFCL.is_dir() else None)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--prm", default="rules")
    parser.add_argument("--beams", type=int, default=2, help="N of the beam row")
    parser.add_argument("--widths", type=int, default=4, help="M of the beam row")
    parser.add_argument("--output", default="benchmarks/results/parse_rates")
    args = parser.parse_args()

    config = EvalConfig(data=args.data, categories=["simple_python"], limit=args.limit, output=args.output,
                        policy=args.policy, prm=args.prm, strategies=["unconstrained", "greedy", "beam"],
                        beams=[args.beams], widths=[args.widths])
    summary = run_eval(config)
    beam = f"beam_N{args.beams}_M{args.widths}"
    results = load_results(args.output, ["unconstrained", "greedy", beam])
    rows = [
        ("unconstrained (strict)", *_rates(results["unconstrained"], "calls", "correct"), "-"),
        ("unconstrained (lenient)", *_rates(results["unconstrained"], "lenient_calls", "lenient_correct"), "-"),
        ("greedy", *_rates(results["greedy"], "calls", "correct"), "-"),
        (f"beam (N={args.beams}, M={args.widths})", *_rates(results[beam], "calls", "correct"), args.prm),
    ]
    cost = {r.name: r for r in summary.runs}
    costs = [cost["unconstrained"], cost["unconstrained"], cost["greedy"], cost[beam]]
    cases = len(results["greedy"])
    print(f"BFCL simple_python, first {cases} cases, policy {args.policy}")
    print("| strategy | PRM | parseable | correct (BFCL) | policy tokens / case | wall s / case |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, parseable, correct, prm), run in zip(rows, costs, strict=True):
        print(f"| {name} | {prm} | {100 * parseable:.0f}% | {100 * correct:.0f}% | "
              f"{run.policy_tokens:.0f} | {run.wall_seconds:.1f} |")


if __name__ == "__main__":
    main()
