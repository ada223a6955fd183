"""Which calls each word rule would drop, read from held-out references and held-out runs' lists (no search).

Rules: the set rule and the per-call rule, with words as sets (f785e5d/fb21947) or counted (this session).
A later call of a reference list, or of a list a run got right, is a right call: dropping it is a loss.
A call beyond the number the reference asks for is one too many: dropping it is a gain.
"""
import glob, json, os, sys
from collections import Counter
sys.path.insert(0, "/work/main")
from langchain_toolprm.search.copying import call_words, request_words

def adds(request, earlier, call, per_call, counted):
    cw = (lambda c: call_words(c)) if counted else (lambda c: Counter(set(call_words(c))))
    req = request if counted else Counter(set(request))
    copied = cw(call) & req
    if per_call:
        return bool(copied) and not any(copied <= cw(c) for c in earlier)
    most = Counter()
    for c in earlier:
        most |= cw(c)
    return bool(copied - most)

RULES = {f"{'call_words' if p else 'words'}{'+counted' if c else ''}": (p, c) for p in (False, True) for c in (False, True)}

def load(data):
    cases, refs = {}, {}
    for f in glob.glob(f"{data}/BFCL_v4_*.json"):
        for line in open(f):
            r = json.loads(line); turn = r["question"][-1]
            cases[r["id"]] = [m["content"] for m in turn if m["role"] == "user"][-1]
    for f in glob.glob(f"{data}/possible_answer/BFCL_v4_*.json"):
        for line in open(f):
            r = json.loads(line); gt = r["ground_truth"]
            refs[r["id"]] = [{"name": n, "arguments": {k: next((o for o in v if o != ""), None) for k, v in a.items()
                                                         if any(o != "" for o in v)}}
                             for g in gt for n, a in g.items()]
    return cases, refs

def positions(request, calls):
    """For each call after the first: which rules keep it."""
    w = request_words(request)
    return [{r: adds(w, calls[:i], calls[i], *pc) for r, pc in RULES.items()} for i in range(1, len(calls))]

SOURCES = [("/work/shared/data/bfcl_v4", "live_parallel"), ("/tmp/ho_comp", "composed"), ("/tmp/s24/comp", "composed"),
           ("/tmp/s22/ho10", "composed"), ("/tmp/s26/ho165", "composed")]
tally = Counter(); seen = set(); examples = []
for data, prefix in SOURCES:
    cases, refs = load(data)
    for cid, ref in refs.items():
        if not cid.startswith(prefix) or cid not in cases:
            continue
        key = ("ref", cases[cid], json.dumps(ref))
        if key in seen:
            continue
        seen.add(key)
        for i, keep in enumerate(positions(cases[cid], ref), 1):
            tally["ref right", "n"] += 1
            for r, k in keep.items():
                tally["ref right", r] += (not k)
                if not k and r == "call_words+counted":
                    examples.append(("ref dropped", cid, i, ref[i]))
    runs = [f for f in glob.glob("/work/main/benchmarks/results/**/*.jsonl", recursive=True)
            if os.path.exists(os.path.join(os.path.dirname(f), "manifest.json"))]
    for f in runs:
        m = json.load(open(os.path.join(os.path.dirname(f), "manifest.json")))
        if prefix == "composed" and m["fingerprint"]["data"] != data:
            continue
        for line in open(f):
            r = json.loads(line)
            if "id" not in r or "calls" not in r or not r["id"].startswith(prefix) or r["id"] not in refs or r["id"] not in cases:
                continue
            key = (r["id"], cases[r["id"]], json.dumps(r["calls"]))
            if key in seen:
                continue
            seen.add(key)
            ref = refs[r["id"]]
            for i, keep in enumerate(positions(cases[r["id"]], r["calls"]), 1):
                kind = "run right" if r.get("correct") else ("run beyond asked" if i >= len(ref) else None)
                if kind is None:
                    continue
                tally[kind, "n"] += 1
                for rule, k in keep.items():
                    tally[kind, rule] += (not k)
                if keep["call_words+counted"] != keep["call_words"]:
                    examples.append((f"{kind}: counting changes the verdict", r["id"], i, r["calls"][i], keep))
for kind in ("ref right", "run right", "run beyond asked"):
    print(f"{kind:18s} n={tally[kind, 'n']:4d}  dropped: " + "  ".join(f"{r}={tally[kind, r]}" for r in RULES))
for e in examples[:60]:
    print(*e)
