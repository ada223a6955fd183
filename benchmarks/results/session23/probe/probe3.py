"""Exploratory: log P(request | the policy's own prompt with all tools) - log P(request | its prompt without tools)."""
import json, sys, torch
from langchain_toolprm import load_policy
from langchain_toolprm.evaluation import load_bfcl
from langchain_toolprm.messages import to_chat_messages
from langchain_toolprm.models.registry import DEFAULT_POLICY
from langchain_toolprm.messages import latest_request
from langchain_toolprm.tools import ToolSchemaError, to_tool_specs
policy = load_policy(DEFAULT_POLICY)
lm = policy.lm if hasattr(policy, "lm") else None
model = lm.model
from transformers import PreTrainedTokenizerBase
tok = next(v for v in vars(lm).values() if isinstance(v, PreTrainedTokenizerBase))

@torch.no_grad()
def read(prompt, req):
    i = prompt.rfind(req)
    assert i >= 0
    pre = tok(prompt[:i], add_special_tokens=False)["input_ids"]
    body = tok(req, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([pre + body])
    logits = model(ids).logits[0].float().log_softmax(-1)
    return sum(logits[len(pre) + k - 1, t].item() for k, t in enumerate(body)), len(pre) + len(body)

data, out = sys.argv[1], sys.argv[2]
with open(out, "w") as fh:
    for case in load_bfcl(data, sys.argv[3:]):
        try:
            specs = to_tool_specs(case.functions)
        except ToolSchemaError:
            continue
        chat = to_chat_messages(case.messages); req = latest_request(chat)
        w, nw = read(policy.session(chat, specs, seed=0).prompt, req)
        wo, nwo = read(policy.session(chat, [], seed=0).prompt, req)
        fh.write(json.dumps({"id": case.id, "category": case.category, "with": w, "without": wo, "tokens": [nw, nwo]}) + "\n"); fh.flush()
        print(case.id, round(w - wo, 1), nw, nwo, flush=True)
