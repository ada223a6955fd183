"""Tool specs: one normalised JSON schema per tool, whatever form the user gave it in.

The grammar reads function names, parameter names, enums and required lists from these specs, and
every generated value is validated against them with `jsonschema`, so a spec must be both a correct
JSON schema and something the grammar can walk. Everything that fails either test is rejected here,
with the tool and the parameter named, before any model runs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from langchain_core.utils.function_calling import convert_to_openai_tool

__all__ = [
    "ToolSchemaError",
    "ToolSpec",
    "enumerable_values",
    "to_tool_specs",
]

_OBJECT_KEYWORDS = {"type", "properties", "required", "additionalProperties", "description", "title", "$schema",
                    "$defs", "definitions", "default", "examples", "patternProperties", "minProperties",
                    "maxProperties"}
_JSON_TYPES = {"object", "number", "integer", "string", "boolean", "array", "null"}


class ToolSchemaError(ValueError):
    """A tool definition the grammar cannot use; the message names the tool and the parameter."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the grammar sees it: a name, a description and an object schema of parameters.

    Attributes:
        name: The function name the model must write.
        description: Free text shown to the model and the PRM.
        parameters: A JSON schema of type ``object`` with ``properties`` and ``required``.

    """

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        """Parameter name -> its JSON schema, in declaration order (the order the model reads)."""
        return cast(dict[str, dict[str, Any]], self.parameters.get("properties", {}))

    @property
    def required(self) -> tuple[str, ...]:
        """Names that must be filled before the call may end."""
        return tuple(self.parameters.get("required", ()))

    @cached_property
    def _validators(self) -> dict[str, Draft202012Validator]:
        return {name: Draft202012Validator(schema) for name, schema in self.properties.items()}

    def value_is_valid(self, param: str, value: Any) -> bool:
        """Whether ``value`` satisfies the schema of ``param``."""
        return bool(self._validators[param].is_valid(value))

    @cached_property
    def _choices(self) -> dict[str, list[Any] | None]:
        return {name: _valid_choices(schema) for name, schema in self.properties.items()}

    def choices(self, param: str) -> list[Any] | None:
        """The values of ``param`` to enumerate, each valid under its whole schema; ``None`` to sample.

        An enum member that breaks another keyword (``{"type": "string", "enum": ["a", 1]}``) is left
        out here, so the grammar never offers a value that fails validation.
        """
        return self._choices[param]

    def argument_errors(self, arguments: Mapping[str, Any]) -> list[str]:
        """Every way ``arguments`` break the schema (unknown names, missing required, bad values)."""
        errors = [f"unknown parameter {name!r}" for name in arguments if name not in self.properties]
        errors += [f"missing required parameter {name!r}" for name in self.required if name not in arguments]
        for name, value in arguments.items():
            if name in self.properties:
                errors += [f"{name}: {e.message}" for e in self._validators[name].iter_errors(value)]
        return errors

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI tool dict, which chat templates and LangChain expect."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def to_tool_specs(tools: Iterable[Any]) -> list[ToolSpec]:
    """Normalise tools given in any supported form.

    Args:
        tools: OpenAI tool dicts, bare function dicts (``{"name", "parameters"}``), BFCL function docs
            (types ``dict``, ``float``, ``tuple``, ``any``), LangChain tools, pydantic models or plain
            functions, or ready ``ToolSpec`` objects.

    Returns:
        One spec per tool, in the given order.

    Raises:
        ToolSchemaError: A tool cannot be converted, two tools share a name, or a parameter schema is
            not valid JSON schema.

    """
    specs = [_to_spec(tool) for tool in tools]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ToolSchemaError(f"Two tools are named {spec.name!r}; tool names must be unique.")
        seen.add(spec.name)
    return specs


def _to_spec(tool: Any) -> ToolSpec:
    if isinstance(tool, ToolSpec):
        return tool
    from langchain_toolprm.tool_forms import bfcl_function_to_openai, looks_like_bfcl  # it raises ToolSchemaError

    if isinstance(tool, Mapping) and looks_like_bfcl(tool):
        tool = bfcl_function_to_openai(tool)
    try:
        openai_tool = convert_to_openai_tool(tool)
    except Exception as exc:  # the converter raises bare ValueError/TypeError/KeyError
        raise ToolSchemaError(f"Cannot read tool {_describe(tool)}: {exc}") from exc
    function = openai_tool.get("function")
    if not isinstance(function, Mapping) or not function.get("name"):
        raise ToolSchemaError(f"Tool {_describe(tool)} has no function name.")
    name = str(function["name"])
    parameters = copy.deepcopy(function.get("parameters") or {"type": "object", "properties": {}})
    return ToolSpec(
        name=name,
        description=str(function.get("description") or ""),
        parameters=_check_parameters(name, parameters),
    )


def _describe(tool: Any) -> str:
    if isinstance(tool, Mapping):
        return repr(tool.get("name") or tool.get("function", {}).get("name") or json.dumps(tool)[:80])
    return repr(getattr(tool, "name", None) or getattr(tool, "__name__", None) or tool)


def _check_parameters(tool: str, parameters: Any) -> dict[str, Any]:
    """Reject what the grammar cannot walk, naming the tool and the parameter."""
    if not isinstance(parameters, Mapping):
        raise ToolSchemaError(f"Tool {tool!r}: 'parameters' must be an object schema, got {parameters!r}.")
    parameters = dict(parameters)
    stray = [k for k in parameters if k not in _OBJECT_KEYWORDS]
    if "properties" not in parameters and stray:
        raise ToolSchemaError(
            f"Tool {tool!r}: 'parameters' has no 'properties' but keys {stray}; this looks like a flat "
            "(xLAM-style) parameter map. Give a JSON schema, or convert the tool with "
            "langchain_toolprm.tool_forms.record_tool_to_openai."
        )
    parameters.setdefault("type", "object")
    parameters.setdefault("properties", {})
    parameters = _inline_refs(tool, parameters)
    if parameters["type"] != "object":
        raise ToolSchemaError(f"Tool {tool!r}: parameters must have type 'object', got {parameters['type']!r}.")
    properties = parameters["properties"]
    if not isinstance(properties, Mapping):
        raise ToolSchemaError(f"Tool {tool!r}: 'properties' must map parameter names to schemas.")
    for param, schema in properties.items():
        where = f"Tool {tool!r}, parameter {param!r}"
        if not isinstance(schema, Mapping):
            raise ToolSchemaError(f"{where}: the schema must be an object, got {schema!r}.")
        _check_types(where, schema)
        try:
            Draft202012Validator.check_schema(dict(schema))
        except SchemaError as exc:
            raise ToolSchemaError(f"{where}: invalid JSON schema: {exc.message}") from exc
        if _has_ref(schema):
            raise ToolSchemaError(f"{where}: unresolved '$ref' in the schema; inline the referenced definition.")
        reason = _unsatisfiable(schema)
        if reason is not None:
            raise ToolSchemaError(f"{where}: no value can satisfy the schema ({reason}); no valid call could be"
                                  " written with it.")
    required = parameters.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ToolSchemaError(f"Tool {tool!r}: 'required' must be a list of parameter names.")
    unknown = [r for r in required if r not in properties]
    if unknown:
        raise ToolSchemaError(f"Tool {tool!r}: required parameter(s) {unknown} are not in 'properties'.")
    return cast(dict[str, Any], parameters)


def enumerable_values(schema: Mapping[str, Any]) -> list[Any] | None:
    """The finite set of values a schema names, or ``None`` when values must be sampled.

    Enums, constants, booleans and null are finite: the policy scores all of them in one pass
    instead of sampling, so a rare but right enum member is never missed. The members are as
    written; `ToolSpec.choices` keeps those that validate.
    """
    if "enum" in schema:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    kind = schema.get("type")
    if kind == "boolean":
        return [True, False]
    if kind == "null":
        return [None]
    return None


def _valid_choices(schema: Mapping[str, Any]) -> list[Any] | None:
    values = enumerable_values(schema)
    if values is None:
        return None
    validator = Draft202012Validator(dict(schema))
    return [v for v in values if validator.is_valid(v)]


# Lower and upper bounds that leave no value between them when the lower one is larger.
_BOUNDS = (("minLength", "maxLength"), ("minItems", "maxItems"), ("minProperties", "maxProperties"),
           ("minimum", "maximum"), ("exclusiveMinimum", "maximum"), ("minimum", "exclusiveMaximum"),
           ("exclusiveMinimum", "exclusiveMaximum"))


def _unsatisfiable(schema: Mapping[str, Any]) -> str | None:
    """Why no JSON value can satisfy ``schema``, for the contradictions a tool author can write by mistake.

    Finite choices are checked exactly (every enum member and constant against the whole schema); free
    values for crossed bounds, an empty type list, and required parts (object properties, array items
    when at least one is needed, all branches of ``anyOf``/``oneOf``) that are unsatisfiable themselves.
    ``None`` when no contradiction is found.
    """
    choices = _valid_choices(schema)
    if choices is not None:
        if not choices:
            members = enumerable_values(schema)
            return "an empty enum" if not members else f"none of {members!r} is valid under the other keywords"
        return None
    if schema.get("type") == []:
        return "an empty type list"
    for low, high in _BOUNDS:
        a, b = schema.get(low), schema.get(high)
        crossed = isinstance(a, int | float) and isinstance(b, int | float) and (
            a > b or (a == b and "exclusive" in low + high))
        if crossed:
            return f"{low} {a} is above {high} {b}"
    found = schema.get("properties")
    properties = found if isinstance(found, Mapping) else {}
    for name in schema.get("required") or []:
        sub = properties.get(name)
        if isinstance(sub, Mapping) and (reason := _unsatisfiable(sub)) is not None:
            return f"required property {name!r}: {reason}"
    items = schema.get("items")
    if isinstance(items, Mapping) and (schema.get("minItems") or 0) > 0 and (reason := _unsatisfiable(items)):
        return f"items: {reason}"
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            reasons = [_unsatisfiable(b) if isinstance(b, Mapping) else None for b in branches]
            if all(r is not None for r in reasons):
                return f"every branch of {key}: {'; '.join(r for r in reasons if r)}"
    return None


# Keywords whose values are data, and keywords that map names (not keywords) to schemas.
_VALUE_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
_NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


def _has_ref(node: Any) -> bool:
    """Whether a ``$ref`` keyword occurs anywhere in ``node`` (as a key, not inside a value such as an enum)."""
    if isinstance(node, list):
        return any(_has_ref(v) for v in node)
    if not isinstance(node, Mapping):
        return False
    for key, value in node.items():
        if key == "$ref":
            return True
        if key in _NAME_MAPS and isinstance(value, Mapping):  # keys there are names, not keywords
            if any(_has_ref(sub) for sub in value.values()):
                return True
        elif key not in _VALUE_KEYWORDS and _has_ref(value):
            return True
    return False


def _inline_refs(tool: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Replace local references (``{"$ref": "#/$defs/Point"}``, as MCP tools write them) by what they name.

    The grammar walks each parameter's schema on its own, so a reference into the tool's ``$defs``
    must be resolved here; the definitions then leave the schema. A recursive definition cannot be
    inlined and is refused, as is a reference that is not local.
    """
    if not _has_ref(parameters):
        return parameters

    def resolve(node: Any, trail: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(item, trail) for item in node]
        if not isinstance(node, Mapping):
            return node
        ref = node.get("$ref")
        rest = {
            k: {name: resolve(sub, trail) for name, sub in v.items()} if k in _NAME_MAPS and isinstance(v, Mapping)
            else v if k in _VALUE_KEYWORDS else resolve(v, trail)
            for k, v in node.items() if k not in ("$ref", "$defs", "definitions")
        }
        if ref is None:
            return rest
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise ToolSchemaError(f"Tool {tool!r}: only local '$ref's (#/...) can be inlined, got {ref!r}.")
        if ref in trail:
            raise ToolSchemaError(f"Tool {tool!r}: '$ref' {ref!r} is recursive; such a schema cannot be inlined.")
        target: Any = parameters
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise ToolSchemaError(f"Tool {tool!r}: '$ref' {ref!r} names no definition in the schema.")
            target = target[part]
        return {**resolve(target, (*trail, ref)), **rest}

    return cast(dict[str, Any], resolve(parameters, ()))


def _check_types(where: str, schema: Mapping[str, Any]) -> None:
    declared = schema.get("type")
    names = declared if isinstance(declared, list) else [declared] if declared is not None else []
    for name in names:
        if name not in _JSON_TYPES:
            raise ToolSchemaError(f"{where}: unsupported type {name!r} (expected one of {sorted(_JSON_TYPES)}).")
    for key in ("items",):
        if isinstance(schema.get(key), Mapping):
            _check_types(f"{where}[items]", schema[key])
    for sub, sub_schema in (schema.get("properties") or {}).items():
        if isinstance(sub_schema, Mapping):
            _check_types(f"{where}.{sub}", sub_schema)
