"""Print the Markdown tables of ``docs/benchmarks.md`` from ``toolprm eval`` result folders.

Every number comes from the prediction files (`summarize` recomputes nothing), so the tables in the
docs can be regenerated from the committed results at any time:

    python benchmarks/tables.py benchmarks/results/simple_python benchmarks/results/multiple ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from langchain_toolprm.evaluation.runner import MANIFEST, summarize, summary_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="result folders")
    args = parser.parse_args()
    for folder in args.results:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
        summary = summarize(folder)
        config = manifest["config"]
        print(f"### {Path(folder).name}\n")
        print(f"policy `{manifest['policy_name']}`, {manifest['cases']} cases "
              f"({', '.join(manifest['categories'])}; first {config['limit']} per category), seed {config['seed']}, "
              f"temperature {config['temperature']}\n")
        print(summary_markdown(summary))
        print()


if __name__ == "__main__":
    main()
