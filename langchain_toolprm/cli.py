"""The ``toolprm`` command: one subcommand per task, each a small function with lazy imports.

Subcommands live in the `COMMANDS` table: a name, a one-line help, a function that declares the
arguments and a function that runs them. Heavy imports (torch, transformers, matplotlib) happen inside
the run functions, so ``toolprm --help`` answers at once and a subcommand pays only for what it uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
    models.add_argument("--prm", default="rules", help="PRM: 'rules' or a model reference (beam, best_of_n)")
    grid = parser.add_argument_group("strategies and budgets")
    grid.add_argument("--strategies", nargs="+", default=["greedy", "beam"],
                      choices=["unconstrained", "greedy", "beam", "best_of_n", "majority"])
    grid.add_argument("--beams", nargs="+", type=int, default=[2], metavar="N", help="N values (beams kept)")
    grid.add_argument("--widths", nargs="+", type=int, default=[4], metavar="M",
                      help="M values (candidates per beam and step)")
    grid.add_argument("--samples", nargs="+", type=int, metavar="K",
                      help="num_samples for best_of_n/majority (default: N*M for each grid pair)")
    search = parser.add_argument_group("search settings")
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--temperature", type=float, default=0.8)
    search.add_argument("--aggregation", default="min", choices=["last", "min", "prod", "mean"])
    search.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--output", "-o", default="toolprm-eval",
                        help="result folder (re-running with the same folder resumes)")
    parser.add_argument("--plot", metavar="PNG", help="also draw accuracy against compute to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _eval(args: argparse.Namespace) -> int:
    from langchain_toolprm.evaluation.runner import EvalConfig, render_summary, run_eval

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
    parser.add_argument("--title")


def _plot(args: argparse.Namespace) -> int:
    from langchain_toolprm.evaluation.plots import plot_budget

    path = plot_budget(args.results, args.output, x=args.x, category=args.category, title=args.title)
    print(f"plot: {path}")
    return 0


COMMANDS: dict[str, Command] = {
    "eval": Command("run strategies and (N, M) budgets over BFCL or record data; resumable",
                    _eval_arguments, _eval),
    "plot": Command("draw accuracy against compute (PNG) from eval result folders", _plot_arguments, _plot),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of `COMMANDS`."""
    parser = argparse.ArgumentParser(prog="toolprm", description="Reliable tool calls from small models.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
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
