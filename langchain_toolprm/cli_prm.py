"""The PRM data and training subcommands of ``toolprm``: ``build-data``, ``train`` and ``eval-prm``."""

from __future__ import annotations

import argparse
from typing import get_args

from langchain_toolprm.cli_options import (
    Command,
    option,
    parameter_default,
    set_threads,
    thread_count,
    threads_argument,
)
from langchain_toolprm.data.build import DEFAULT_TIME_BUDGET_S, BuildConfig
from langchain_toolprm.data.rollouts import RolloutConfig
from langchain_toolprm.train.config import Objective, PromptFormat, TrainConfig
from langchain_toolprm.train.evaluate import evaluate_prms

__all__ = ["PRM_COMMANDS"]


def _build_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", "-o", default="toolprm-data", help="output folder (re-running resumes)")
    sources = parser.add_argument_group("sources")
    sources.add_argument("--bfcl-dir", help="BFCL data folder (default: the shared copy or bfcl-eval's data)")
    sources.add_argument("--categories", nargs="*", metavar="CATEGORY",
                         help="BFCL categories (default: the live_* ones; none: skip BFCL)")
    option(sources, BuildConfig, "xlam", "--xlam", nargs="+", metavar="FILE_OR_HUB_ID",
                         help="xLAM-form records: files, or hub ids through `datasets`")
    option(sources, BuildConfig, "glaive", "--glaive", nargs="+", metavar="FILE",
            help="ShareGPT/glaive tool conversations")
    option(sources, BuildConfig, "compose_parallel", "--compose-parallel", type=int, metavar="N",
            help="parallel queries composed from single-call ones")
    option(sources, BuildConfig, "compose_repeated", "--compose-repeated", type=int, metavar="N",
            help="parallel queries composed from single-call ones that call the same function")
    option(sources, BuildConfig, "max_parts", "--max-parts", type=int, metavar="K",
            help="most single-call queries in one composed query")
    option(sources, BuildConfig, "removed_tool", "--removed-tool", type=int, metavar="N",
            help="irrelevance queries: relevant ones with the tools they call removed")
    option(sources, BuildConfig, "follow_ups", "--follow-ups", type=int, metavar="N",
            help="conversations continued after the reference calls' tool results")
    sources.add_argument("--limit", type=int, help="at most this many queries per source")
    rollouts = parser.add_argument_group("rollouts")
    option(rollouts, BuildConfig, "policies", "--policy", nargs="*", metavar="MODEL",
            help="rollout policies, used in turn until each one's time budget is spent (none: rule branches only)")
    rollouts.add_argument("--time-budget", nargs="*", type=float, default=None, metavar="SECONDS",
                          help=f"policy seconds, one per policy (default: {DEFAULT_TIME_BUDGET_S:.0f} each)")
    option(rollouts, RolloutConfig, "samples", "--samples", type=int, metavar="K", help="complete samples per query")
    option(rollouts, RolloutConfig, "branch_width", "--branch-width", type=int, metavar="M",
            help="policy alternatives per decision of the reference path")
    option(rollouts, RolloutConfig, "temperature", "--temperature", type=float,
            help="sampling temperature of rollouts")
    option(rollouts, RolloutConfig, "max_new_tokens", "--max-new-tokens", type=int,
            help="token limit of a complete sample")
    option(rollouts, BuildConfig, "rollout_batch", "--rollout-batch", type=int, metavar="N",
            help="queries whose policy rollouts decode in one batch (1: one query at a time)")
    option(rollouts, BuildConfig, "max_prompt_tokens", "--max-prompt-tokens", type=int,
            help="longer policy prompts get rule branches only")
    labels = parser.add_argument_group("labels and splits")
    labels.add_argument("--equivalence", action="store_true",
                        help="label values by BFCL acceptable-value rules instead of exact match")
    option(labels, BuildConfig, "mask_ratio", "--mask-ratio", type=float, help="fraction of queries with masked names")
    option(labels, BuildConfig, "test_fraction", "--test-fraction", type=float,
            help="share of queries in the test split")
    option(labels, BuildConfig, "seed", "--seed", type=int, help="random seed (rollouts, masking, split)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    threads_argument(parser)


def _build_data(args: argparse.Namespace) -> int:
    import json

    from langchain_toolprm.data.build import build_dataset, format_table

    policies = list(args.policy or [])
    budgets = args.time_budget if args.time_budget is not None else [DEFAULT_TIME_BUDGET_S] * len(policies)
    fields = {"bfcl_dir": args.bfcl_dir} if args.bfcl_dir else {}
    if args.categories is not None:
        fields["bfcl_categories"] = args.categories
    config = BuildConfig(
        out=args.out, xlam=args.xlam, glaive=args.glaive, compose_parallel=args.compose_parallel,
        compose_repeated=args.compose_repeated,
        max_parts=args.max_parts, removed_tool=args.removed_tool, follow_ups=args.follow_ups, limit=args.limit,
        policies=policies, time_budgets_s=budgets, threads=thread_count(args.threads),
        rollout=RolloutConfig(samples=args.samples, temperature=args.temperature, branch_width=args.branch_width,
                              max_new_tokens=args.max_new_tokens, seed=args.seed),
        rollout_batch=args.rollout_batch, max_prompt_tokens=args.max_prompt_tokens, mask_ratio=args.mask_ratio,
        equivalence=args.equivalence,
        test_fraction=args.test_fraction, seed=args.seed, **fields,
    )
    stats = build_dataset(config, progress=not args.no_progress)
    print(format_table(stats))
    print(json.dumps({k: v for k, v in stats.items() if k != "splits"}, indent=2))
    print(f"built in {stats['build_seconds']:.0f} s; train.jsonl, test.jsonl, masks.jsonl, stats.md in {args.out}")
    return 0


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, nargs="+",
                        help="build-data folders (or train JSONL files); several are trained on together")
    parser.add_argument("--out", "-o", required=True, help="output folder (re-running resumes its checkpoint)")
    option(parser, TrainConfig, "base", "--base", help="backbone model reference")
    parser.add_argument("--init", help="a trained LoRA PRM ('default' or a folder) to train further")
    option(parser, TrainConfig, "dtype", "--dtype", help="weight dtype (bfloat16 on a GPU)")
    option(parser, TrainConfig, "objective", "--objective", choices=list(get_args(Objective)),
            help="prm: every step; coarse: no value labels; outcome: whole-answer label only; decisions: the "
                 "call-list steps only (call or answer, which function, one more call or stop)")
    option(parser, TrainConfig, "prompt", "--prompt", choices=list(get_args(PromptFormat)))
    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--no-lora", action="store_true", help="full fine-tuning")
    option(lora, TrainConfig, "lora_r", "--lora-r", type=int, help="LoRA rank")
    option(lora, TrainConfig, "lora_alpha", "--lora-alpha", type=int, help="LoRA alpha (scale = alpha / r)")
    lora.add_argument("--lora-layers", type=int, help="adapt the top N layers only (cheaper backward)")
    optim = parser.add_argument_group("optimisation")
    option(optim, TrainConfig, "epochs", "--epochs", type=float, help="passes over the training data")
    option(optim, TrainConfig, "batch_size", "--batch-size", type=int, help="queries per optimizer step")
    option(optim, TrainConfig, "lr", "--lr", type=float, help="peak learning rate")
    option(optim, TrainConfig, "warmup_ratio", "--warmup-ratio", type=float,
           help="share of steps spent warming up from a learning rate of 0 (rounded; none when it rounds to 0)")
    option(optim, TrainConfig, "weight_decay", "--weight-decay", type=float, help="AdamW weight decay")
    optim.add_argument("--no-balance", action="store_true", help="no per-tag balancing of + and - in the loss")
    option(optim, TrainConfig, "rank_weight", "--rank-weight", type=float,
            help="weight of the ranking loss among candidates of one state (0: pointwise only)")
    limits = parser.add_argument_group("limits")
    option(limits, TrainConfig, "max_context_tokens", "--max-context-tokens", type=int,
            help="queries with a longer PRM context are left out")
    option(limits, TrainConfig, "max_tokens", "--max-tokens", type=int, help="sequence cap per query")
    limits.add_argument("--max-queries", type=int, help="train on at most N queries (policy rollouts first)")
    limits.add_argument("--mix-sources", action="store_true",
                        help="with --max-queries: every source in turn, so small sources are not crowded out")
    option(limits, TrainConfig, "sources", "--sources", nargs="+", metavar="SOURCE",
           help="train on these sources' queries only (as build-data's Table 1 names them)")
    limits.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    limits.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop and save after this long")
    option(limits, TrainConfig, "stop_at_step", "--stop-at-step", type=int, metavar="STEP",
           help="stop and save at this step of the planned schedule (the same command without it resumes)")
    option(parser, TrainConfig, "save_every", "--save-every", type=int, help="checkpoint every N optimizer steps")
    option(parser, TrainConfig, "seed", "--seed", type=int, help="random seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    threads_argument(parser)


def _train(args: argparse.Namespace) -> int:
    import json

    from langchain_toolprm.train import train_prm

    config = TrainConfig(
        data=args.data, out=args.out, base=args.base, init=args.init, mix_sources=args.mix_sources,
        sources=args.sources,
        dtype=args.dtype, objective=args.objective, prompt=args.prompt,
        lora=not args.no_lora,
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_layers=args.lora_layers, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
        balance=not args.no_balance, rank_weight=args.rank_weight,
        max_context_tokens=args.max_context_tokens, max_tokens=args.max_tokens, max_queries=args.max_queries,
        max_steps=args.max_steps, time_budget_s=args.time_budget, stop_at_step=args.stop_at_step,
        save_every=args.save_every, threads=thread_count(args.threads), seed=args.seed,
    )
    summary = train_prm(config, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    print(f"PRM saved in {args.out}")
    return 0


def _eval_prm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help="PRM folders (adapters or full models), or 'default'")
    parser.add_argument("--data", required=True, help="a build-data folder")
    parser.add_argument("--split", default=parameter_default(evaluate_prms, "split"), help="the split to score")
    parser.add_argument("--aggregation", choices=["min", "last"],
                        help="trajectory verdict from the minimum step score or the last one "
                             "(default: last for outcome models, min otherwise)")
    parser.add_argument("--max-context-tokens", type=int,
                        default=parameter_default(evaluate_prms, "max_context_tokens"),
                        help="queries with a longer PRM context (for any of the models) are left out")
    parser.add_argument("--max-tokens", type=int, default=parameter_default(evaluate_prms, "max_tokens"),
                        help="a query's trajectories beyond this many tokens are left out; only those every "
                             "model kept are judged")
    parser.add_argument("--limit", type=int, help="the first N queries whose context fits every model")
    parser.add_argument("--per-source", type=int, metavar="N",
                        help="the first N queries of each source (composed, follow-up, bfcl:live_simple...)")
    parser.add_argument("--output", "-o", help="write the results as JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    threads_argument(parser)


def _eval_prm(args: argparse.Namespace) -> int:
    import json

    from langchain_toolprm.evaluation.render import prm_eval_tables

    set_threads(args.threads)
    results = evaluate_prms(args.models, args.data, split=args.split, aggregation=args.aggregation,
                            max_context_tokens=args.max_context_tokens, max_tokens=args.max_tokens, limit=args.limit,
                            per_source=args.per_source, progress=not args.no_progress)
    print(prm_eval_tables(results))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump([r.model_dump() for r in results], handle, indent=2)
    return 0


PRM_COMMANDS: dict[str, Command] = {
    "build-data": Command("build PRM training data: rollouts, step labels, masking, train/test JSONL, Table 1",
                          _build_data_arguments, _build_data),
    "train": Command("fine-tune a generative PRM (LoRA optional) on build-data output; resumable",
                     _train_arguments, _train),
    "eval-prm": Command("reward-model loss, step and trajectory accuracy on a test split, beside 'always +'",
                        _eval_prm_arguments, _eval_prm),
}
