"""Training queries with reference answers, read from every source into one form: `Example`.

PRM data needs, per query, the conversation, the tools and the reference calls. Sources disagree on
all three (xLAM's flat parameter maps, BFCL's Gorilla types and lists of acceptable values, ShareGPT
turns), so each reader brings its source to one shape: tools as JSON-schema function dicts (what the
grammar walks) and references in BFCL's ground-truth form ``[{name: {param: [acceptable values]}}]``,
which carries both exact references (one value each) and BFCL's alternatives (``""`` = may be omitted).

The local source here is BFCL ``live_*``: it shares no case with the non-live categories used for
evaluation, so training on it does not leak the benchmark.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_toolprm.evaluation.readers import Record, load_bfcl, load_records
from langchain_toolprm.tool_forms import record_tool_to_openai
from langchain_toolprm.tools import ToolSchemaError, ToolSpec, to_tool_specs

__all__ = [
    "BFCL_LIVE_CATEGORIES",
    "Example",
    "examples_from_bfcl",
    "examples_from_glaive",
    "examples_from_records",
    "load_xlam",
    "reference_calls",
]

BFCL_LIVE_CATEGORIES: tuple[str, ...] = (
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
)
"""BFCL categories with a reference (or, for irrelevance, the reference "no call") usable for training."""

Reference = list[dict[str, dict[str, list[Any]]]]
"""BFCL's ground-truth form: one ``{function: {param: [acceptable values]}}`` per call; ``[]`` = no call."""


@dataclass
class Example:
    """One query with its tools and reference answer.

    Attributes:
        id: Unique within a build (the split is drawn from it).
        source: Where it came from, e.g. ``"bfcl:live_simple"``, ``"xlam"``, ``"glaive"``, ``"composed"``.
        messages: The conversation up to the turn to predict, as ``{"role", "content"}`` dicts (assistant
            turns may carry ``tool_calls``).
        tools: ``{"name", "description", "parameters"}`` with JSON-schema parameters.
        reference: The reference calls in BFCL's ground-truth form; ``[]`` when no tool fits.
        group: Queries that must land in the same split (a composed query and its parts share one).

    """

    id: str
    source: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    reference: Reference
    group: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.group:
            self.group = self.id

    @property
    def irrelevant(self) -> bool:
        """The reference is "no call"."""
        return not self.reference

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (inverse of `from_json`)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Example:
        """Read what `to_json` wrote."""
        return cls(**data)


def _concrete(value: Any) -> Any:
    """One value from BFCL's nested form: a dict whose entries are lists of acceptable values."""
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        out = {}
        for key, options in value.items():
            kept = [o for o in options if not _omitted(o)]
            if kept:
                out[key] = _concrete(kept[0])
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [_concrete(v) for v in value]
    return value


def _omitted(value: Any) -> bool:
    return isinstance(value, str) and value == ""


def reference_calls(reference: Reference, specs: Sequence[ToolSpec] = ()) -> list[dict[str, Any]]:
    """One concrete answer: each parameter with its first acceptable value, the path the grammar writes.

    With the tools given, the first acceptable value that fits the parameter's schema is taken, and a
    parameter with no fitting value is left out when BFCL allows it (``""``): BFCL lists ``None`` or
    ``""`` beside real values to mean "may be omitted", which no schema admits as a value.
    """
    by_name = {s.name: s for s in specs}
    calls = []
    for call in reference:
        (name, params), = call.items()
        spec = by_name.get(name)
        arguments = {}
        for param, acceptable in params.items():
            values = [_concrete(v) for v in acceptable if not _omitted(v)]
            if spec is not None and param in spec.properties:
                fitting = [v for v in values if spec.value_is_valid(param, v)]
                if fitting or any(_omitted(v) for v in acceptable):
                    values = fitting
            if values:
                arguments[param] = values[0]
        calls.append({"name": name, "arguments": arguments})
    return calls


def _function_dicts(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """Normalise tools (BFCL docs, OpenAI dicts, JSON-schema dicts) to plain JSON-schema function dicts."""
    return [
        {"name": s.name, "description": s.description, "parameters": s.parameters} for s in to_tool_specs(tools)
    ]


# --------------------------------------------------------------------------------------------------
# BFCL live
# --------------------------------------------------------------------------------------------------


def examples_from_bfcl(
    data_dir: str | Path, categories: Iterable[str] = BFCL_LIVE_CATEGORIES, limit: int | None = None
) -> tuple[list[Example], list[str]]:
    """BFCL cases as examples; irrelevance cases get the reference "no call".

    Args:
        data_dir: The folder with ``BFCL_v4_*.json`` and ``possible_answer/``.
        categories: Which categories to read (the ``live_*`` ones by default).
        limit: At most this many cases per category.

    Returns:
        The examples and a list of ``"id: reason"`` for cases that could not be used.

    """
    examples, skipped = [], []
    for case in load_bfcl(data_dir, categories, limit=limit):
        try:
            tools = _function_dicts(case.functions)
        except ToolSchemaError as exc:
            skipped.append(f"{case.id}: {exc}")
            continue
        reference = [] if case.category.endswith("irrelevance") else list(case.ground_truth or [])
        examples.append(Example(case.id, f"bfcl:{case.category}", list(case.messages), tools, reference))
    return examples, skipped


# --------------------------------------------------------------------------------------------------
# xLAM / Hammer records
# --------------------------------------------------------------------------------------------------

def examples_from_records(records: Iterable[Record], source: str = "xlam") -> tuple[list[Example], list[str]]:
    """xLAM-60k / xlam-irrelevance / Hammer records as examples (empty answers = irrelevance).

    A required parameter the reference leaves out is made optional: the reference is the truth, and
    a tool the reference cannot be written in would drop the query.
    """
    examples, skipped = [], []
    for index, record in enumerate(records):
        record_id = record.id or f"{source}-{index}"
        tools = [record_tool_to_openai(t)["function"] for t in record.tools]
        used = {(c["name"], p) for c in record.answers for p in c["arguments"]}
        for tool in tools:
            params = tool["parameters"]
            called = {p for (n, p) in used if n == tool["name"]}
            if any(c["name"] == tool["name"] for c in record.answers):
                params["required"] = [p for p in params["required"] if p in called]
        try:
            tools = _function_dicts(tools)
        except ToolSchemaError as exc:
            skipped.append(f"{record_id}: {exc}")
            continue
        messages = (
            [{"role": "user", "content": record.query}] if isinstance(record.query, str) else list(record.query)
        )
        reference = [{c["name"]: {p: [v] for p, v in c["arguments"].items()}} for c in record.answers]
        examples.append(Example(record_id, source, messages, tools, reference))
    return examples, skipped


def load_xlam(path_or_id: str | Path, limit: int | None = None, split: str = "train"
              ) -> tuple[list[Example], list[str]]:
    """xLAM-form records from a file, or from the hub through ``datasets`` where a hub is reachable.

    Args:
        path_or_id: A JSON/JSONL file (xLAM-60k rows, xlam-irrelevance rows or Hammer's masked SFT
            examples), or a hub dataset id such as ``"Salesforce/xlam-function-calling-60k"``.
        limit: At most this many records.
        split: The dataset split for a hub id.

    Raises:
        ImportError: A hub id was given and ``datasets`` is not installed.

    """
    path = Path(path_or_id)
    if path.is_file():
        return examples_from_records(load_records(path, limit=limit), source="xlam")
    from datasets import load_dataset  # optional: only hub ids need it

    rows = load_dataset(str(path_or_id), split=split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "rows.jsonl"
        file.write_text("".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return examples_from_records(load_records(file), source="xlam")


# --------------------------------------------------------------------------------------------------
# ShareGPT / glaive conversations
# --------------------------------------------------------------------------------------------------

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _parse_json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def examples_from_glaive(path: str | Path, limit: int | None = None) -> tuple[list[Example], list[str]]:
    """One example per assistant decision of ShareGPT tool conversations (glaive, LLaMA-Factory form).

    Every turn after a user message or a tool result is a decision: a ``function_call`` turn gives
    a reference call; a plain ``gpt`` answer gives the reference "no call" (the assistant answered in
    text, which after a tool result is the decision an agent loop needs most). Earlier
    calls and observations stay in the conversation as assistant ``tool_calls`` and ``tool`` turns.
    """
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    examples, skipped = [], []
    for index, item in enumerate(items[:limit] if limit is not None else items):
        conv_id = f"glaive-{index}"
        try:
            tools = _function_dicts(_parse_json(item.get("tools")) or [])
        except ToolSchemaError as exc:
            skipped.append(f"{conv_id}: {exc}")
            continue
        messages: list[dict[str, Any]] = []
        if item.get("system"):
            messages.append({"role": "system", "content": item["system"]})
        for turn, message in enumerate(item.get("conversations", [])):
            role, value = message.get("from"), message.get("value", "")
            # A decision follows each user turn and each tool result (answer, or call again?).
            after_user = bool(messages) and messages[-1]["role"] in ("user", "tool")
            if role == "function_call":
                call = _parse_json(value)
                if not isinstance(call, dict) or "name" not in call:
                    skipped.append(f"{conv_id}: unreadable function_call {value[:60]!r}")
                    break
                arguments = _parse_json(call.get("arguments")) or {}
                if after_user and tools:
                    reference = [{call["name"]: {p: [v] for p, v in arguments.items()}}]
                    examples.append(Example(f"{conv_id}-{turn}", "glaive", list(messages), tools, reference,
                                            group=conv_id))
                messages.append({"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": call["name"], "arguments": arguments}}]})
            elif role == "observation":
                messages.append({"role": "tool", "content": value})
            elif role in _SHAREGPT_ROLES:
                mapped = _SHAREGPT_ROLES[role]
                if mapped == "assistant" and after_user and tools:
                    examples.append(Example(f"{conv_id}-{turn}", "glaive", list(messages), tools, [], group=conv_id))
                messages.append({"role": mapped, "content": value})
    return examples, skipped
