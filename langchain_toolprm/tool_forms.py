"""Tool definitions in other projects' forms, as OpenAI tool dicts with standard JSON-schema types.

BFCL function docs (Gorilla type names) and xLAM/Hammer records (flat parameter maps with Python-ish
type strings) are converted here, once, so every reader of those files sees a tool the same way.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from langchain_toolprm.tools import ToolSchemaError

__all__ = ["bfcl_function_to_openai", "looks_like_bfcl", "record_tool_to_openai"]

# Gorilla/BFCL type names and the JSON-schema types they stand for.
_BFCL_TYPES: dict[str, str | None] = {
    "dict": "object",
    "object": "object",
    "float": "number",
    "number": "number",
    "integer": "integer",
    "int": "integer",
    "string": "string",
    "str": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "any": None,
    "null": "null",
}


def looks_like_bfcl(tool: Mapping[str, Any]) -> bool:
    """BFCL docs are bare function dicts whose parameter types use Gorilla names such as ``dict``."""
    if "function" in tool or "parameters" not in tool:
        return False
    text = json.dumps(tool.get("parameters"))
    return any(f'"type": "{t}"' in text for t in ("dict", "float", "tuple", "any"))


def bfcl_function_to_openai(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Translate a BFCL function doc into an OpenAI tool dict with standard JSON-schema types.

    BFCL writes ``dict`` for objects, ``float`` for numbers, ``tuple`` for arrays and ``any`` for no
    constraint. An ``integer`` is acceptable where a ``float`` is asked, as in JSON schema's
    ``number``, which matches BFCL's own checker.

    Args:
        doc: One entry of a BFCL ``function`` list.

    Returns:
        ``{"type": "function", "function": {...}}``.

    Raises:
        ToolSchemaError: A parameter uses a type that BFCL does not define.

    """
    name = str(doc.get("name", ""))
    parameters = doc.get("parameters") or {"type": "dict", "properties": {}}
    converted = _convert_bfcl_schema(name, "", parameters)
    converted["type"] = "object"
    return {
        "type": "function",
        "function": {"name": name, "description": str(doc.get("description", "")), "parameters": converted},
    }


def _convert_bfcl_schema(tool: str, path: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            if value not in _BFCL_TYPES:
                where = f"parameter {path!r}" if path else "parameters"
                raise ToolSchemaError(f"Tool {tool!r}, {where}: unknown BFCL type {value!r}.")
            json_type = _BFCL_TYPES[value]
            if json_type is not None:
                out["type"] = json_type
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {
                p: _convert_bfcl_schema(tool, f"{path}.{p}" if path else p, s) for p, s in value.items()
            }
        elif key == "items" and isinstance(value, Mapping):
            out[key] = _convert_bfcl_schema(tool, f"{path}[items]", value)
        elif key == "optional":
            continue  # a BFCL flag that duplicates "required"
        else:
            out[key] = copy.deepcopy(value)
    enum = out.get("enum")
    if out.get("type") == "array" and isinstance(enum, list) and enum and not any(isinstance(v, list) for v in enum):
        # BFCL lists an array's allowed item values on the array itself (live cases do): per JSON
        # schema no array could match, so the values go where they mean what BFCL means.
        out["items"] = {**out.get("items", {}), "enum": out.pop("enum")}
    if out.get("type") == "number" and "enum" in out:
        out["enum"] = [float(v) if isinstance(v, int) else v for v in out["enum"]]
    if "default" in out and not _default_fits(out):
        out.pop("default")  # BFCL writes defaults such as "None" for numbers; they describe, not constrain
    if "required" in out and "properties" in out:
        out["required"] = [r for r in out["required"] if r in out["properties"]]
    return out


def _default_fits(schema: Mapping[str, Any]) -> bool:
    checked = {k: v for k, v in schema.items() if k != "default"}
    return bool(Draft202012Validator(checked).is_valid(schema["default"]))


_XLAM_TYPES = {
    "str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
    "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "array": "array",
    "tuple": "array", "set": "array", "dict": "object", "object": "object", "mapping": "object", "double": "number",
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
    if "|" in text and "[" not in text:  # ``int | None``
        parts = [p.strip() for p in text.split("|")]
        optional = optional or "None" in parts
        text = next((p for p in parts if p != "None"), "")
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

    Records (xLAM-60k, Hammer) write Python-ish types (``"List[str]"``, ``"int, optional"``,
    ``"Optional[float]"``, ``"double"``) that no JSON-schema reader accepts; a default is noted in the
    description. Training data (`langchain_toolprm.data.sources`) and evaluation
    (`langchain_toolprm.evaluation.cases`) both read records through this one function, so a record's
    tool reads the same in both. A parameter is required when it says ``"required": true``; in sources
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
        description = str(spec.get("description") or "")
        if spec.get("default") not in ("", None):  # the default says what leaving the argument out means
            description = f"{description} (default: {spec['default']})".strip()
        if description:
            schema["description"] = description
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
