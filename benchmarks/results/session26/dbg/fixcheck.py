"""Diagnostic: which calls of a run's call lists the per-call word rule would drop (no search is run).

Run once with the package at f785e5d and once at fb21947 (the number fix) on the defaults' lists:

    python fixcheck.py unseen_defaults/beam_N2_M4.jsonl b6180
"""
import json
import sys

from langchain_toolprm.search.copying import adds_words, request_words

run, data = sys.argv[1], sys.argv[2]
questions = {json.loads(line)["id"]: json.loads(line) for c in ("parallel", "parallel_multiple")
             for line in open(f"{data}/BFCL_v4_{c}.json")}
for line in open(run):
    r = json.loads(line)
    calls = r["calls"]
    if len(calls) < 2:
        continue
    request = request_words(questions[r["id"]]["question"][0][-1]["content"])
    drops = [k for k in range(1, len(calls)) if not adds_words(request, calls[:k], calls[k], per_call=True)]
    if drops:
        print(r["id"], "right" if r["correct"] else "wrong", len(calls), "calls; dropped at", drops)
