"""The property suite's tiny-model check on fresh schemas: every search under ``tool_choice="required"`` finishes.

`unit_tests/test_schema_properties.py` draws its 200 tiny-model schemas derandomized, so CI sees the same
ones each run. This draws new ones from the same strategy with a chosen hypothesis seed, searches each
greedy and beam with the suite's settings on the same tiny model, and writes every unfinished search (tool,
seed, half-built call) as one JSON line, so a failure found here becomes a test case:

    OMP_NUM_THREADS=1 python benchmarks/schema_sweep.py --examples 600 --seed 33 --output sweep_33.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from langchain_toolprm.components import load_policy
from unit_tests.conftest import save_tiny_model
from unit_tests.schema_strategies import tiny_searches, tools


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="satisfiable schemas to search")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (the suite's draws are derandomized)")
    parser.add_argument("--output", default=None, help="JSON lines of the unfinished searches")
    args = parser.parse_args()

    policy = load_policy(str(save_tiny_model(Path(tempfile.mkdtemp()) / "tiny-qwen2")))
    counts: Counter[str] = Counter()
    unfinished: list[dict[str, Any]] = []

    @hypothesis_seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(drawn=tools().filter(lambda d: d[1]), seed=st.integers(0, 10_000))
    def sweep(drawn: tuple[dict[str, Any], bool], seed: int) -> None:
        tool, _ = drawn
        counts["schemas"] += 1
        for strategy, result in tiny_searches(tool, policy, seed):
            counts[f"{strategy} finished"] += result.finished
            if not result.finished:
                unfinished.append({"strategy": strategy, "seed": seed, "tool": tool, "partial": result.partial})

    sweep()
    print(json.dumps({"hypothesis_seed": args.seed, **counts}))
    if args.output:
        Path(args.output).write_text("".join(json.dumps(u, ensure_ascii=False) + "\n" for u in unfinished))


if __name__ == "__main__":
    main()
