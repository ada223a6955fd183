"""Offline (session 25): signals for "does the latest call add to the request?", on `token_gains.py`'s reads.

For each read list G (two calls or more) whose list less its latest call P was read too, the signals:
- ``gain``: log P(request | G) - log P(request | P), the summed gain that `Coverage.margin` drops on;
- ``copied_gain``: that gain over the request's tokens whose words the latest call's values copy;
- ``new_words``: how many words of the request the latest call copies (its function's name and its
  values, `langchain_toolprm.search.copying`) that no call of P copies: ``Coverage(drop_on="words")``
  drops below 1; ``new_value_words`` the same with function names left out.
Labels: ``needed`` (the call matches a reference call that P has not matched), and whether G holds
more calls than the request asks for. Prints, per signal and threshold, the calls a drop at it takes.

    python signals.py reads_comp_partial.jsonl reads_simple.jsonl reads_live_par.jsonl
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from langchain_toolprm.search.copying import call_words, request_words

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "session24" / "probe"))
from gains import label


def spans_of(request: str, copied: set[str]) -> list[tuple[int, int]]:
    """The character spans of the request's words that ``copied`` holds (lower-cased, as `search.copying`)."""
    return [(m.start(), m.end()) for m in re.finditer(r"[^\W_]+", request) if m.group().lower() in copied]


def needed(calls: list[dict[str, Any]], truth: list[dict[str, Any]]) -> bool:
    """Session 24's label: the latest call matches a reference call that the calls before it have not."""
    return label(calls, truth) == "needed"


def values(call: dict[str, Any]) -> dict[str, Any]:
    """The call without its function's name: its values' words alone."""
    return {"name": "", "arguments": call["arguments"]}


def by_span(read: dict[str, Any]) -> dict[tuple[int, int], float]:
    return {tuple(s): lp for s, lp in zip(read["spans"], read["logprobs"], strict=True)}


def rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    request = record["request"]
    req_words = request_words(request)
    reads = {json.dumps(r["calls"]): r for r in record["reads"]}
    out = []
    for read in reads.values():
        calls = read["calls"]
        before = reads.get(json.dumps(calls[:-1]))
        if len(calls) < 2 or before is None:
            continue
        last = calls[-1]
        copied = spans_of(request, call_words(last) & req_words)
        after_s, before_s = by_span(read), by_span(before)
        copied_gain = sum(after_s[s] - before_s[s] for s in after_s
                          if s in before_s and any(s[0] < b and a < s[1] for a, b in copied))
        out.append({
            "id": record["id"], "n": len(calls), "asked": record["asked"],
            "needed": needed(calls, record["truth"] or []),
            "gain": sum(read["logprobs"]) - sum(before["logprobs"]),
            "copied_gain": copied_gain,
            "new_words": len((call_words(last) & req_words) - set().union(*(call_words(c) for c in calls[:-1]))),
            "new_value_words": len((call_words(values(last)) & req_words)
                                   - set().union(*(call_words(values(c)) for c in calls[:-1]))),
            "last": last,
        })
    return out


def main() -> None:
    data = []
    for path in sys.argv[1:]:
        with open(path) as lines:
            data += [r for line in lines for r in rows(json.loads(line))]
    groups = {"needed": [d for d in data if d["needed"]],
              "within asked, not needed": [d for d in data if not d["needed"] and d["n"] <= d["asked"]],
              "beyond asked": [d for d in data if d["n"] > d["asked"]]}
    print({k: len(v) for k, v in groups.items()})
    for signal, thresholds in (("gain", (0, 1, 2, 3, 4)), ("copied_gain", (0, 1, 2, 3, 4, 6)), ("new_words", (1, 2)),
                               ("new_value_words", (1,))):
        for t in thresholds:
            dropped = {k: sum(d[signal] < t for d in v) for k, v in groups.items()}
            print(f"{signal:16s} drop below {t:>3}: " + ", ".join(f"{k} {dropped[k]}/{len(groups[k])}"
                                                             for k in groups))
    for d in sorted(data, key=lambda d: (d["id"], d["n"])):
        tag = "N" if d["needed"] else ("b" if d["n"] > d["asked"] else "w")
        print(tag, d["id"], d["n"], d["asked"], f"gain {d['gain']:6.1f} copied {d['copied_gain']:6.1f} "
              f"new words {d['new_words']}", json.dumps(d["last"])[:110])


if __name__ == "__main__":
    main()
