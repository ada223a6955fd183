"""Write the BFCL ``live_*`` cases that a PRM build put in its test split, as a BFCL folder.

Search settings (aggregation, budgets) must be chosen on cases that neither trained the PRM nor
grade it: the non-live categories are the evaluation, the ``live_*`` training split trained the PRM,
and what is left is the ``live_*`` test split. ``toolprm build-data`` splits by a hash of the case id
(`split_of`), so the same seed and test fraction give the same held-out cases without rebuilding:

    python benchmarks/held_out.py --out held-out --per-category 8
    toolprm eval --data held-out --categories live_simple live_multiple live_irrelevance ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from langchain_toolprm.data.build import default_bfcl_dir, split_of

CATEGORIES = ("live_simple", "live_multiple", "live_irrelevance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="BFCL v4 folder (default: as build-data)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (BFCL layout)")
    parser.add_argument("--categories", nargs="+", default=list(CATEGORIES))
    parser.add_argument("--per-category", type=int, default=8, help="at most this many cases per category")
    parser.add_argument("--seed", type=int, default=0, help="build-data's --seed")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="build-data's test fraction")
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


if __name__ == "__main__":
    main()
