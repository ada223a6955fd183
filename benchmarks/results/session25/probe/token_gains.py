"""Exploratory probe (session 25): per-token read-backs of the request behind each "one more call?" drop.

Runs beam with `Coverage()` on held-out cases, as session 24's `gains.py`, but keeps every read whole:
the call list, the request's per-token log-probabilities after it, and each token's character span in
the request. Offline (`signals.py`) each grown list is set beside the same list less its latest call,
so that signals other than the summed gain can be compared on the same reads.

    python token_gains.py --data HELD_OUT --categories composed_parallel --limit 20 --output reads.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from langchain_toolprm.messages import latest_request
from langchain_toolprm.search.reading import PolicyReader

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "session24" / "probe"))
from gains import searched, setup  # session 24's probe: the same arguments, models and search


def main() -> None:
    args, policy, prm = setup()
    tokenizer = policy.lm.tokenizer
    rows_of: dict[tuple[str, str], list[float]] = {}
    original = PolicyReader.read

    def recording(self: PolicyReader, items: Any) -> list[float]:
        values = original(self, items)
        new = [item for item in items if item not in rows_of]
        if new and self._side is not None:
            for item, row in zip(new, self._side.token_logprobs(new), strict=True):
                rows_of[item] = row
        return values

    PolicyReader.read = recording  # type: ignore[method-assign]
    with open(args.output, "w") as out:
        for case, result in searched(args, policy, prm):
            request = latest_request(case.messages) or ""
            reads = []
            for (tail, continuation), row in rows_of.items():
                if continuation != request or not tail.endswith("\nRequest: "):
                    continue
                enc = tokenizer(tail + continuation, return_offsets_mapping=True, add_special_tokens=False)
                spans = [(max(0, a - len(tail)), b - len(tail)) for a, b in enc["offset_mapping"][-len(row):]]
                try:
                    calls = [json.loads(line) for line in tail[: -len("\nRequest: ")].split("\n") if line]
                except json.JSONDecodeError:
                    continue  # a relevance read
                reads.append({"calls": calls, "logprobs": row, "spans": spans})
            out.write(json.dumps({"id": case.id, "request": request, "asked": len(case.ground_truth or []),
                                  "truth": case.ground_truth, "answer": result.calls, "reads": reads}) + "\n")
            out.flush()
            print(case.id, len(reads), flush=True)
            rows_of.clear()


if __name__ == "__main__":
    main()
