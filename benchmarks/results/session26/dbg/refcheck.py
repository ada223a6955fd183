"""Diagnostic: reference calls (first allowed value of each argument) that the set and per-call word rules judge differently."""
import json
import sys

from langchain_toolprm.search.copying import adds_words, request_words

data = sys.argv[1]
for c in ("parallel", "parallel_multiple"):
    questions = {json.loads(line)["id"]: json.loads(line) for line in open(f"{data}/BFCL_v4_{c}.json")}
    for line in open(f"{data}/possible_answer/BFCL_v4_{c}.json"):
        answer = json.loads(line)
        calls = [{"name": name, "arguments": {k: v[0] for k, v in args.items() if v and v[0] != ""}}
                 for part in answer["ground_truth"] for name, args in part.items()]
        request = request_words(questions[answer["id"]]["question"][0][-1]["content"])
        for k in range(1, len(calls)):
            kept = adds_words(request, calls[:k], calls[k]), adds_words(request, calls[:k], calls[k], per_call=True)
            if kept[0] != kept[1]:
                print(answer["id"], f"call {k + 1} of {len(calls)}:", "set rule keeps" if kept[0] else "set rule drops",
                      "/", "per-call rule keeps" if kept[1] else "per-call rule drops")
