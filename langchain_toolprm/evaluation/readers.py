"""Readers for evaluation data: BFCL v4 single-turn cases and xLAM/Hammer-style records.

Both readers return plain dataclasses holding JSON-like values, so the rest of the package never
depends on the on-disk layout of either benchmark.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON = Any
"""Any value that ``json.loads`` can return."""

AST_CATEGORIES: tuple[str, ...] = (
    "simple_python",
    "simple_java",
    "simple_javascript",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
"""Single-turn categories graded against a ``possible_answer`` file."""

RELEVANCE_CATEGORIES: tuple[str, ...] = ("irrelevance", "live_irrelevance", "live_relevance")
"""Single-turn categories graded only on whether the model calls a function at all."""

SINGLE_TURN_CATEGORIES: tuple[str, ...] = AST_CATEGORIES + RELEVANCE_CATEGORIES
"""The categories a folder load picks up by default (BFCL also ships multi-turn and agentic ones)."""

_BFCL_FILE = re.compile(r"^BFCL_v\d+_(?P<category>.+)\.json$")


@dataclass(frozen=True)
class BFCLCase:
    """One single-turn BFCL test case.

    Attributes:
        id: The BFCL id, e.g. ``"live_simple_0-0-0"``.
        category: The category taken from the file name, e.g. ``"simple_python"``.
        messages: The first (and, for single-turn categories, only) turn as ``{"role", "content"}`` dicts.
        functions: The BFCL function docs, unchanged (Gorilla types such as ``"dict"`` and ``"float"``).
        ground_truth: ``[{func_name: {param: [acceptable values]}}]``, or None for (ir)relevance cases.

    """

    id: str
    category: str
    messages: list[dict[str, str]]
    functions: list[dict[str, JSON]]
    ground_truth: list[dict[str, dict[str, list[JSON]]]] | None


@dataclass(frozen=True)
class Record:
    """One query with its tools and reference calls, as in xLAM-function-calling-60k and Hammer data.

    Attributes:
        query: The user request, as text or as chat messages.
        tools: ``[{"name", "description", "parameters": {param: {"type", "description", ...}}}]``. Each
            parameter may carry ``"required": True`` and a ``"default"``; JSON-schema parameters are
            flattened to this form on load.
        answers: Reference calls ``[{"name", "arguments"}]``; empty when no tool fits the query.
        id: The record id when the source has one.

    """

    query: str | list[dict[str, str]]
    tools: list[dict[str, JSON]]
    answers: list[dict[str, JSON]]
    id: str | None = None


class DataFormatError(ValueError):
    """A data file exists but does not hold what its reader expects."""


# --------------------------------------------------------------------------------------------------
# Shared JSON / JSON Lines reading
# --------------------------------------------------------------------------------------------------


def _existing_file(path: str | Path) -> Path:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"No such data file: {file}")
    return file


def _iter_jsonl_located(path: str | Path) -> Iterator[tuple[str, dict[str, JSON]]]:
    """Yield ``(file:line, object)`` for each non-blank line, so later errors can name the line."""
    file = _existing_file(path)
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{file}:{number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{where}: malformed JSON line: {error.msg}") from error
            if not isinstance(item, dict):
                raise DataFormatError(f"{where}: expected a JSON object, got {type(item).__name__}")
            yield where, item


def iter_jsonl(path: str | Path) -> Iterator[dict[str, JSON]]:
    """Yield the objects of a JSON Lines file, skipping blank lines.

    Args:
        path: The file to read.

    Yields:
        One decoded object per non-blank line.

    Raises:
        FileNotFoundError: If the file does not exist.
        DataFormatError: If a line is not a JSON object; the message names the file and line number so
            a broken line in a file of thousands can be found.

    """
    for _, item in _iter_jsonl_located(path):
        yield item


def _read_json_or_jsonl(path: str | Path) -> list[tuple[str, dict[str, JSON]]]:
    """Read a JSON array of objects or JSON Lines (BFCL names JSON Lines ``.json``).

    Returns:
        ``(location, object)`` pairs; the location names the line or array index for error messages.

    """
    file = _existing_file(path)
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".jsonl" or not text.lstrip().startswith("["):
        return list(_iter_jsonl_located(file))
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{file}:{error.lineno}: malformed JSON: {error.msg}") from error
    located = [(f"{file}: item {index}", item) for index, item in enumerate(items)]
    for where, item in located:
        if not isinstance(item, dict):
            raise DataFormatError(f"{where}: expected a JSON object, got {type(item).__name__}")
    return located


# --------------------------------------------------------------------------------------------------
# BFCL
# --------------------------------------------------------------------------------------------------


def bfcl_data_dir() -> Path | None:
    """Return the data folder of an installed ``bfcl_eval`` package, or None when it is not installed.

    The folder is located without importing ``bfcl_eval``: importing its submodules pulls in every
    model vendor's SDK, while the data files are all that is needed here.
    """
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        data = Path(location) / "data"
        if data.is_dir():
            return data
    return None


def bfcl_category(path: str | Path) -> str:
    """Return the category a BFCL file name encodes (``BFCL_v4_live_simple.json`` -> ``live_simple``).

    Raises:
        ValueError: If the name does not follow BFCL's ``BFCL_v<N>_<category>.json`` pattern.

    """
    match = _BFCL_FILE.match(Path(path).name)
    if match is None:
        raise ValueError(f"Not a BFCL data file name (expected BFCL_v<N>_<category>.json): {path}")
    return match["category"]


def _bfcl_files(folder: Path, categories: Iterable[str] | None) -> list[Path]:
    """Pick the BFCL files of the wanted categories in a folder, in a stable order."""
    found = {bfcl_category(file): file for file in sorted(folder.glob("BFCL_v*_*.json"))}
    if categories is None:
        return [found[name] for name in SINGLE_TURN_CATEGORIES if name in found]
    wanted = list(categories)
    missing = [name for name in wanted if name not in found]
    if missing:
        raise FileNotFoundError(f"No BFCL file for categories {missing} in {folder}")
    return [found[name] for name in wanted]


def _load_answers(file: Path) -> dict[str, list[dict[str, dict[str, list[JSON]]]]]:
    return {item["id"]: item["ground_truth"] for item in iter_jsonl(file)}


def _to_case(item: dict[str, JSON], category: str, answers: dict[str, Any] | None, file: Path) -> BFCLCase:
    """Build one case; the answers map is None for categories graded without a possible answer."""
    try:
        case_id, question, functions = item["id"], item["question"], item["function"]
    except KeyError as error:
        raise DataFormatError(f"{file}: entry lacks field {error}") from error
    ground_truth = None
    if answers is not None:
        if case_id not in answers:
            raise DataFormatError(f"{file}: no possible answer for {case_id}")
        ground_truth = answers[case_id]
    return BFCLCase(
        id=case_id,
        category=category,
        messages=list(question[0]) if question else [],
        functions=functions,
        ground_truth=ground_truth,
    )


def _load_bfcl_file(file: Path, answers_dir: Path, limit: int | None) -> list[BFCLCase]:
    category = bfcl_category(file)
    answers = None
    if category not in RELEVANCE_CATEGORIES:
        answer_file = answers_dir / file.name
        if not answer_file.is_file():
            raise FileNotFoundError(f"No possible-answer file for {category}: {answer_file}")
        answers = _load_answers(answer_file)
    cases: list[BFCLCase] = []
    for item in iter_jsonl(file):
        if limit is not None and len(cases) >= limit:
            break
        cases.append(_to_case(item, category, answers, file))
    return cases


def load_bfcl(
    path_or_dir: str | Path,
    categories: Iterable[str] | None = None,
    answers_dir: str | Path | None = None,
    limit: int | None = None,
) -> list[BFCLCase]:
    """Load BFCL single-turn cases with their possible answers.

    Args:
        path_or_dir: One ``BFCL_v4_<category>.json`` file, or a folder holding several.
        categories: For a folder, the categories to load (all single-turn ones present when None).
            Ignored for a single file, whose name fixes the category.
        answers_dir: Where the ``possible_answer`` files are; ``possible_answer/`` beside the data
            when None, as BFCL lays them out.
        limit: At most this many cases per category (the first ones in file order), for quick runs.

    Returns:
        The cases, category by category in file order.

    Raises:
        FileNotFoundError: If the path, a requested category or a needed answer file is missing.
        DataFormatError: If a line is malformed or a case has no possible answer.

    """
    path = Path(path_or_dir)
    if path.is_dir():
        files = _bfcl_files(path, categories)
        folder = path
    elif path.is_file():
        files, folder = [path], path.parent
    else:
        raise FileNotFoundError(f"No BFCL file or folder at {path}")
    answers = Path(answers_dir) if answers_dir is not None else folder / "possible_answer"
    return [case for file in files for case in _load_bfcl_file(file, answers, limit)]


# --------------------------------------------------------------------------------------------------
# xLAM / Hammer records
# --------------------------------------------------------------------------------------------------

_HAMMER_SECTION = r"\[BEGIN OF {name}\]\s*\n(?P<body>.*?)\n?\[END OF {name}\]"
_CODE_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(?P<body>.*?)\n?```\s*$", re.S)


def _decode_if_text(value: JSON, field: str, where: str) -> JSON:
    """Decode a field that xLAM-60k stores as a JSON string rather than as JSON."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{where}: field {field!r} is a string but not valid JSON: {error.msg}") from error


def _is_json_schema(parameters: dict[str, JSON]) -> bool:
    """Tell JSON-schema parameters from xLAM's flat ``{param: spec}`` map.

    In JSON schema ``type`` is a string (``"object"``); in the flat form every value is a spec dict.
    """
    return isinstance(parameters.get("type"), str) and isinstance(parameters.get("properties"), dict)


def _flatten_parameters(parameters: dict[str, JSON]) -> dict[str, dict[str, JSON]]:
    if not _is_json_schema(parameters):
        return parameters
    required = set(parameters.get("required", []))
    flat = {}
    for name, spec in parameters["properties"].items():
        flat[name] = {**spec, "required": True} if name in required else dict(spec)
    return flat


def normalize_tool(tool: dict[str, JSON]) -> dict[str, JSON]:
    """Bring one tool to the flat record form.

    Accepts xLAM's flat form, JSON-schema parameters, and the OpenAI ``{"type": "function",
    "function": {...}}`` wrapper, so records from different sources compare equal.
    """
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        tool = tool["function"]
    return {**tool, "parameters": _flatten_parameters(tool.get("parameters") or {})}


def normalize_call(call: dict[str, JSON], where: str = "call") -> dict[str, JSON]:
    """Return ``{"name", "arguments"}`` with the arguments decoded when they are a JSON string."""
    if "name" not in call:
        raise DataFormatError(f"{where}: call without a name: {call!r}")
    arguments = _decode_if_text(call.get("arguments") or {}, "arguments", where)
    if not isinstance(arguments, dict):
        raise DataFormatError(f"{where}: arguments of {call['name']!r} are not an object")
    return {"name": call["name"], "arguments": arguments}


def _hammer_section(instruction: str, name: str, where: str) -> str:
    match = re.search(_HAMMER_SECTION.format(name=name), instruction, re.S)
    if match is None:
        raise DataFormatError(f"{where}: Hammer instruction has no [BEGIN OF {name}] section")
    return match["body"].strip()


def _hammer_fields(item: dict[str, JSON], where: str) -> dict[str, JSON]:
    """Read Hammer's Alpaca-style masked SFT example: tools and query inside the instruction text.

    The output is the reference call list in a code fence (``[]`` when no tool fits).
    """
    instruction = item["instruction"]
    fence = _CODE_FENCE.match(item.get("output", ""))
    return {
        "query": _hammer_section(instruction, "QUERY", where),
        "tools": _hammer_section(instruction, "AVAILABLE TOOLS", where),
        "answers": fence["body"] if fence else item.get("output", ""),
    }


def _to_record(item: dict[str, JSON], where: str) -> Record:
    if "instruction" in item and "tools" not in item:
        item = {**item, **_hammer_fields(item, where)}
    missing = [field for field in ("query", "tools", "answers") if field not in item]
    if missing:
        raise DataFormatError(f"{where}: record lacks fields {missing}")
    tools = _decode_if_text(item["tools"], "tools", where)
    answers = _decode_if_text(item["answers"], "answers", where)
    if not isinstance(tools, list) or not isinstance(answers, list):
        raise DataFormatError(f"{where}: 'tools' and 'answers' must be lists")
    record_id = item.get("id")
    return Record(
        query=item["query"],
        tools=[normalize_tool(tool) for tool in tools],
        answers=[normalize_call(call, where) for call in answers],
        id=None if record_id is None else str(record_id),
    )


def load_records(path: str | Path, limit: int | None = None) -> list[Record]:
    """Load xLAM-style records from a JSON array or a JSON Lines file.

    Accepted shapes: xLAM-function-calling-60k and xlam-irrelevance (``query``, and ``tools`` and
    ``answers`` as JSON strings or as JSON), and Hammer's masked SFT examples (``instruction`` holding
    the tools and query sections, ``output`` holding the reference calls in a code fence).

    Args:
        path: The file to read.
        limit: At most this many records (the first ones).

    Returns:
        The records in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        DataFormatError: If the file or a record is malformed; the message says where.

    """
    located = _read_json_or_jsonl(path)
    if limit is not None:
        located = located[:limit]
    return [_to_record(item, where) for where, item in located]
