"""The ``toolprm`` command: one subcommand per task, each a small function with lazy imports.

Subcommands live in the `COMMANDS` table: a name, a one-line help, a function that declares the
arguments and a function that runs them. Heavy imports (torch, transformers, matplotlib) happen inside
the run functions, so ``toolprm --help`` answers at once and a subcommand pays only for what it uses.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel

from langchain_toolprm.data.build import DEFAULT_TIME_BUDGET_S, BuildConfig
from langchain_toolprm.data.rollouts import RolloutConfig
from langchain_toolprm.demo import DemoSettings
from langchain_toolprm.evaluation.bench import add_bench_arguments, run_bench_command
from langchain_toolprm.evaluation.config import EvalConfig, EvalStrategy
from langchain_toolprm.search.config import Aggregation, SearchConfig
from langchain_toolprm.train.config import Objective, TrainConfig
from langchain_toolprm.train.evaluate import evaluate_prm

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


def _option(parser: argparse._ActionsContainer, model: type[BaseModel], name: str, *flags: str, **kwargs: Any) -> None:
    """An option whose default (and help, unless given) comes from a settings model's field.

    So each default is written in one place, the model, and the command line cannot drift from it.
    """
    info = model.model_fields[name]
    kwargs.setdefault("help", info.description)
    parser.add_argument(*flags, default=info.get_default(call_default_factory=True), **kwargs)


def _parameter_default(function: Callable[..., Any], name: str) -> Any:
    """The default of a function's keyword parameter, for an option that passes it through."""
    return inspect.signature(function).parameters[name].default


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
    _option(models, EvalConfig, "policy", "--policy", help="policy model reference")
    _option(models, EvalConfig, "prm", "--prm", help="PRM for beam and best_of_n: 'default' (the packaged trained "
            "one), 'rules' or a model reference")
    grid = parser.add_argument_group("strategies and budgets")
    _option(grid, EvalConfig, "strategies", "--strategies", nargs="+", choices=list(get_args(EvalStrategy)),
            help="strategies to run")
    _option(grid, EvalConfig, "beams", "--beams", nargs="+", type=int, metavar="N", help="N values (beams kept)")
    _option(grid, EvalConfig, "widths", "--widths", nargs="+", type=int, metavar="M",
            help="M values (candidates per beam and step)")
    grid.add_argument("--samples", nargs="+", type=int, metavar="K",
                      help="num_samples for best_of_n/majority (default: N*M for each grid pair)")
    search = parser.add_argument_group("search settings")
    _option(search, SearchConfig, "seed", "--seed", type=int, help="sampling seed")
    _option(search, SearchConfig, "temperature", "--temperature", type=float,
            help="sampling temperature of free values")
    _option(search, SearchConfig, "aggregation", "--aggregation", choices=list(get_args(Aggregation)),
            help="how a path's step scores become its score")
    _option(search, SearchConfig, "max_new_tokens", "--max-new-tokens", type=int,
            help="token limit of a generated answer")
    _option(parser, EvalConfig, "output", "--output", "-o",
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
    that wait for cores other jobs hold wait for one another too (docs/benchmarks.md, "Torch threads on a
    shared CPU"). So without a
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
    from langchain_toolprm.evaluation.render import render_summary
    from langchain_toolprm.evaluation.runner import run_eval

    _set_threads(args.threads)

    config = EvalConfig(
        data=args.data, answers=args.answers, categories=args.categories, limit=args.limit,
        output=args.output, policy=args.policy, prm=args.prm, strategies=args.strategies,
        beams=args.beams, widths=args.widths, samples=args.samples,
        search=SearchConfig(seed=args.seed, temperature=args.temperature, aggregation=args.aggregation,
                            max_new_tokens=args.max_new_tokens),
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
    _option(parser, DemoSettings, "policy", "--policy",
            help="policy model: packaged name, folder, .gguf file or hub id")
    _option(parser, DemoSettings, "prm", "--prm", help="PRM: 'default' (the packaged trained one), 'rules', a model "
            "reference, or 'none' (policy only)")
    _option(parser, DemoSettings, "num_beams", "--beams", type=int, metavar="N", help="beams kept after each step")
    _option(parser, DemoSettings, "beam_width", "--width", type=int, metavar="M",
            help="candidates proposed per beam and step")
    _option(parser, DemoSettings, "max_tool_turns", "--max-tool-turns", type=int,
            help="tool-calling turns before the agent must answer in text")
    _option(parser, DemoSettings, "max_tokens", "--max-tokens", type=int, help="token limit of the text answer")
    parser.add_argument("--hide-pruned", action="store_true", help="count pruned candidates instead of drawing them")
    _threads_argument(parser)


def _demo(args: argparse.Namespace) -> int:
    from langchain_toolprm.demo import run_demo

    settings = DemoSettings(
        **({"question": args.question} if args.question else {}),
        policy=args.policy,
        prm=None if args.prm.lower() == "none" else args.prm,
        num_beams=args.beams,
        beam_width=args.width,
        max_tool_turns=args.max_tool_turns,
        max_tokens=args.max_tokens,
        show_pruned=not args.hide_pruned,
    )
    _set_threads(args.threads)
    run_demo(settings)
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
    _option(sources, BuildConfig, "xlam", "--xlam", nargs="+", metavar="FILE_OR_HUB_ID",
                         help="xLAM-form records: files, or hub ids through `datasets`")
    _option(sources, BuildConfig, "glaive", "--glaive", nargs="+", metavar="FILE",
            help="ShareGPT/glaive tool conversations")
    _option(sources, BuildConfig, "compose_parallel", "--compose-parallel", type=int, metavar="N",
            help="parallel queries composed from single-call ones")
    _option(sources, BuildConfig, "max_parts", "--max-parts", type=int, metavar="K",
            help="most single-call queries in one composed query")
    _option(sources, BuildConfig, "removed_tool", "--removed-tool", type=int, metavar="N",
            help="irrelevance queries: relevant ones with the tools they call removed")
    _option(sources, BuildConfig, "follow_ups", "--follow-ups", type=int, metavar="N",
            help="conversations continued after the reference calls' tool results")
    sources.add_argument("--limit", type=int, help="at most this many queries per source")
    rollouts = parser.add_argument_group("rollouts")
    _option(rollouts, BuildConfig, "policies", "--policy", nargs="*", metavar="MODEL",
            help="rollout policies, used in turn until each one's time budget is spent (none: rule branches only)")
    rollouts.add_argument("--time-budget", nargs="*", type=float, default=None, metavar="SECONDS",
                          help=f"policy seconds, one per policy (default: {DEFAULT_TIME_BUDGET_S:.0f} each)")
    _option(rollouts, RolloutConfig, "samples", "--samples", type=int, metavar="K", help="complete samples per query")
    _option(rollouts, RolloutConfig, "branch_width", "--branch-width", type=int, metavar="M",
            help="policy alternatives per decision of the reference path")
    _option(rollouts, RolloutConfig, "temperature", "--temperature", type=float,
            help="sampling temperature of rollouts")
    _option(rollouts, RolloutConfig, "max_new_tokens", "--max-new-tokens", type=int,
            help="token limit of a complete sample")
    _option(rollouts, BuildConfig, "rollout_batch", "--rollout-batch", type=int, metavar="N",
            help="queries whose policy rollouts decode in one batch (1: one query at a time)")
    _option(rollouts, BuildConfig, "max_prompt_tokens", "--max-prompt-tokens", type=int,
            help="longer policy prompts get rule branches only")
    labels = parser.add_argument_group("labels and splits")
    labels.add_argument("--equivalence", action="store_true",
                        help="label values by BFCL acceptable-value rules instead of exact match")
    _option(labels, BuildConfig, "mask_ratio", "--mask-ratio", type=float, help="fraction of queries with masked names")
    _option(labels, BuildConfig, "test_fraction", "--test-fraction", type=float,
            help="share of queries in the test split")
    _option(labels, BuildConfig, "seed", "--seed", type=int, help="random seed (rollouts, masking, split)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _threads_argument(parser)


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
    _option(parser, TrainConfig, "base", "--base", help="backbone model reference")
    parser.add_argument("--init", help="a trained LoRA PRM ('default' or a folder) to train further")
    _option(parser, TrainConfig, "dtype", "--dtype", help="weight dtype (bfloat16 on a GPU)")
    _option(parser, TrainConfig, "objective", "--objective", choices=list(get_args(Objective)),
            help="prm: every step; coarse: no value labels; outcome: whole-answer label only")
    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--no-lora", action="store_true", help="full fine-tuning")
    _option(lora, TrainConfig, "lora_r", "--lora-r", type=int, help="LoRA rank")
    _option(lora, TrainConfig, "lora_alpha", "--lora-alpha", type=int, help="LoRA alpha (scale = alpha / r)")
    lora.add_argument("--lora-layers", type=int, help="adapt the top N layers only (cheaper backward)")
    optim = parser.add_argument_group("optimisation")
    _option(optim, TrainConfig, "epochs", "--epochs", type=float, help="passes over the training data")
    _option(optim, TrainConfig, "batch_size", "--batch-size", type=int, help="queries per optimizer step")
    _option(optim, TrainConfig, "lr", "--lr", type=float, help="peak learning rate")
    _option(optim, TrainConfig, "warmup_ratio", "--warmup-ratio", type=float, help="share of steps spent warming up")
    _option(optim, TrainConfig, "weight_decay", "--weight-decay", type=float, help="AdamW weight decay")
    optim.add_argument("--no-balance", action="store_true", help="no per-tag balancing of + and - in the loss")
    _option(optim, TrainConfig, "rank_weight", "--rank-weight", type=float,
            help="weight of the ranking loss among candidates of one state (0: pointwise only)")
    limits = parser.add_argument_group("limits")
    _option(limits, TrainConfig, "max_context_tokens", "--max-context-tokens", type=int,
            help="queries with a longer PRM context are left out")
    _option(limits, TrainConfig, "max_tokens", "--max-tokens", type=int, help="sequence cap per query")
    limits.add_argument("--max-queries", type=int, help="train on at most N queries (policy rollouts first)")
    limits.add_argument("--mix-sources", action="store_true",
                        help="with --max-queries: every source in turn, so small sources are not crowded out")
    limits.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    limits.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop and save after this long")
    _option(parser, TrainConfig, "save_every", "--save-every", type=int, help="checkpoint every N optimizer steps")
    _option(parser, TrainConfig, "seed", "--seed", type=int, help="random seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _threads_argument(parser)


def _train(args: argparse.Namespace) -> int:
    import json

    from langchain_toolprm.train import train_prm

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
    parser.add_argument("--split", default=_parameter_default(evaluate_prm, "split"), help="the split to score")
    parser.add_argument("--aggregation", choices=["min", "last"],
                        help="trajectory verdict from the minimum step score or the last one "
                             "(default: last for outcome models, min otherwise)")
    parser.add_argument("--max-context-tokens", type=int,
                        default=_parameter_default(evaluate_prm, "max_context_tokens"),
                        help="queries with a longer PRM context are left out")
    parser.add_argument("--limit", type=int, help="the first N queries whose context fits")
    parser.add_argument("--per-source", type=int, metavar="N",
                        help="the first N queries of each source (composed, follow-up, bfcl:live_simple...)")
    parser.add_argument("--output", "-o", help="write the results as JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _threads_argument(parser)


def _eval_prm(args: argparse.Namespace) -> int:
    import json

    from langchain_toolprm.evaluation.render import prm_eval_tables

    _set_threads(args.threads)
    results = [
        evaluate_prm(model, args.data, split=args.split, aggregation=args.aggregation,
                     max_context_tokens=args.max_context_tokens, limit=args.limit, per_source=args.per_source,
                     progress=not args.no_progress)
        for model in args.models
    ]
    print(prm_eval_tables(results))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump([r.model_dump() for r in results], handle, indent=2)
    return 0


COMMANDS: dict[str, Command] = {
    "eval": Command("run strategies and (N, M) budgets over BFCL or record data; resumable", _eval_arguments, _eval),
    "plot": Command("draw accuracy against compute (PNG) from eval result folders", _plot_arguments, _plot),
    "demo": Command("run a small tool-using agent on a question and draw its search as a tree", _demo_arguments, _demo),
    "build-data": Command("build PRM training data: rollouts, step labels, masking, train/test JSONL, Table 1",
                          _build_data_arguments, _build_data),
    "train": Command("fine-tune a generative PRM (LoRA optional) on build-data output; resumable",
                     _train_arguments, _train),
    "eval-prm": Command("reward-model loss, step and trajectory accuracy on a test split, beside 'always +'",
                        _eval_prm_arguments, _eval_prm),
    "bench": Command("cost of greedy, beam and the floor on the same cases", add_bench_arguments, run_bench_command),
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
