"""The packaged PRM's LoRA on the policy's weights: forward hooks against peft's switchable adapter.

Exactness, on the first BFCL simple_python cases: the PRM's P(+) of the first step's candidates by
the hook adapter of `langchain_toolprm.prm.shared` and by peft's ``PeftModel``, against the merged
second copy (the reference); the policy's next-token logits with peft's ``disable_adapter()``
against the plain model. Speed, interleaved rounds and the best of each: a prefill of the first
case's prompt and a decoding step after it, for the policy (plain, peft disabled) and the PRM
(merged copy, hooks, peft enabled). Resident memory after loading the policy, the PRM on its weights,
then the merged copy.

    OMP_NUM_THREADS=1 python benchmarks/lora_switch.py --data ../shared/data/bfcl_v4 --cases 3 --rounds 5 --output FILE
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--data", default=None, help="BFCL data folder (default: the installed bfcl-eval package's)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import torch
    from peft import PeftModel

    from langchain_toolprm.components import load_policy, load_prm
    from langchain_toolprm.evaluation.bench import _rss_mb
    from langchain_toolprm.evaluation.cases import load_cases
    from langchain_toolprm.evaluation.config import EvalConfig
    from langchain_toolprm.grammar import Grammar
    from langchain_toolprm.lm import CausalLM
    from langchain_toolprm.messages import to_chat_messages
    from langchain_toolprm.models import load_causal_lm
    from langchain_toolprm.models.registry import DEFAULT_POLICY
    from langchain_toolprm.policy.transformers import TransformersPolicy
    from langchain_toolprm.prm.adapters import default_prm_path
    from langchain_toolprm.prm.generative import GenerativePRM
    from langchain_toolprm.prm.shared import AdaptedLM
    from langchain_toolprm.tools import to_tool_specs

    memory = {"start_mb": _rss_mb("VmRSS")}
    policy = load_policy(DEFAULT_POLICY)
    assert isinstance(policy, TransformersPolicy)
    memory["policy_mb"] = _rss_mb("VmRSS")
    shared = load_prm("default", policy)
    assert isinstance(shared, GenerativePRM) and isinstance(shared.lm, AdaptedLM)
    memory["policy_and_shared_prm_mb"] = _rss_mb("VmRSS")
    merged = GenerativePRM.from_pretrained("default")
    memory["plus_merged_copy_mb"] = _rss_mb("VmRSS")
    print(json.dumps(memory), flush=True)
    peft_model = PeftModel.from_pretrained(load_causal_lm(DEFAULT_POLICY)[0], str(default_prm_path())).eval()
    peft_lm = CausalLM(peft_model.get_base_model(), policy.lm.tokenizer, name="peft")  # LoRA layers inside
    peft_prm = GenerativePRM(peft_lm)
    cases = load_cases(EvalConfig(data=args.data, categories=["simple_python"], limit=args.cases))

    exact = []
    for case in cases:
        chat, specs = to_chat_messages(case.messages), to_tool_specs(case.tools)
        grammar = Grammar(specs)
        state = grammar.initial()
        actions = list(grammar.decision(state).actions)
        scores = {name: prm.session(chat, specs).score((), state, actions)
                  for name, prm in (("merged", merged), ("hooks", shared), ("peft", peft_prm))}
        prompt = policy.render_prompt(chat, specs)
        plain = policy.lm._logits(policy.lm.prefix(prompt).last_hidden[None])
        with peft_model.disable_adapter():
            disabled = peft_lm._logits(peft_lm.prefix(prompt).last_hidden[None])
        exact.append({
            "case": case.id, "candidates": len(actions), "p_plus_merged": scores["merged"],
            "hooks_vs_merged": max(abs(a - b) for a, b in zip(scores["hooks"], scores["merged"], strict=True)),
            "peft_vs_merged": max(abs(a - b) for a, b in zip(scores["peft"], scores["merged"], strict=True)),
            "policy_peft_disabled_vs_plain": float((disabled - plain).abs().max()),
        })
        print(json.dumps(exact[-1]), flush=True)

    prompt = policy.render_prompt(to_chat_messages(cases[0].messages), to_tool_specs(cases[0].tools))
    ids = torch.tensor([policy.lm.encode(prompt)])

    def passes(lm: CausalLM, context: Callable[[], AbstractContextManager[Any]]) -> tuple[float, float]:
        with context():
            started = time.perf_counter()
            cache = lm._cache([], 0, 1)
            lm._hidden(ids, cache, None)
            prefill = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(8):
                lm._hidden(ids[:, -1:], cache, None)
            return prefill, (time.perf_counter() - started) / 8

    configs: dict[str, tuple[CausalLM, Callable[[], AbstractContextManager[Any]]]] = {
        "policy_plain": (policy.lm, nullcontext), "policy_peft_disabled": (peft_lm, peft_model.disable_adapter),
        "prm_merged": (merged.lm, nullcontext), "prm_hooks": (shared.lm, nullcontext),
        "prm_peft": (peft_lm, nullcontext),
    }
    best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in configs}
    for _ in range(args.rounds):
        for name, (lm, context) in configs.items():
            prefill, step = passes(lm, context)
            best[name] = [min(best[name][0], prefill), min(best[name][1], step)]
    speed = {name: {"prefill_s": round(p, 4), "decode_step_s": round(d, 4)} for name, (p, d) in best.items()}
    print(json.dumps({"prompt_tokens": ids.shape[1], "threads": torch.get_num_threads(), "speed": speed}))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"threads": torch.get_num_threads(), "prompt_tokens": ids.shape[1], "memory": memory,
                       "exactness": exact, "speed": speed}, handle, indent=2)


if __name__ == "__main__":
    main()
