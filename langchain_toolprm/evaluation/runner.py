"""The evaluation loop behind ``toolprm eval``: strategies and (N, M) budgets over a dataset.

One evaluation is a grid of *runs*, each a strategy with a budget, over the same cases. Every run
writes one JSON Lines file of predictions under the output folder, one line per case, flushed as soon
as the case is done, so a run killed after hours loses at most the case in flight; starting the same
command again skips every id already written. A ``manifest.json`` beside the files records what was
run (policy, PRM, data, settings) so that a resumed or plotted run can never mix incompatible results.

Budgets and matched compute:

- ``beam`` runs once per ``(N, M)`` in ``beams x widths`` (N beams kept, M candidates per beam and step).
- ``best_of_n`` and ``majority`` have no (N, M); they draw ``num_samples`` complete answers. By
  default ``num_samples = N * M`` for every pair of the grid (distinct values only), because a beam
  search with N beams and M candidates explores about N * M partial answers per step, so the two are
  compared at a similar number of policy continuations. Give ``samples`` explicitly to choose them
  (for instance to match beam's *measured* policy tokens, which the summary reports).
- ``greedy`` and ``unconstrained`` have no budget and run once.

Scoring: BFCL cases are graded by the BFCL checker (`check_case`) on the strict calls the search
returned (``result.calls``); record-form cases (xLAM/Hammer ``query``/``tools``/``answers``) by exact
match, with name and argument counts kept per line so that P/R/F1 are micro-averaged in the summary.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_toolprm.evaluation.cases import EvalCase, load_cases
from langchain_toolprm.evaluation.config import DEFAULT_BFCL_CATEGORIES, MANIFEST, SUMMARY, EvalConfig, RunSpec
from langchain_toolprm.evaluation.render import render_summary, summary_markdown
from langchain_toolprm.evaluation.store import (
    check_manifest,
    failure_line,
    prediction_line,
    read_predictions,
    update_manifest,
    write_json,
)
from langchain_toolprm.evaluation.summary import EvalSummary, RunSummary, load_results, summarize
from langchain_toolprm.tool_forms import record_tool_to_openai

# The eval's names keep their old home here beside the loop (`langchain_toolprm.evaluation` exports them too).
__all__ = [
    "DEFAULT_BFCL_CATEGORIES",
    "MANIFEST",
    "EvalCase",
    "EvalConfig",
    "EvalSummary",
    "RunSpec",
    "RunSummary",
    "load_cases",
    "load_results",
    "record_tool_to_openai",
    "render_summary",
    "run_eval",
    "summarize",
    "summary_markdown",
]

if TYPE_CHECKING:
    from langchain_toolprm.policy.base import Policy
    from langchain_toolprm.prm.base import PRM


def run_eval(
    config: EvalConfig,
    *,
    policy: Policy | None = None,
    prm: PRM | None = None,
    cases: Sequence[EvalCase] | None = None,
) -> EvalSummary:
    """Run every (strategy, budget) of the config over the dataset, resuming what is already written.

    Args:
        config: What to run and where to write it.
        policy: A policy object to use instead of loading ``config.policy`` (tests, shared models).
        prm: A PRM object to use instead of loading ``config.prm``.
        cases: Cases to use instead of reading ``config.data``.

    Returns:
        The summary of every run in the output folder, on this dataset's cases (also in ``summary.json``).

    Raises:
        ValueError: The output folder holds results of other settings, or case ids repeat.

    """
    from filelock import FileLock

    from langchain_toolprm.components import describe, load_policy, load_prm

    cases = list(cases) if cases is not None else load_cases(config)
    runs = config.runs()
    output = Path(config.output)
    check_manifest(output, config)  # before any model loads: a wrong folder fails at once
    output.mkdir(parents=True, exist_ok=True)
    todo: dict[str, list[EvalCase]] = {}
    for run in runs:
        done = {line["id"] for line in read_predictions(output / f"{run.name}.jsonl")}
        todo[run.name] = [c for c in cases if c.id not in done]
    needs_prm = any(run.uses_prm and todo[run.name] for run in runs)
    policy_obj = policy if policy is not None else (
        load_policy(config.policy) if any(todo.values()) else None)
    prm_obj = prm if prm is not None else (load_prm(config.prm, policy_obj) if needs_prm else None)
    policy_name = describe(policy_obj) if policy_obj is not None else config.policy
    prm_name = describe(prm_obj) if prm_obj is not None else config.prm
    # Two evals may share a folder (each its own runs, e.g. one per core): the manifest and the summary
    # are read, extended and written under a lock, so neither loses the other's runs.
    lock = FileLock(output / ".lock")
    with lock:
        update_manifest(output, config, cases, runs, policy_name, prm_name)

    try:
        _predict(output, runs, todo, config, policy_obj, prm_obj)
    finally:
        # Every run of the folder, not only this call's: runs added later compare on the same cases. Also
        # after an interruption (Ctrl-C), so that summary.json never lags behind the finished lines.
        with lock:
            summary = summarize(output, case_ids=[c.id for c in cases])
            write_json(output / SUMMARY, summary.to_dict())
    return summary


def _predict(output: Path, runs: Sequence[RunSpec], todo: dict[str, list[EvalCase]], config: EvalConfig,
             policy_obj: Policy | None, prm_obj: PRM | None) -> None:
    """Search every case left to each run and append its prediction line (flushed: a killed run resumes)."""
    from tqdm.auto import tqdm

    from langchain_toolprm.search.run import run_search

    total = sum(len(v) for v in todo.values())
    with tqdm(total=total, disable=not config.progress or total == 0, unit="case", file=sys.stderr,
              dynamic_ncols=True) as bar:
        for run in runs:
            pending = todo[run.name]
            if not pending:
                continue
            assert policy_obj is not None  # loaded whenever a run has cases left
            search_config = run.search_config(config)
            bar.set_description(run.name)
            right = 0
            with (output / f"{run.name}.jsonl").open("a", encoding="utf-8") as handle:
                for count, case in enumerate(pending, start=1):
                    started = time.perf_counter()
                    try:
                        result = run_search(case.messages, case.tools, policy=policy_obj,
                                            prm=prm_obj if run.uses_prm else None, config=search_config)
                        line = prediction_line(case, result)
                    except Exception as error:  # one broken case must not cost the whole run
                        line = failure_line(case, error, time.perf_counter() - started)
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                    right += line["correct"]
                    bar.set_postfix(correct=f"{right}/{count}", refresh=False)
                    bar.update(1)
