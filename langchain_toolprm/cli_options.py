"""What every ``toolprm`` subcommand shares: the `Command` record, options derived from settings models, threads."""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

__all__ = ["Command", "option", "parameter_default", "probability_or_none", "set_threads", "thread_count",
           "threads_argument"]


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


def option(parser: argparse._ActionsContainer, model: type[BaseModel], name: str, *flags: str, **kwargs: Any) -> None:
    """An option whose default (and help, unless given) comes from a settings model's field.

    So each default is written in one place, the model, and the command line cannot drift from it.
    """
    info = model.model_fields[name]
    kwargs.setdefault("help", info.description)
    parser.add_argument(*flags, default=info.get_default(call_default_factory=True), **kwargs)


def probability_or_none(text: str) -> float | None:
    """An option's value that may be ``none`` (the setting off), else a number: ``--policy-sure none``."""
    return None if text.strip().lower() == "none" else float(text)


def parameter_default(function: Callable[..., Any], name: str) -> Any:
    """The default of a function's keyword parameter, for an option that passes it through."""
    return inspect.signature(function).parameters[name].default


def threads_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--threads`` option of every subcommand that runs a model (read by `thread_count`)."""
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch threads (default: the cores idle at start, i.e. cores minus the 1-minute load "
                             "average, at least 1; $OMP_NUM_THREADS instead when it is set)")


def thread_count(requested: int | None) -> int | None:
    """The torch thread count for ``--threads``: the request, else the cores idle now; ``None``: leave torch's.

    Torch starts one thread per core, which is right on an idle machine and slow on a shared one: threads
    that wait for cores other jobs hold wait for one another too (docs/benchmarks.md, "Torch threads on a
    shared CPU"). So without a request the count is the cores that are idle when the command starts.
    ``$OMP_NUM_THREADS``, when set, is the user's request already, and torch has read it.
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


def set_threads(requested: int | None) -> None:
    """Apply `thread_count` to torch."""
    threads = thread_count(requested)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


