"""int8 dynamic quantisation of the policy's linear layers on a CPU, against float32.

``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` (weights int8, activations
quantised on the fly): on the prompts of the first BFCL simple_python cases, the agreement of the
next-token logits (largest difference, same top token at every prompt position) and the time of a
prefill and of a decoding step, interleaved rounds, the best of each; then greedy's calls on those
cases with each model. ``--per-channel`` gives each output channel its own weight scale (torch's
default is one per tensor); ``--keep down_proj`` leaves the layers of that name in float32 (the MLP
output projection reads the largest activations, which one scale per tensor quantises worst).

    OMP_NUM_THREADS=1 python benchmarks/int8_dynamic.py --data ../shared/data/bfcl_v4 --cases 3 \
        --output FILE [--per-channel] [--keep down_proj]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--data", default=None, help="BFCL data folder (default: the installed bfcl-eval package's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=None)
    parser.add_argument("--keep", nargs="*", default=[], help="linear layer names left in float32")
    parser.add_argument("--per-channel", action="store_true",
                        help="one weight scale per output channel (default: one per tensor, torch's default)")
    args = parser.parse_args()

    import torch

    from langchain_toolprm.components import load_policy
    from langchain_toolprm.evaluation.cases import load_cases
    from langchain_toolprm.evaluation.config import EvalConfig
    from langchain_toolprm.lm import CausalLM
    from langchain_toolprm.messages import to_chat_messages
    from langchain_toolprm.models.registry import DEFAULT_POLICY
    from langchain_toolprm.policy.transformers import TransformersPolicy
    from langchain_toolprm.search.config import SearchConfig
    from langchain_toolprm.search.run import run_search
    from langchain_toolprm.tools import to_tool_specs

    fp32 = load_policy(DEFAULT_POLICY)
    assert isinstance(fp32, TransformersPolicy)
    started = time.perf_counter()
    # The head shares its weight with the embedding; quantising it would untie them, so it stays float.
    qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if args.per_channel
               else torch.ao.quantization.default_dynamic_qconfig)
    chosen = {name: qconfig for name, module in fp32.lm.model.named_modules()
              if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in args.keep}
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(fp32.lm.model), chosen, dtype=torch.qint8)
    quantized.lm_head = fp32.lm.model.lm_head
    quantize_seconds = time.perf_counter() - started
    int8 = TransformersPolicy(CausalLM(quantized, fp32.lm.tokenizer, name="int8"))
    cases = load_cases(EvalConfig(data=args.data, categories=["simple_python"], limit=args.cases))

    def passes(lm: CausalLM, ids: torch.Tensor) -> tuple[float, float, torch.Tensor]:
        started = time.perf_counter()
        cache = lm._cache([], 0, 1)
        hidden = lm._hidden(ids, cache, None)
        prefill = time.perf_counter() - started
        logits = lm._logits(hidden[0])
        started = time.perf_counter()
        for _ in range(8):
            lm._hidden(ids[:, -1:], cache, None)
        return prefill, (time.perf_counter() - started) / 8, logits

    rows = []
    for case in cases:
        chat, specs = to_chat_messages(case.messages), to_tool_specs(case.tools)
        ids = torch.tensor([fp32.lm.encode(fp32.render_prompt(chat, specs))])
        best: dict[str, list[float]] = {"fp32": [float("inf")] * 2, "int8": [float("inf")] * 2}
        logits: dict[str, Any] = {}
        for _ in range(args.rounds):
            for name, policy in (("fp32", fp32), ("int8", int8)):
                prefill, step, logits[name] = passes(policy.lm, ids)
                best[name] = [min(best[name][0], prefill), min(best[name][1], step)]
        calls = {name: run_search(case.messages, case.tools, policy=policy, config=SearchConfig(strategy="greedy")
                                  ).calls for name, policy in (("fp32", fp32), ("int8", int8))}
        rows.append({
            "case": case.id, "prompt_tokens": ids.shape[1],
            "max_logit_diff": float((logits["int8"] - logits["fp32"]).abs().max()),
            "top1_agreement": float((logits["int8"].argmax(-1) == logits["fp32"].argmax(-1)).float().mean()),
            "last_max_logit_diff": float((logits["int8"][-1] - logits["fp32"][-1]).abs().max()),
            "last_top1_equal": bool(logits["int8"][-1].argmax() == logits["fp32"][-1].argmax()),
            "prefill_s": {k: round(v[0], 4) for k, v in best.items()},
            "decode_step_s": {k: round(v[1], 4) for k, v in best.items()},
            "greedy_calls_equal": calls["fp32"] == calls["int8"], "greedy_calls": calls,
        })
        print(json.dumps(rows[-1]), flush=True)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"threads": torch.get_num_threads(), "keep": args.keep, "per_channel": args.per_channel,
                       "quantize_seconds": round(quantize_seconds, 1), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
