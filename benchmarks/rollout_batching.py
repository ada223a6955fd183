"""Policy rollouts of `toolprm build-data`: one query at a time against several queries decoded together.

Runs the same queries twice in one process, with the seeds the build would give them: one by one
(``--rollout-batch 1``), then all in one `policy_trajectories_many` call (``--rollout-batch N``), and
prints the seconds of each, their ratio, and whether both labelled the same trajectories (they should:
each query keeps its own random generator; rounding of batched arithmetic may rarely flip a token).

Usage: OMP_NUM_THREADS=1 python benchmarks/rollout_batching.py [--queries 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import time

from langchain_toolprm.data.build import BuildConfig, default_bfcl_dir
from langchain_toolprm.data.policy_rollouts import policy_trajectories_many
from langchain_toolprm.data.rollouts import Prepared, RolloutConfig, prepare
from langchain_toolprm.data.sources import examples_from_bfcl
from langchain_toolprm.policy.transformers import TransformersPolicy


def queries(policy: TransformersPolicy, category: str, count: int, max_prompt_tokens: int) -> list[Prepared]:
    """The first ``count`` cases of a category that a build would give this policy."""
    examples, _ = examples_from_bfcl(default_bfcl_dir(), [category])
    out = []
    for example in examples:
        ready = prepare(example)
        if ready is None or example.irrelevant:
            continue
        prompt = policy.render_prompt(example.messages, ready.specs)
        if len(policy.lm.encode(prompt)) <= max_prompt_tokens:
            out.append(ready)
        if len(out) == count:
            break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--category", default="live_simple")
    parser.add_argument("--queries", type=int, default=8, help="queries, all in one batch for the batched run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    build = BuildConfig(out=".")  # the build's defaults: rollout settings, prompt limit, seed
    config: RolloutConfig = build.rollout
    policy = TransformersPolicy.from_pretrained(args.policy)
    ready = queries(policy, args.category, args.queries, build.max_prompt_tokens)
    seeds = [random.Random(f"{build.seed}:{r.example.id}").randrange(2**31) for r in ready]
    policy.lm.sample(policy.lm.prefix("Hello"), 1, max_new_tokens=4)  # first-call set-up, out of both timings

    tick = time.perf_counter()
    alone = [policy_trajectories_many(policy, [r], config, [seed])[0] for r, seed in zip(ready, seeds, strict=True)]
    one_by_one = time.perf_counter() - tick
    tick = time.perf_counter()
    together = policy_trajectories_many(policy, ready, config, seeds)
    batched = time.perf_counter() - tick

    def summary(results: list) -> list:
        return [repr(r) if isinstance(r, Exception) else [t.to_json() for t in r] for r in results]

    same = sum(a == b for a, b in zip(summary(alone), summary(together), strict=True))
    failed = sum(isinstance(r, Exception) for r in alone + together)
    print(f"policy {args.policy}, {len(ready)} {args.category} queries, {args.threads} torch thread(s), "
          f"K={config.samples} M={config.branch_width}")
    print("| rollouts | queries | seconds | s/query |")
    print("|---|---:|---:|---:|")
    print(f"| one by one (rollout_batch=1) | {len(ready)} | {one_by_one:.1f} | {one_by_one / len(ready):.1f} |")
    print(f"| batched (rollout_batch={len(ready)}) | {len(ready)} | {batched:.1f} | {batched / len(ready):.1f} |")
    print(f"speed-up: {one_by_one / batched:.2f}x; queries with identical trajectories: {same}/{len(ready)}; "
          f"failed rollouts: {failed}")


if __name__ == "__main__":
    main()
