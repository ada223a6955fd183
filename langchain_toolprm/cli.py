"""The ``toolprm`` command: one subcommand per task, each a small function with lazy imports.

Subcommands live in the `COMMANDS` table: a name, a one-line help, a function that declares the
arguments and a function that runs them. Heavy imports (torch, transformers, matplotlib) happen inside
the run functions, so ``toolprm --help`` answers at once and a subcommand pays only for what it uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_args

from langchain_toolprm.search.config import Aggregation, SearchConfig

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """One subcommand.

    Attributes:
        help: The one-line description shown by ``toolprm --help``.
        add_arguments: Declares the subcommand's arguments on its parser.
        run: Runs the parsed arguments; returns the exit status.

    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------------


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="BFCL file or folder, or a record-form file (query/tools/answers). "
                                     "Default: the BFCL data of the installed bfcl-eval package.")
    data.add_argument("--answers", help="BFCL possible_answer folder, when not beside the data "
                                        "(record-form files carry their answers).")
    data.add_argument("--categories", nargs="+", metavar="CATEGORY",
                      help="BFCL categories to load from a folder (default: all single-turn Python ones).")
    data.add_argument("--limit", type=int, help="at most this many cases per category (the first ones)")
    models = parser.add_argument_group("models")
    models.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct", help="policy model reference")
    models.add_argument("--prm", default="default",
                        help="PRM for beam and best_of_n: 'default' (the packaged trained one), 'rules' "
                             "or a model reference")
    grid = parser.add_argument_group("strategies and budgets")
    grid.add_argument("--strategies", nargs="+", default=["greedy", "beam"],
                      choices=["unconstrained", "greedy", "beam", "best_of_n", "majority"], help="strategies to run")
    grid.add_argument("--beams", nargs="+", type=int, default=[2], metavar="N", help="N values (beams kept)")
    grid.add_argument("--widths", nargs="+", type=int, default=[4], metavar="M",
                      help="M values (candidates per beam and step)")
    grid.add_argument("--samples", nargs="+", type=int, metavar="K",
                      help="num_samples for best_of_n/majority (default: N*M for each grid pair)")
    search = parser.add_argument_group("search settings")
    search.add_argument("--seed", type=int, default=0, help="sampling seed")
    search.add_argument("--temperature", type=float, default=0.8, help="sampling temperature of free values")
    search.add_argument("--aggregation", default=SearchConfig.model_fields["aggregation"].default,
                        choices=list(get_args(Aggregation)), help="how a path's step scores become its score")
    search.add_argument("--max-new-tokens", type=int, default=256, help="token limit of a generated answer")
    parser.add_argument("--output", "-o", default="toolprm-eval",
                        help="result folder (re-running with the same folder resumes)")
    parser.add_argument("--plot", metavar="PNG", help="also draw accuracy against compute to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _threads_argument(parser)


def _threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch threads (default: the cores idle at start, i.e. cores minus the 1-minute load "
                             "average, at least 1; $OMP_NUM_THREADS instead when it is set)")


def _threads(requested: int | None) -> int | None:
    """The torch thread count for ``--threads``: the request, else the cores idle now; ``None``: leave torch's.

    Torch starts one thread per core, which is right on an idle machine and slow on a shared one: threads
    that wait for cores other jobs hold wait for one another too (measured on 2 cores at a load average of
    7-9: the demo's first search took 70 s on one thread, 381 s on two; docs/benchmarks.md). So without a
    request the count is the cores that are idle when the command starts. ``$OMP_NUM_THREADS``, when set,
    is the user's request already, and torch has read it.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError("--threads must be at least 1")
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return None
    import torch

    idle = (os.cpu_count() or 1) - round(load)
    return max(1, min(idle, torch.get_num_threads()))  # torch's own count is the physical cores


def _set_threads(requested: int | None) -> None:
    """Apply `_threads` to torch."""
    threads = _threads(requested)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _eval(args: argparse.Namespace) -> int:
    from langchain_toolprm.evaluation.runner import EvalConfig, render_summary, run_eval

    _set_threads(args.threads)

    config = EvalConfig(
        data=args.data, answers=args.answers, categories=args.categories, limit=args.limit,
        output=args.output, policy=args.policy, prm=args.prm, strategies=args.strategies,
        beams=args.beams, widths=args.widths, samples=args.samples, seed=args.seed,
        temperature=args.temperature, aggregation=args.aggregation, max_new_tokens=args.max_new_tokens,
        progress=not args.no_progress,
    )
    summary = run_eval(config)
    render_summary(summary)
    print(f"predictions, manifest and summary.json in {config.output}")
    if args.plot:
        from langchain_toolprm.evaluation.plots import plot_budget

        print(f"plot: {plot_budget([summary], args.plot)}")
    return 0


# --------------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------------


def _plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", help="one or more `toolprm eval` result folders")
    parser.add_argument("--output", "-o", default="budget.png", help="the PNG file to write")
    parser.add_argument("--x", default="policy_tokens", choices=["policy_tokens", "prm_candidates", "wall_seconds"],
                        help="compute on the x axis (mean per case)")
    parser.add_argument("--category", help="plot one category's accuracy (default: all cases)")
    parser.add_argument("--title", help="plot title")


def _plot(args: argparse.Namespace) -> int:
    from langchain_toolprm.evaluation.plots import plot_budget

    path = plot_budget(args.results, args.output, x=args.x, category=args.category, title=args.title)
    print(f"plot: {path}")
    return 0


# --------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--question", "-q", help="what to ask the agent (default: a unit-conversion question)")
    parser.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct",
                        help="policy model: packaged name, folder, .gguf file or hub id")
    parser.add_argument("--prm", default="default",
                        help="PRM: 'default' (the packaged trained one), 'rules', a model reference, "
                             "or 'none' (policy only)")
    parser.add_argument("--beams", type=int, default=2, metavar="N", help="beams kept after each step")
    parser.add_argument("--width", type=int, default=4, metavar="M", help="candidates proposed per beam and step")
    parser.add_argument("--max-tool-turns", type=int, default=1,
                        help="tool-calling turns before the agent must answer in text")
    parser.add_argument("--max-tokens", type=int, default=96, help="token limit of the text answer")
    parser.add_argument("--hide-pruned", action="store_true", help="count pruned candidates instead of drawing them")
    _threads_argument(parser)


def _demo(args: argparse.Namespace) -> int:
    from langchain_toolprm.demo import DemoSettings, run_demo

    for option in ("beams", "width", "max_tool_turns", "max_tokens"):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be at least 1")
    _set_threads(args.threads)
    run_demo(DemoSettings(
        question=args.question or DemoSettings.question,
        policy=args.policy,
        prm=None if args.prm.lower() == "none" else args.prm,
        num_beams=args.beams,
        beam_width=args.width,
        max_tool_turns=args.max_tool_turns,
        max_tokens=args.max_tokens,
        show_pruned=not args.hide_pruned,
    ))
    return 0


# --------------------------------------------------------------------------------------------------
# build-data, train, eval-prm (PRM data and training)
# --------------------------------------------------------------------------------------------------


def _build_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", "-o", default="toolprm-data", help="output folder (re-running resumes)")
    sources = parser.add_argument_group("sources")
    sources.add_argument("--bfcl-dir", help="BFCL data folder (default: the shared copy or bfcl-eval's data)")
    sources.add_argument("--categories", nargs="*", metavar="CATEGORY",
                         help="BFCL categories (default: the live_* ones; none: skip BFCL)")
    sources.add_argument("--xlam", nargs="+", default=[], metavar="FILE_OR_HUB_ID",
                         help="xLAM-form records: files, or hub ids through `datasets`")
    sources.add_argument("--glaive", nargs="+", default=[], metavar="FILE", help="ShareGPT/glaive tool conversations")
    sources.add_argument("--compose-parallel", type=int, default=200, metavar="N",
                         help="parallel queries composed from single-call ones")
    sources.add_argument("--max-parts", type=int, default=2, metavar="K",
                         help="most single-call queries in one composed query")
    sources.add_argument("--removed-tool", type=int, default=0, metavar="N",
                         help="irrelevance queries: relevant ones with the tools they call removed")
    sources.add_argument("--follow-ups", type=int, default=0, metavar="N",
                         help="conversations continued after the reference calls' tool results")
    sources.add_argument("--limit", type=int, help="at most this many queries per source")
    rollouts = parser.add_argument_group("rollouts")
    rollouts.add_argument("--policy", nargs="*", default=["qwen2.5-coder-0.5b-instruct"], metavar="MODEL",
                          help="rollout policies, used in turn until each one's time budget is spent "
                               "(none: rule branches only)")
    rollouts.add_argument("--time-budget", nargs="*", type=float, default=None, metavar="SECONDS",
                          help="policy seconds, one per policy (default: 2400 each)")
    rollouts.add_argument("--samples", type=int, default=2, metavar="K", help="complete samples per query")
    rollouts.add_argument("--branch-width", type=int, default=4, metavar="M",
                          help="policy alternatives per decision of the reference path")
    rollouts.add_argument("--temperature", type=float, default=0.8, help="sampling temperature of rollouts")
    rollouts.add_argument("--max-new-tokens", type=int, default=96, help="token limit of a complete sample")
    rollouts.add_argument("--rollout-batch", type=int, default=8, metavar="N",
                          help="queries whose policy rollouts decode in one batch (1: one query at a time)")
    rollouts.add_argument("--max-prompt-tokens", type=int, default=1536,
                          help="longer policy prompts get rule branches only")
    labels = parser.add_argument_group("labels and splits")
    labels.add_argument("--equivalence", action="store_true",
                        help="label values by BFCL acceptable-value rules instead of exact match")
    labels.add_argument("--mask-ratio", type=float, default=1.0, help="fraction of queries with masked names")
    labels.add_argument("--test-fraction", type=float, default=0.1, help="share of queries in the test split")
    labels.add_argument("--seed", type=int, default=0, help="random seed (rollouts, masking, split)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _threads_argument(parser)


def _build_data(args: argparse.Namespace) -> int:
    import json

    from langchain_toolprm.data.build import BuildConfig, build_dataset, format_table
    from langchain_toolprm.data.rollouts import RolloutConfig

    policies = list(args.policy or [])
    budgets = args.time_budget if args.time_budget is not None else [2400.0] * len(policies)
    fields = {"bfcl_dir": args.bfcl_dir} if args.bfcl_dir else {}
    if args.categories is not None:
        fields["bfcl_categories"] = args.categories
    config = BuildConfig(
        out=args.out, xlam=args.xlam, glaive=args.glaive, compose_parallel=args.compose_parallel,
        max_parts=args.max_parts, removed_tool=args.removed_tool, follow_ups=args.follow_ups, limit=args.limit,
        policies=policies, time_budgets_s=budgets, threads=_threads(args.threads),
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
    parser.add_argument("--base", default="qwen2.5-coder-0.5b-instruct", help="backbone model reference")
    parser.add_argument("--init", help="a trained LoRA PRM ('default' or a folder) to train further")
    parser.add_argument("--dtype", default="float32", help="weight dtype (bfloat16 on a GPU)")
    parser.add_argument("--objective", default="prm", choices=["prm", "coarse", "outcome"],
                        help="prm: every step; coarse: no value labels; outcome: whole-answer label only")
    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--no-lora", action="store_true", help="full fine-tuning")
    lora.add_argument("--lora-r", type=int, default=8, help="LoRA rank")
    lora.add_argument("--lora-alpha", type=int, default=16, help="LoRA alpha (scale = alpha / r)")
    lora.add_argument("--lora-layers", type=int, help="adapt the top N layers only (cheaper backward)")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=float, default=1.0, help="passes over the training data")
    optim.add_argument("--batch-size", type=int, default=8, help="queries per optimizer step")
    optim.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    optim.add_argument("--warmup-ratio", type=float, default=0.008, help="share of steps spent warming up")
    optim.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW weight decay")
    optim.add_argument("--no-balance", action="store_true", help="no per-tag balancing of + and - in the loss")
    optim.add_argument("--rank-weight", type=float, default=1.0,
                       help="weight of the ranking loss among candidates of one state (0: pointwise only)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-context-tokens", type=int, default=1024,
                        help="queries with a longer PRM context are left out")
    limits.add_argument("--max-tokens", type=int, default=1536, help="sequence cap per query")
    limits.add_argument("--max-queries", type=int, help="train on at most N queries (policy rollouts first)")
    limits.add_argument("--mix-sources", action="store_true",
                        help="with --max-queries: every source in turn, so small sources are not crowded out")
    limits.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    limits.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop and save after this long")
    parser.add_argument("--save-every", type=int, default=25, help="checkpoint every N optimizer steps")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _threads_argument(parser)


def _train(args: argparse.Namespace) -> int:
    import json

    from langchain_toolprm.train import TrainConfig, train_prm

    config = TrainConfig(
        data=args.data, out=args.out, base=args.base, init=args.init, mix_sources=args.mix_sources,
        dtype=args.dtype, objective=args.objective,
        lora=not args.no_lora,
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_layers=args.lora_layers, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
        balance=not args.no_balance, rank_weight=args.rank_weight,
        max_context_tokens=args.max_context_tokens, max_tokens=args.max_tokens, max_queries=args.max_queries,
        max_steps=args.max_steps, time_budget_s=args.time_budget, save_every=args.save_every,
        threads=_threads(args.threads), seed=args.seed,
    )
    summary = train_prm(config, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    print(f"PRM saved in {args.out}")
    return 0


def _eval_prm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help="PRM folders (adapters or full models), or 'default'")
    parser.add_argument("--data", required=True, help="a build-data folder")
    parser.add_argument("--split", default="test", help="the split to score")
    parser.add_argument("--aggregation", choices=["min", "last"],
                        help="trajectory verdict from the minimum step score or the last one "
                             "(default: last for outcome models, min otherwise)")
    parser.add_argument("--max-context-tokens", type=int, default=1024,
                        help="queries with a longer PRM context are left out")
    parser.add_argument("--limit", type=int, help="the first N queries whose context fits")
    parser.add_argument("--per-source", type=int, metavar="N",
                        help="the first N queries of each source (composed, follow-up, bfcl:live_simple...)")
    parser.add_argument("--output", "-o", help="write the results as JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _threads_argument(parser)


def _eval_prm(args: argparse.Namespace) -> int:
    import json

    from langchain_toolprm.train import evaluate_prm

    _set_threads(args.threads)
    results = [
        evaluate_prm(model, args.data, split=args.split, aggregation=args.aggregation,
                     max_context_tokens=args.max_context_tokens, limit=args.limit, per_source=args.per_source,
                     progress=not args.no_progress)
        for model in args.models
    ]
    first = results[0]
    print(f"{first.queries} queries, {first.steps} labelled steps, {first.trajectories} complete trajectories")
    print("| model | loss | step acc | trajectory acc | candidate ranking acc |")
    print("|---|---:|---:|---:|---:|")
    print(f"| always + (ranking: random pick) | - | {first.always_positive_step_accuracy:.4f} | "
          f"{first.always_positive_trajectory_accuracy:.4f} | {first.random_ranking_accuracy:.4f} |")
    for r in results:
        print(f"| {r.model} | {r.loss:.4f} | {r.step_accuracy:.4f} | {r.trajectory_accuracy:.4f} "
              f"| {r.ranking_accuracy:.4f} |")
    print("\n| decision | steps | always + | " + " | ".join(r.model for r in results) + " |")
    print("|---|---:|---:|" + "---:|" * len(results))
    for name, f in first.focus.items():
        print(f"| {name} | {f['steps']:.0f} | {f['always_positive']:.4f} | "
              + " | ".join(f"{r.focus.get(name, {}).get('accuracy', float('nan')):.4f}" for r in results) + " |")
    hows = list(first.selection_accuracy)
    print(f"\nAnswer selection by aggregation ({first.selection_groups} queries with right and wrong answers)")
    print("| model | " + " | ".join(hows) + " |")
    print("|---|" + "---:|" * len(hows))
    print("| random pick | " + " | ".join(f"{first.random_selection_accuracy:.4f}" for _ in hows) + " |")
    for r in results:
        print(f"| {r.model} | " + " | ".join(f"{r.selection_accuracy[h]:.4f}" for h in hows) + " |")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump([r.model_dump() for r in results], handle, indent=2)
    return 0


COMMANDS: dict[str, Command] = {
    "eval": Command("run strategies and (N, M) budgets over BFCL or record data; resumable",
                    _eval_arguments, _eval),
    "plot": Command("draw accuracy against compute (PNG) from eval result folders", _plot_arguments, _plot),
    "demo": Command("run a small tool-using agent on a question and draw its search as a tree",
                    _demo_arguments, _demo),
    "build-data": Command("build PRM training data: rollouts, step labels, masking, train/test JSONL, Table 1",
                          _build_data_arguments, _build_data),
    "train": Command("fine-tune a generative PRM (LoRA optional) on build-data output; resumable",
                     _train_arguments, _train),
    "eval-prm": Command("reward-model loss, step and trajectory accuracy on a test split, beside 'always +'",
                        _eval_prm_arguments, _eval_prm),
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every option's default, except where there is none (``None``, an off flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of `COMMANDS`."""
    parser = argparse.ArgumentParser(prog="toolprm", description="Reliable tool calls from small models.",
                                     formatter_class=_HelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help, formatter_class=_HelpFormatter)
        command.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``toolprm``; returns the exit status (2 for usage errors, 1 for failures the user can fix)."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"toolprm {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
