"""The ``toolprm`` command: one subcommand per task, each a small function with lazy imports.

Subcommands live in the `COMMANDS` table: a name, a one-line help, a function that declares the
arguments and a function that runs them. Heavy imports (torch, transformers, matplotlib) happen inside
the run functions, so ``toolprm --help`` answers at once and a subcommand pays only for what it uses.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from langchain_toolprm.cli_options import Command, option, probability_or_none, set_threads, threads_argument
from langchain_toolprm.cli_prm import PRM_COMMANDS
from langchain_toolprm.demo import DemoSettings
from langchain_toolprm.evaluation.bench import BenchSettings
from langchain_toolprm.evaluation.config import EvalConfig, EvalStrategy
from langchain_toolprm.evaluation.plots import CostAxis
from langchain_toolprm.search.config import AdaptiveBudget, Aggregation, Coverage, Guidance, Relevance, SearchConfig

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


# --------------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------------


_CHECKS: dict[str, type[BaseModel]] = {"coverage": Coverage, "relevance": Relevance}
"""The optional checks of `SearchConfig` (a field each, ``None`` when off), with their settings models."""


def _check_options(group: argparse._ArgumentGroup, name: str, check: type[BaseModel]) -> None:
    """``--NAME``/``--no-NAME`` for a check (on where the library's default is), ``--NAME-SETTING`` for each setting."""
    field = SearchConfig.model_fields[name]
    group.add_argument(f"--{name}", action=argparse.BooleanOptionalAction,
                       default=field.get_default(call_default_factory=True) is not None,
                       help="beam: " + (field.description or ""))
    for setting, info in check.model_fields.items():
        kind: dict[str, Any] = ({"action": argparse.BooleanOptionalAction} if info.annotation is bool
                                else {"choices": get_args(info.annotation)} if get_origin(info.annotation) is Literal
                                else {"type": float})
        option(group, check, setting, f"--{name}-{setting.replace('_', '-')}", help=f"--{name}: "
               + (info.description or ""), **kind)


def _check(args: argparse.Namespace, name: str, check: type[BaseModel]) -> Any:
    """The check's settings from the command line, or ``None`` where it is turned off."""
    if not getattr(args, name):
        return None
    return check(**{setting: getattr(args, f"{name}_{setting}") for setting in check.model_fields})


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
    option(models, EvalConfig, "policy", "--policy", help="policy model reference")
    option(models, EvalConfig, "prm", "--prm", help="PRM for beam and best_of_n: 'default' (the packaged trained "
            "one), 'rules' or a model reference")
    grid = parser.add_argument_group("strategies and budgets")
    option(grid, EvalConfig, "strategies", "--strategies", nargs="+", choices=list(get_args(EvalStrategy)),
            help="strategies to run")
    option(grid, EvalConfig, "beams", "--beams", nargs="+", type=int, metavar="N", help="N values (beams kept)")
    option(grid, EvalConfig, "widths", "--widths", nargs="+", type=int, metavar="M",
            help="M values (candidates per beam and step)")
    grid.add_argument("--samples", nargs="+", type=int, metavar="K",
                      help="num_samples for best_of_n/majority (default: N*M for each grid pair)")
    search = parser.add_argument_group("search settings")
    option(search, SearchConfig, "seed", "--seed", type=int, help="sampling seed")
    option(search, SearchConfig, "temperature", "--temperature", type=float,
            help="sampling temperature of free values")
    option(search, SearchConfig, "aggregation", "--aggregation", choices=list(get_args(Aggregation)),
            help="how a path's step scores become its score")
    option(search, SearchConfig, "max_new_tokens", "--max-new-tokens", type=int,
            help="token limit of a generated answer")
    option(search, SearchConfig, "stop_bias", "--stop-bias", type=float)
    option(search, SearchConfig, "forget_dead_calls", "--forget-dead-calls", action="store_true")
    option(search, SearchConfig, "greedy_values", "--greedy-values", action=argparse.BooleanOptionalAction)
    for name in Guidance.WEIGHTS:
        option(search, Guidance, name, f"--{name.replace('_', '-')}-weight", type=float,
               help="guided: " + (Guidance.model_fields[name].description or ""))
    option(search, Guidance, "policy_sure", "--policy-sure", type=probability_or_none,
           help="guided: " + (Guidance.model_fields["policy_sure"].description or "") + " ('none': always asked)")
    for name, check in _CHECKS.items():
        _check_options(search, name, check)
    option(search, AdaptiveBudget, "policy_mass", "--policy-mass", type=float,
           help="beam_adaptive: " + (AdaptiveBudget.model_fields["policy_mass"].description or ""))
    option(search, AdaptiveBudget, "score_margin", "--score-margin", type=float,
           help="beam_adaptive: " + (AdaptiveBudget.model_fields["score_margin"].description or ""))
    option(parser, EvalConfig, "output", "--output", "-o",
            help="result folder (re-running with the same folder resumes)")
    parser.add_argument("--plot", metavar="PNG", help="also draw accuracy against compute to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    threads_argument(parser)


def _eval(args: argparse.Namespace) -> int:
    from langchain_toolprm.evaluation.render import render_summary
    from langchain_toolprm.evaluation.runner import run_eval

    set_threads(args.threads)

    guidance = Guidance(**{name: getattr(args, f"{name}_weight") for name in Guidance.WEIGHTS},
                        policy_sure=args.policy_sure)
    config = EvalConfig(
        data=args.data, answers=args.answers, categories=args.categories, limit=args.limit,
        output=args.output, policy=args.policy, prm=args.prm, strategies=args.strategies,
        beams=args.beams, widths=args.widths, samples=args.samples,
        search=SearchConfig(seed=args.seed, temperature=args.temperature, aggregation=args.aggregation,
                            max_new_tokens=args.max_new_tokens, stop_bias=args.stop_bias,
                            forget_dead_calls=args.forget_dead_calls, greedy_values=args.greedy_values,
                            guidance=guidance,
                            **{name: _check(args, name, check) for name, check in _CHECKS.items()},
                            adaptive=AdaptiveBudget(policy_mass=args.policy_mass, score_margin=args.score_margin)),
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
    parser.add_argument("--x", default="policy_tokens", choices=list(get_args(CostAxis)),
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
    option(parser, DemoSettings, "policy", "--policy",
            help="policy model: packaged name, folder, .gguf file or hub id")
    option(parser, DemoSettings, "prm", "--prm", help="PRM: 'default' (the packaged trained one), 'rules', a model "
            "reference, or 'none' (policy only)")
    option(parser, DemoSettings, "num_beams", "--beams", type=int, metavar="N", help="beams kept after each step")
    option(parser, DemoSettings, "beam_width", "--width", type=int, metavar="M",
            help="candidates proposed per beam and step")
    option(parser, DemoSettings, "max_tool_turns", "--max-tool-turns", type=int,
            help="tool-calling turns before the agent must answer in text")
    option(parser, DemoSettings, "max_tokens", "--max-tokens", type=int, help="token limit of the text answer")
    parser.add_argument("--hide-pruned", action="store_true", help="count pruned candidates instead of drawing them")
    threads_argument(parser)


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
    set_threads(args.threads)
    run_demo(settings)
    return 0


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    option(parser, BenchSettings, "data", "--data")
    option(parser, BenchSettings, "category", "--category")
    option(parser, BenchSettings, "limit", "--limit", type=int)
    option(parser, BenchSettings, "policy", "--policy")
    option(parser, BenchSettings, "prm", "--prm")
    option(parser, BenchSettings, "beams", "--beams", type=int)
    option(parser, BenchSettings, "widths", "--widths", type=int, nargs="+")
    option(parser, BenchSettings, "greedy_values", "--greedy-values", action=argparse.BooleanOptionalAction)
    option(parser, BenchSettings, "policy_sure", "--policy-sure", type=probability_or_none)
    option(parser, BenchSettings, "relevance", "--relevance", action=argparse.BooleanOptionalAction)
    option(parser, BenchSettings, "coverage", "--coverage", action=argparse.BooleanOptionalAction)
    option(parser, BenchSettings, "output", "--output")
    option(parser, BenchSettings, "threads", "--threads", type=int)
    parser.add_argument("--no-progress", action="store_true", help="no line per case on stderr")


def _bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from langchain_toolprm.evaluation.bench import bench_table, run_bench

    settings = BenchSettings(**{name: getattr(args, name) for name in BenchSettings.model_fields})
    report = run_bench(settings, progress=not args.no_progress)
    print(bench_table(report))
    if settings.output:
        Path(settings.output).parent.mkdir(parents=True, exist_ok=True)
        Path(settings.output).write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"figures in {settings.output}")
    return 0


COMMANDS: dict[str, Command] = {
    "eval": Command("run strategies and (N, M) budgets over BFCL or record data; resumable", _eval_arguments, _eval),
    "plot": Command("draw accuracy against compute (PNG) from eval result folders", _plot_arguments, _plot),
    "demo": Command("run a small tool-using agent on a question and draw its search as a tree",
                    _demo_arguments, _demo),
    **PRM_COMMANDS,
    "bench": Command("cost of greedy, beam and the floor on the same cases", _bench_arguments, _bench),
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


@contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """Let SIGTERM (``kill PID``, a scheduler's time limit) end a subcommand the way Ctrl-C does.

    Python's default SIGTERM ends the process at once, skipping ``finally`` blocks, so a stopped
    ``toolprm eval`` would leave its summary.json behind its finished prediction lines. Raising
    ``SystemExit`` instead runs them. Signal handlers can only be set from the main thread; elsewhere
    (``main`` called from a worker) the default stays.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``toolprm``; returns the exit status (2 for usage errors, 1 for failures the user can fix).

    SIGTERM exits with status 143 after the subcommand's cleanup (`_terminate_cleanly`).
    """
    args = build_parser().parse_args(argv)
    try:
        with _terminate_cleanly():
            return COMMANDS[args.command].run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"toolprm {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
