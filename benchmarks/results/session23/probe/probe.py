"""Offline: can the policy tell whether any offered function fits the request?"""
import json, sys, time
from langchain_toolprm import load_policy
from langchain_toolprm.evaluation import load_bfcl
from langchain_toolprm.messages import to_chat_messages
from langchain_toolprm.models.registry import DEFAULT_POLICY
from langchain_toolprm.messages import latest_request

data, out = sys.argv[1], sys.argv[2]
cats = sys.argv[3:]
policy = load_policy(DEFAULT_POLICY)
JUDGE_SYS = "You decide whether a function can carry out a user's request. Answer with Yes or No only."
CHAN_SYS = "Each function below is followed by a request that a user could make of it."

def fdesc(f):
    params = ", ".join(f.get("parameters", {}).get("properties", {}))
    return f"{f['name']}({params}): {f.get('description','')[:400]}"

with open(out, "w") as fh:
    for case in load_bfcl(data, cats):
        t = time.time()
        chat = to_chat_messages(case.messages)
        req = latest_request(chat)
        rows = []
        for f in case.functions:
            js = policy.session([{"role": "system", "content": JUDGE_SYS},
                                 {"role": "user", "content": f"Function: {fdesc(f)}\nRequest: {req}\nCan this function carry out the request?"}], [], seed=0)
            yes, no = js.token_logprobs([("", "Yes"), ("", "No")])
            cs = policy.session([{"role": "system", "content": CHAN_SYS},
                                 {"role": "user", "content": "Write the function and then a request for it."}], [], seed=0)
            withf, without = cs.token_logprobs([(f"Function: {fdesc(f)}\nRequest: ", req), ("Request: ", req)])
            rows.append({"name": f["name"], "judge": yes[0] - no[0], "with": sum(withf), "without": sum(without), "ntok": len(withf)})
        rec = {"id": case.id, "category": case.category if hasattr(case, "category") else case.id.rsplit("_", 1)[0], "functions": rows}
        fh.write(json.dumps(rec) + "\n"); fh.flush()
        print(case.id, len(rows), round(max(r["judge"] for r in rows), 2), round(max(r["with"] - r["without"] for r in rows), 1), f"{time.time()-t:.1f}s", flush=True)
