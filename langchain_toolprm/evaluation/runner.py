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

import dataclasses
import hashlib
import json
import math
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from langchain_toolprm.evaluation.bfcl_checker import calls_to_bfcl, check_case
from langchain_toolprm.evaluation.metrics import CallCounts, CallMetrics, call_counts, exact_match
from langchain_toolprm.evaluation.readers import (
    SINGLE_TURN_CATEGORIES,
    BFCLCase,
    Record,
    bfcl_category,
    bfcl_data_dir,
    load_bfcl,
    load_records,
)
from langchain_toolprm.search.config import Aggregation, SearchConfig

if TYPE_CHECKING:
    from langchain_toolprm.policy.base import Policy
    from langchain_toolprm.prm.base import PRM
    from langchain_toolprm.search.results import SearchResult

__all__ = [
    "DEFAULT_BFCL_CATEGORIES",
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

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
RECORD_CATEGORY = "records"
"""The category of record-form cases (they carry none of their own)."""

EvalStrategy = Literal["unconstrained", "greedy", "beam", "best_of_n", "majority"]
STRATEGY_ORDER: tuple[str, ...] = ("unconstrained", "greedy", "majority", "best_of_n", "beam")
"""Order of runs in files, tables and plots: baselines first, from cheapest to the PRM search."""
_USES_PRM = {"beam", "best_of_n"}
_SAMPLED = {"best_of_n", "majority"}

DEFAULT_BFCL_CATEGORIES: tuple[str, ...] = tuple(
    c for c in SINGLE_TURN_CATEGORIES if not c.endswith(("_java", "_javascript"))
)
"""BFCL categories evaluated when none are named: the single-turn ones the Python checker grades."""

# Settings that change predictions: a resumed run must agree on all of them with the files it extends.
_FINGERPRINT_FIELDS = (
    "policy", "prm", "data", "answers", "categories", "limit", "seed", "temperature", "aggregation",
    "max_calls", "max_value_tokens", "max_new_tokens", "max_steps",
)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


class EvalConfig(BaseModel):
    """Everything one ``toolprm eval`` needs; written to the manifest so a run can be reproduced.

    Attributes:
        data: A BFCL file or folder, or a record-form file (JSON array or JSON Lines). ``None``: the
            BFCL data inside the installed ``bfcl-eval`` package.
        answers: BFCL's ``possible_answer`` folder when it is not beside the data.
        categories: BFCL categories to load from a folder (default: `DEFAULT_BFCL_CATEGORIES`).
        limit: At most this many cases per category (the first ones), for subsets of stated size.
        output: The folder for prediction files, the manifest and the summary.
        policy: The policy reference (packaged name, hub id, folder, ``.gguf``).
        prm: The PRM reference (``"default"``, the packaged trained PRM; ``"rules"``; a model reference);
            used by ``beam`` and ``best_of_n`` only.
        strategies: Strategies to run.
        beams: The N values of the grid (beams kept).
        widths: The M values of the grid (candidates per beam and step).
        samples: ``num_samples`` for ``best_of_n``/``majority``; ``None`` derives ``N * M`` from the grid.
        seed: Random seed of every search (each case starts from the same seed, so runs are repeatable
            case by case and a resumed run gives the predictions an uninterrupted one would have).
        temperature: Sampling temperature of free values and complete samples (the paper's 0.8).
        aggregation: How a beam's step scores combine.
        max_calls: Most calls per turn.
        max_value_tokens: Token limit of one sampled value.
        max_new_tokens: Token limit of free generation (``unconstrained``, samples).
        max_steps: Search rounds before giving up.
        progress: Show a progress bar on stderr.

    """

    model_config = ConfigDict(extra="forbid")

    data: str | None = None
    answers: str | None = None
    categories: list[str] | None = None
    limit: int | None = Field(None, ge=1)
    output: str = "toolprm-eval"
    policy: str = "qwen2.5-coder-0.5b-instruct"
    prm: str = "default"
    strategies: list[EvalStrategy] = Field(default_factory=lambda: ["greedy", "beam"])
    beams: list[int] = Field(default_factory=lambda: [2])
    widths: list[int] = Field(default_factory=lambda: [4])
    samples: list[int] | None = None
    seed: int = 0
    temperature: float = Field(0.8, ge=0.0)
    aggregation: Aggregation = SearchConfig.model_fields["aggregation"].default
    max_calls: int = Field(8, ge=1)
    max_value_tokens: int = Field(64, ge=1)
    max_new_tokens: int = Field(256, ge=1)
    max_steps: int = Field(256, ge=1)
    progress: bool = True

    @field_validator("beams", "widths", "samples")
    @classmethod
    def _positive(cls, values: list[int] | None) -> list[int] | None:
        if values is not None and (not values or any(v < 1 for v in values)):
            raise ValueError("budget values must be a non-empty list of positive integers")
        return values

    @field_validator("strategies")
    @classmethod
    def _some_strategy(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("name at least one strategy")
        return values

    def runs(self) -> list[RunSpec]:
        """Expand strategies and the budget grid into runs, baselines first, without repeats."""
        runs: list[RunSpec] = []
        for strategy in sorted(set(self.strategies), key=STRATEGY_ORDER.index):
            if strategy == "beam":
                runs += [RunSpec("beam", n, m) for n in sorted(set(self.beams)) for m in sorted(set(self.widths))]
            elif strategy in _SAMPLED:
                counts = self.samples or [n * m for n in self.beams for m in self.widths]
                runs += [RunSpec(strategy, num_samples=k) for k in sorted(set(counts))]
            else:
                runs.append(RunSpec(strategy))
        return runs

    def fingerprint(self) -> dict[str, Any]:
        """The settings that must not change between a run and its resumption (paths made absolute)."""
        out = {name: getattr(self, name) for name in _FINGERPRINT_FIELDS}
        for name in ("data", "answers"):
            if out[name] is not None:
                out[name] = str(Path(out[name]).resolve())
        return out


@dataclass(frozen=True)
class RunSpec:
    """One strategy at one budget.

    Attributes:
        strategy: The search strategy.
        num_beams: N, for ``beam``.
        beam_width: M, for ``beam``.
        num_samples: Complete samples, for ``best_of_n`` and ``majority``.

    """

    strategy: str
    num_beams: int | None = None
    beam_width: int | None = None
    num_samples: int | None = None

    @property
    def name(self) -> str:
        """The run's file stem, e.g. ``beam_N2_M4``, ``majority_n8``, ``greedy``."""
        if self.strategy == "beam":
            return f"beam_N{self.num_beams}_M{self.beam_width}"
        if self.num_samples is not None:
            return f"{self.strategy}_n{self.num_samples}"
        return self.strategy

    @property
    def uses_prm(self) -> bool:
        """Whether the PRM takes part (the others rank by the policy alone)."""
        return self.strategy in _USES_PRM

    @classmethod
    def from_name(cls, name: str) -> RunSpec:
        """Read a run back from its file stem.

        Raises:
            ValueError: The name is not one `name` writes.

        """
        if match := re.fullmatch(r"beam_N(\d+)_M(\d+)", name):
            return cls("beam", int(match[1]), int(match[2]))
        if match := re.fullmatch(r"(best_of_n|majority)_n(\d+)", name):
            return cls(match[1], num_samples=int(match[2]))
        if name in ("greedy", "unconstrained"):
            return cls(name)
        raise ValueError(f"Not a run name: {name!r}")

    def search_config(self, config: EvalConfig) -> Any:
        """The engine's `SearchConfig` for this run."""
        budget: dict[str, int] = {}
        if self.num_beams is not None:
            budget |= {"num_beams": self.num_beams, "beam_width": self.beam_width or 1}
        if self.num_samples is not None:
            budget["num_samples"] = self.num_samples
        return SearchConfig(
            strategy=self.strategy,  # type: ignore[arg-type]
            temperature=config.temperature,
            aggregation=config.aggregation,
            max_calls=config.max_calls,
            max_value_tokens=config.max_value_tokens,
            max_new_tokens=config.max_new_tokens,
            max_steps=config.max_steps,
            seed=config.seed,
            **budget,
        )


# --------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalCase:
    """One case in the form the loop needs, whatever file it came from.

    Attributes:
        id: The case id (BFCL id, record id, or ``record_<index>``); the resume key.
        category: The BFCL category, or ``"records"``.
        messages: The conversation.
        tools: Tool definitions `run_search` accepts (BFCL docs, OpenAI tool dicts).
        grade: Returns ``(correct, extra fields for the prediction line)`` for predicted calls.

    """

    id: str
    category: str
    messages: str | list[dict[str, str]]
    tools: list[dict[str, Any]]
    grade: Callable[[list[dict[str, Any]]], tuple[bool, dict[str, Any]]] = field(repr=False, compare=False)


def _bfcl_grader(case: BFCLCase) -> Callable[[list[dict[str, Any]]], tuple[bool, dict[str, Any]]]:
    def grade(calls: list[dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
        verdict = check_case(case.category, case.functions, calls_to_bfcl(calls), case.ground_truth)
        return verdict.valid, ({} if verdict.valid else {"error_type": verdict.error_type})

    return grade


def _record_grader(record: Record) -> Callable[[list[dict[str, Any]]], tuple[bool, dict[str, Any]]]:
    def grade(calls: list[dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
        counts = call_counts(calls, record.answers)
        return exact_match(calls, record.answers), {"counts": dataclasses.asdict(counts)}

    return grade


_XLAM_TYPES = {
    "str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
    "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "array": "array",
    "tuple": "array", "set": "array", "dict": "object", "object": "object", "mapping": "object",
}


def _xlam_schema(type_text: Any) -> tuple[dict[str, Any], bool]:
    """A JSON schema for an xLAM type string (``"List[int]"``, ``"str, optional"``), and whether it is optional.

    Unknown types (``"Any"``, ``"Callable"``) get no type constraint rather than a wrong one.
    """
    if not isinstance(type_text, str):
        return {}, False
    text = type_text.strip()
    optional = bool(re.search(r",\s*optional\s*$", text, re.I))
    text = re.sub(r",\s*optional\s*$", "", text, flags=re.I).strip()
    if match := re.fullmatch(r"Optional\[(.*)\]", text, re.I):
        optional, text = True, match[1].strip()
    if match := re.fullmatch(r"Union\[(.*)\]", text, re.I):
        text = match[1].split(",")[0].strip()
    outer, _, inner = text.partition("[")
    json_type = _XLAM_TYPES.get(outer.strip().lower())
    if json_type is None:
        return {}, optional
    schema: dict[str, Any] = {"type": json_type}
    if json_type == "array" and inner.endswith("]"):
        items, _ = _xlam_schema(inner[:-1].split(",")[0])
        if items:
            schema["items"] = items
    return schema, optional


def record_tool_to_openai(tool: dict[str, Any]) -> dict[str, Any]:
    """Turn a record-form tool (flat ``{param: {"type", "description", ...}}``) into an OpenAI tool dict.

    Records (xLAM-60k, Hammer) write Python-ish types (``"List[str]"``, ``"int, optional"``) that no
    JSON-schema reader accepts. A parameter is required when it says ``"required": true``; in sources
    without that flag (xLAM-60k), when it has no default and its type is not marked optional.
    """
    flat = tool.get("parameters") or {}
    flagged = any(isinstance(spec, dict) and "required" in spec for spec in flat.values())
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in flat.items():
        spec = spec if isinstance(spec, dict) else {}
        type_value = spec.get("type")
        if type_value in _XLAM_TYPES.values():
            schema, optional = dict(_json_schema_part(spec)), False
        else:
            schema, optional = _xlam_schema(type_value)
            schema |= {k: v for k, v in _json_schema_part(spec).items() if k != "type"}
        if spec.get("description"):
            schema["description"] = str(spec["description"])
        properties[name] = schema
        if (spec.get("required") is True) if flagged else ("default" not in spec and not optional):
            required.append(name)
    return {
        "type": "function",
        "function": {
            "name": tool["name"],
            "description": str(tool.get("description") or ""),
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


def _json_schema_part(spec: dict[str, Any]) -> dict[str, Any]:
    """The JSON-schema keywords of a flat parameter spec (its ``required`` flag and default excluded)."""
    keep = ("type", "enum", "items", "properties", "minimum", "maximum", "format", "pattern")
    return {k: spec[k] for k in keep if k in spec}


def _is_bfcl(path: Path) -> bool:
    if path.is_dir():
        return True
    try:
        bfcl_category(path)
    except ValueError:
        return False
    return True


def load_cases(config: EvalConfig) -> list[EvalCase]:
    """Read the dataset named by the config, BFCL or record form, into cases.

    Raises:
        FileNotFoundError: No data given and no ``bfcl-eval`` installed, or a missing file.
        ValueError: Duplicate case ids (resumption keys on them).

    """
    if config.data is None:
        folder = bfcl_data_dir()
        if folder is None:
            raise FileNotFoundError("No --data given and the bfcl-eval package is not installed.")
        path = folder
    else:
        path = Path(config.data)
    if _is_bfcl(path):
        categories = config.categories
        if categories is None and path.is_dir():
            present = {bfcl_category(f) for f in path.glob("BFCL_v*_*.json")}
            categories = [c for c in DEFAULT_BFCL_CATEGORIES if c in present]
        bfcl = load_bfcl(path, categories, config.answers, config.limit)
        cases = [EvalCase(c.id, c.category, c.messages, c.functions, _bfcl_grader(c)) for c in bfcl]
    else:
        records = load_records(path, config.limit)
        cases = [
            EvalCase(
                r.id if r.id is not None else f"record_{i}",
                RECORD_CATEGORY,
                r.query,
                [record_tool_to_openai(t) for t in r.tools],
                _record_grader(r),
            )
            for i, r in enumerate(records)
        ]
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError("Case ids are not unique; predictions could not be resumed by id.")
    return cases


# --------------------------------------------------------------------------------------------------
# Prediction files
# --------------------------------------------------------------------------------------------------


def _read_predictions(file: Path) -> list[dict[str, Any]]:
    """Read a run's lines, cutting off a last line a killed process left half written."""
    if not file.exists():
        return []
    data = file.read_bytes()
    lines, good_end = [], 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            break
        lines.append(item)
        good_end += len(raw)
    if good_end != len(data):
        with file.open("r+b") as handle:
            handle.truncate(good_end)
    return lines


def _prediction(case: EvalCase, result: SearchResult) -> dict[str, Any]:
    calls = [{"name": c["name"], "arguments": c.get("arguments") or {}} for c in result.calls]
    correct, extra = case.grade(calls)
    line: dict[str, Any] = {
        "id": case.id,
        "category": case.category,
        "calls": calls,
        "correct": bool(correct),
        "cost": result.cost.to_dict(),
        "finished": result.finished,
        "score": result.score,
        **extra,
    }
    if result.lenient_calls is not None:
        lenient = [{"name": c["name"], "arguments": c.get("arguments") or {}} for c in result.lenient_calls]
        line["lenient_calls"] = lenient
        line["lenient_correct"] = bool(case.grade(lenient)[0])
    return line


def _failure(case: EvalCase, error: Exception, seconds: float) -> dict[str, Any]:
    """A line for a case the engine could not run: wrong, never silently skipped (the run stays complete)."""
    from langchain_toolprm.search.results import Cost

    cost = Cost(wall_seconds=seconds).to_dict()
    return {"id": case.id, "category": case.category, "calls": [], "correct": False, "cost": cost,
            "finished": False, "score": None, "error": f"{type(error).__name__}: {error}"}


# --------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------


def _cases_digest(cases: Sequence[EvalCase]) -> str:
    return hashlib.sha256("\n".join(c.id for c in cases).encode()).hexdigest()[:16]


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _check_manifest(output: Path, config: EvalConfig) -> dict[str, Any]:
    """The folder's manifest (empty when new), after checking that its settings are the config's.

    Raises:
        ValueError: The folder holds results made with other settings.

    """
    path = output / MANIFEST
    if not path.exists():
        return {}
    manifest = json.loads(path.read_text(encoding="utf-8"))
    old, new = manifest.get("fingerprint", {}), config.fingerprint()
    changed = sorted(k for k in new if k in old and old[k] != new[k])
    if changed:
        details = ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed)
        raise ValueError(f"{output} holds results made with other settings ({details}); use another --output folder.")
    return manifest


def _update_manifest(output: Path, config: EvalConfig, cases: Sequence[EvalCase], runs: Sequence[RunSpec],
                     policy_name: str, prm_name: str) -> dict[str, Any]:
    """Create or extend the manifest; refuse to mix results of different settings in one folder.

    Raises:
        ValueError: The folder holds results made with other settings (policy, PRM, data, seed...).

    """
    path = output / MANIFEST
    fingerprint = config.fingerprint()
    manifest = _check_manifest(output, config)
    runs_meta = dict(manifest.get("runs", {}))
    for run in runs:
        runs_meta[run.name] = {
            **dataclasses.asdict(run),
            "file": f"{run.name}.jsonl",
            "prm": prm_name if run.uses_prm else None,
        }
    manifest.update({
        "fingerprint": fingerprint,
        "config": config.model_dump(),
        "policy_name": policy_name,
        "prm_name": prm_name,
        "cases": len(cases),
        "cases_digest": _cases_digest(cases),
        "categories": sorted({c.category for c in cases}),
        "runs": dict(sorted(runs_meta.items(), key=lambda kv: _run_order(RunSpec.from_name(kv[0])))),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    manifest.setdefault("created", manifest["updated"])
    _write_json(path, manifest)
    return manifest


def _run_order(run: RunSpec) -> tuple[int, int, int, int]:
    return (STRATEGY_ORDER.index(run.strategy), run.num_samples or 0, run.num_beams or 0, run.beam_width or 0)


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


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
    from tqdm.auto import tqdm

    from langchain_toolprm.components import describe, load_policy, load_prm
    from langchain_toolprm.search.run import run_search

    cases = list(cases) if cases is not None else load_cases(config)
    runs = config.runs()
    output = Path(config.output)
    _check_manifest(output, config)  # before any model loads: a wrong folder fails at once
    output.mkdir(parents=True, exist_ok=True)
    todo: dict[str, list[EvalCase]] = {}
    for run in runs:
        done = {line["id"] for line in _read_predictions(output / f"{run.name}.jsonl")}
        todo[run.name] = [c for c in cases if c.id not in done]
    needs_prm = any(run.uses_prm and todo[run.name] for run in runs)
    policy_obj = policy if policy is not None else (
        load_policy(config.policy) if any(todo.values()) else None)
    prm_obj = prm if prm is not None else (load_prm(config.prm) if needs_prm else None)
    policy_name = describe(policy_obj) if policy_obj is not None else config.policy
    prm_name = describe(prm_obj) if prm_obj is not None else config.prm
    _update_manifest(output, config, cases, runs, policy_name, prm_name)

    total = sum(len(v) for v in todo.values())
    with tqdm(total=total, disable=not config.progress or total == 0, unit="case", file=sys.stderr,
              dynamic_ncols=True) as bar:
        for run in runs:
            pending = todo[run.name]
            if not pending:
                continue
            search_config = run.search_config(config)
            bar.set_description(run.name)
            right = 0
            with (output / f"{run.name}.jsonl").open("a", encoding="utf-8") as handle:
                for done, case in enumerate(pending, start=1):
                    started = time.perf_counter()
                    try:
                        result = run_search(case.messages, case.tools, policy=policy_obj,
                                            prm=prm_obj if run.uses_prm else None, config=search_config)
                        line = _prediction(case, result)
                    except Exception as error:  # one broken case must not cost the whole run
                        line = _failure(case, error, time.perf_counter() - started)
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                    right += line["correct"]
                    bar.set_postfix(correct=f"{right}/{done}", refresh=False)
                    bar.update(1)
    # Every run of the folder, not only this call's: runs added later compare on the same cases.
    summary = summarize(output, case_ids=[c.id for c in cases])
    _write_json(output / SUMMARY, summary.to_dict())
    return summary


# --------------------------------------------------------------------------------------------------
# Results and summaries
# --------------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """The numbers of one run.

    Attributes:
        name: The run name (file stem).
        strategy: Its strategy.
        num_beams: N (beam only).
        beam_width: M (beam only).
        num_samples: Samples (best_of_n and majority only).
        prm: The PRM that took part, ``None`` for policy-only strategies.
        cases: Cases with a prediction.
        accuracy: Share correct per category, and ``"overall"`` over all cases (micro).
        lenient_accuracy: For ``unconstrained``, the same with the lenient parse.
        policy_tokens: Mean policy token positions per case.
        prm_candidates: Mean PRM-scored candidates per case.
        wall_seconds: Mean wall seconds per case.
        errors: Cases the engine raised on (counted wrong).
        records: For record-form data, name and argument P/R/F1 and exact match.

    """

    name: str
    strategy: str
    num_beams: int | None
    beam_width: int | None
    num_samples: int | None
    prm: str | None
    cases: int
    accuracy: dict[str, float]
    lenient_accuracy: dict[str, float] | None
    policy_tokens: float
    prm_candidates: float
    wall_seconds: float
    errors: int = 0
    records: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return dataclasses.asdict(self)


@dataclass
class EvalSummary:
    """Every run's summary, with the data they share."""

    runs: list[RunSummary]
    categories: list[str]
    policy: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {"policy": self.policy, "source": self.source, "categories": self.categories,
                "runs": [r.to_dict() for r in self.runs]}

    def run(self, name: str) -> RunSummary:
        """A run by name.

        Raises:
            KeyError: No such run.

        """
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)


def _accuracy(lines: Iterable[dict[str, Any]], key: str) -> dict[str, float]:
    by_category: dict[str, list[bool]] = defaultdict(list)
    everything = []
    for line in lines:
        by_category[line["category"]].append(bool(line[key]))
        everything.append(bool(line[key]))
    out = {c: sum(v) / len(v) for c, v in sorted(by_category.items())}
    out["overall"] = sum(everything) / len(everything) if everything else 0.0
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _record_scores(lines: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    with_counts = [line["counts"] for line in lines if "counts" in line]
    if not with_counts:
        return None
    total = CallCounts()
    for counts in with_counts:
        total += CallCounts(**counts)
    metrics = CallMetrics.from_counts(total)
    return {
        "exact_match": metrics.exact_match,
        "api_precision": metrics.api.precision, "api_recall": metrics.api.recall, "api_f1": metrics.api.f1,
        "args_precision": metrics.arguments.precision, "args_recall": metrics.arguments.recall,
        "args_f1": metrics.arguments.f1,
    }


def _summarize_run(name: str, lines: Sequence[dict[str, Any]], prm: str | None) -> RunSummary:
    spec = RunSpec.from_name(name)
    with_lenient = [line for line in lines if "lenient_correct" in line]
    return RunSummary(
        name=name,
        strategy=spec.strategy,
        num_beams=spec.num_beams,
        beam_width=spec.beam_width,
        num_samples=spec.num_samples,
        prm=prm,
        cases=len(lines),
        accuracy=_accuracy(lines, "correct"),
        lenient_accuracy=_accuracy(with_lenient, "lenient_correct") if with_lenient else None,
        policy_tokens=_mean([line["cost"]["policy_tokens"] for line in lines]),
        prm_candidates=_mean([line["cost"]["prm_candidates"] for line in lines]),
        wall_seconds=_mean([line["cost"]["wall_seconds"] for line in lines]),
        errors=sum(1 for line in lines if line.get("error")),
        records=_record_scores(lines),
    )


def load_results(output: str | Path, runs: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The prediction lines of each run in a result folder (all runs of the manifest when ``runs`` is None).

    Raises:
        FileNotFoundError: The folder has no manifest.

    """
    folder = Path(output)
    manifest_file = folder / MANIFEST
    if not manifest_file.exists():
        raise FileNotFoundError(f"{folder} is not a toolprm eval folder (no {MANIFEST}).")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    names = list(runs) if runs is not None else list(manifest.get("runs", {}))
    return {name: _read_predictions(folder / f"{name}.jsonl") for name in names}


def summarize(output: str | Path, runs: Sequence[str] | None = None,
              case_ids: Sequence[str] | None = None) -> EvalSummary:
    """Summarise a result folder from its files alone (nothing is recomputed).

    Args:
        output: The result folder.
        runs: Runs to include (all runs of the manifest when None).
        case_ids: Only these cases (the current dataset), so a folder that once held more cases still
            compares every run on the same ones.

    Returns:
        One summary per run that has predictions, in the manifest's order.

    """
    folder = Path(output)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    wanted = set(case_ids) if case_ids is not None else None
    summaries, categories = [], set()
    for name, lines in load_results(folder, runs).items():
        unique: dict[str, dict[str, Any]] = {}
        for line in lines:
            unique.setdefault(line["id"], line)  # a file concatenated by hand must not count a case twice
        lines = [line for key, line in unique.items() if wanted is None or key in wanted]
        if not lines:
            continue
        categories |= {line["category"] for line in lines}
        meta = manifest.get("runs", {}).get(name, {})
        summaries.append(_summarize_run(name, lines, meta.get("prm")))
    summaries.sort(key=lambda s: _run_order(RunSpec.from_name(s.name)))
    return EvalSummary(summaries, sorted(categories), manifest.get("policy_name"), str(folder))


def _percent(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _table_rows(summary: EvalSummary) -> tuple[list[str], list[list[str]]]:
    has_lenient = any(r.lenient_accuracy for r in summary.runs)
    has_records = any(r.records for r in summary.runs)
    headers = ["run", "PRM", "cases", *summary.categories]
    if len(summary.categories) > 1:
        headers.append("overall")
    if has_lenient:
        headers.append("lenient parse")
    if has_records:
        headers += ["API F1", "args F1"]
    headers += ["policy tokens", "PRM cands", "wall s"]
    rows = []
    for r in summary.runs:
        row = [r.name, r.prm or "-", str(r.cases)]
        row += [_percent(r.accuracy.get(c)) for c in summary.categories]
        if len(summary.categories) > 1:
            row.append(_percent(r.accuracy["overall"]))
        if has_lenient:
            row.append(_percent(r.lenient_accuracy["overall"]) if r.lenient_accuracy else "")
        if has_records:
            row += [_percent(r.records["api_f1"]), _percent(r.records["args_f1"])] if r.records else ["", ""]
        row += [f"{r.policy_tokens:.0f}", f"{r.prm_candidates:.1f}", f"{r.wall_seconds:.2f}"]
        rows.append(row)
    return headers, rows


def render_summary(summary: EvalSummary, console: Any = None) -> None:
    """Print the summary as a rich table: accuracy (%) per category, then mean cost per case."""
    from rich.console import Console
    from rich.table import Table

    headers, rows = _table_rows(summary)
    table = Table(title=f"toolprm eval: {summary.source}  (policy {summary.policy}; accuracy in %, cost per case)")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    (console or Console()).print(table)


def summary_markdown(summary: EvalSummary) -> str:
    """The summary as a Markdown table (for docs such as ``docs/benchmarks.md``)."""
    headers, rows = _table_rows(summary)
    rule = "|" + "|".join("---" if i < 2 else "---:" for i in range(len(headers))) + "|"
    lines = ["| " + " | ".join(headers) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)

