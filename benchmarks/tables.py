"""Print the Markdown tables of ``docs/benchmarks.md`` from ``toolprm eval`` result folders.

Every number comes from the prediction files (`summarize` recomputes nothing), so the tables in the
docs can be regenerated from the committed results at any time:

    python benchmarks/tables.py benchmarks/results/simple_python benchmarks/results/other_categories

``--per-case`` adds, per folder, a table of every case: right (``Y``) or wrong (``.``) and how many calls the
answer made, for every run side by side.

``--common`` keeps, in every row, only the cases that every run of every listed folder has finished,
so a run stopped early (a costly baseline measured on a prefix of the cases) is still compared with the
others on the same cases, also across folders (runs with another PRM or aggregation live in their own
folder).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from langchain_toolprm.evaluation.runner import MANIFEST, load_results, summarize, summary_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="result folders")
    parser.add_argument("--common", action="store_true", help="only the cases every run has finished")
    parser.add_argument("--runs", nargs="+", help="only these runs (default: every run of the folder)")
    parser.add_argument("--per-case", action="store_true", help="also a table of every case and run")
    args = parser.parse_args()
    shared: set[str] | None = None
    if args.common:
        finished = [{line["id"] for line in lines}
                    for folder in args.results for lines in load_results(folder, args.runs).values()]
        shared = set.intersection(*finished)
    for folder in args.results:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
        case_ids = None
        if shared is not None:
            results = load_results(folder, args.runs)
            case_ids = [line["id"] for line in next(iter(results.values())) if line["id"] in shared]
        summary = summarize(folder, runs=args.runs, case_ids=case_ids)
        config = manifest["config"]
        cases = len(case_ids) if case_ids is not None else manifest["cases"]
        print(f"### {Path(folder).name}{' (cases every run finished)' if args.common else ''}\n")
        subset = ("the cases every run finished, a prefix of each category in BFCL's order" if args.common
                  else f"the first {config['limit']} per category in BFCL's order" if config["limit"]
                  else "every case of each category")
        print(f"policy `{manifest['policy_name']}`, {cases} cases ({', '.join(summary.categories)}; {subset}), "
              f"seed {manifest['fingerprint']['seed']}, temperature {manifest['fingerprint']['temperature']}\n")
        print(summary_markdown(summary))
        print()
        if args.per_case:
            print(per_case_markdown(load_results(folder, args.runs), case_ids))
            print()


def per_case_markdown(results: dict[str, list[dict]], case_ids: list[str] | None = None) -> str:
    """One row per case, one column per run: ``Y``/``.`` (right or wrong) and the number of calls made."""
    runs = list(results)
    by_run = {run: {line["id"]: line for line in lines} for run, lines in results.items()}
    ids = case_ids or list(dict.fromkeys(line["id"] for lines in results.values() for line in lines))
    rows = ["| case | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for case in ids:
        cells = []
        for run in runs:
            line = by_run[run].get(case)
            cells.append("-" if line is None else f"{'Y' if line['correct'] else '.'}{len(line['calls'])}")
        rows.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
