import json, sys
from langchain_toolprm import load_policy
from langchain_toolprm.evaluation import load_bfcl
from langchain_toolprm.messages import to_chat_messages
from langchain_toolprm.models.registry import DEFAULT_POLICY
from langchain_toolprm.messages import latest_request
policy = load_policy(DEFAULT_POLICY)
CHAN_SYS = "Each function below is followed by a request that a user could make of it."
BASES = {"ask": "Function: ask(question): Sends the user's message to a general assistant.\nRequest: ",
         "chat": "Function: chat(message): Replies to anything the user says.\nRequest: "}
data, out = sys.argv[1], sys.argv[2]; cats = sys.argv[3:]
with open(out, "w") as fh:
    for case in load_bfcl(data, cats):
        req = latest_request(to_chat_messages(case.messages))
        cs = policy.session([{"role": "system", "content": CHAN_SYS},
                             {"role": "user", "content": "Write the function and then a request for it."}], [], seed=0)
        rows = cs.token_logprobs([(b, req) for b in BASES.values()])
        rec = {"id": case.id, **{k: sum(r) for k, r in zip(BASES, rows)}}
        fh.write(json.dumps(rec) + "\n"); fh.flush()
