"""Diagnostic (no search): on unseen cases 81-100, the later calls of the references and of the call_words run's
right lists that the word rules' variants judge differently: the set rule or the per-call rule, words counted
(4108cef) or told apart only, numbers read apart from units (fb21947) or not (f785e5d's regex).

    python variants.py b81100 ../unseen81_call_words_parallel/beam_N2_M4.jsonl ../unseen81_call_words/beam_N2_M4.jsonl
"""
import json
import re
import sys
from collections import Counter

from langchain_toolprm.search import copying

NEW, OLD = copying._WORD, re.compile(r"[^\W_]+")


def keeps(request_text: str, earlier: list, call: dict, *, per_call: bool, counted: bool, split: bool) -> bool:
    copying._WORD = NEW if split else OLD
    try:
        request, words = copying.request_words(request_text), copying.call_words
        if not counted:
            request = Counter(set(request))
            def words(c: dict) -> Counter:  # noqa: E306
                return Counter(set(copying.call_words(c)))
        copied = words(call) & request
        if per_call:
            return bool(copied) and not any(copied <= words(c) for c in earlier)
        most: Counter = Counter()
        for c in earlier:
            most |= words(c)
        return bool(copied - most)
    finally:
        copying._WORD = NEW


VARIANTS = {f"{'per_call' if p else 'set'}{'+counted' if c else ''}{'' if s else ' (units glued)'}": (p, c, s)
            for p in (True, False) for c in (True, False) for s in (True, False)}
data, runs = sys.argv[1], sys.argv[2:]
lists = []
for c in ("parallel", "parallel_multiple"):
    questions = {json.loads(line)["id"]: json.loads(line)["question"][0][-1]["content"]
                 for line in open(f"{data}/BFCL_v4_{c}.json")}
    for line in open(f"{data}/possible_answer/BFCL_v4_{c}.json"):
        answer = json.loads(line)
        calls = [{"name": name, "arguments": {k: v[0] for k, v in args.items() if v and v[0] != ""}}
                 for part in answer["ground_truth"] for name, args in part.items()]
        lists.append(("reference", answer["id"], questions[answer["id"]], calls))
    for path in runs:
        for line in open(path):
            row = json.loads(line)
            if row["correct"] and row["id"] in questions:
                lists.append(("call_words right", row["id"], questions[row["id"]], row["calls"]))
drops = Counter()
for kind, cid, text, calls in lists:
    for k in range(1, len(calls)):
        verdict = {v: keeps(text, calls[:k], calls[k], per_call=p, counted=c, split=s) for v, (p, c, s) in VARIANTS.items()}
        drops.update((kind, v) for v, kept in verdict.items() if not kept)
        drops[kind, "later calls"] += 1
        if len(set(verdict.values())) > 1:
            print(kind, cid, f"call {k + 1} of {len(calls)} dropped by:", [v for v, kept in verdict.items() if not kept])
for kind in ("reference", "call_words right"):
    print(kind, "later calls", drops[kind, "later calls"], "dropped:", {v: drops[kind, v] for v in VARIANTS})
