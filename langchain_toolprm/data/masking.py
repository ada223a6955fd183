"""Function masking: tool and parameter names replaced by random identifiers.

A PRM that reads ``get_weather(city=...)`` can judge by the name alone; with the names masked it must
read the descriptions, which is what carries over to unseen tools (Hammer, ToolPRM). Names are masked
consistently in the tools, the reference answer, earlier tool calls of the conversation and the
trajectories, descriptions are kept, and the draw is seeded per query so a build is reproducible.
The mapping is kept beside the data so that masked examples can be read back.
"""

from __future__ import annotations

import copy
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_toolprm.data.sources import Example
from langchain_toolprm.grammar import Action, StepTag

__all__ = ["Mask", "make_mask", "mask_actions", "mask_example", "random_identifier"]

_FIRST = string.ascii_letters
_REST = string.ascii_letters + string.digits + "_"


def random_identifier(rng: random.Random, low: int = 5, high: int = 14) -> str:
    """A random name that is still an identifier (a letter, then letters, digits and ``_``).

    Identifiers keep every call format and JSON schema valid, and look like real names to a tokenizer
    (Hammer's masks also use dots; those break BFCL-style dotted names, so they are left out).
    """
    length = rng.randint(low, high)
    return rng.choice(_FIRST) + "".join(rng.choice(_REST) for _ in range(length - 1))


@dataclass
class Mask:
    """Original name -> masked name, for functions and, per function, for parameters.

    Attributes:
        functions: ``{original function: masked function}``.
        parameters: ``{original function: {original parameter: masked parameter}}``.

    """

    functions: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, dict[str, str]] = field(default_factory=dict)

    def function(self, name: str) -> str:
        """The masked name of a function (unknown names pass through)."""
        return self.functions.get(name, name)

    def parameter(self, function: str, name: str) -> str:
        """The masked name of a parameter of ``function`` (original function name)."""
        return self.parameters.get(function, {}).get(name, name)

    def inverse(self) -> Mask:
        """The mapping back from masked names to the originals."""
        return Mask(
            {m: o for o, m in self.functions.items()},
            {self.functions.get(f, f): {m: o for o, m in params.items()} for f, params in self.parameters.items()},
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {"functions": self.functions, "parameters": self.parameters}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mask:
        """Read `to_json`'s output."""
        return cls(dict(data.get("functions", {})), {k: dict(v) for k, v in data.get("parameters", {}).items()})


def make_mask(tools: Sequence[dict[str, Any]], rng: random.Random) -> Mask:
    """Draw fresh names for every tool and parameter; unique among functions and within each function."""
    mask = Mask()
    taken: set[str] = set()
    for tool in tools:
        name = random_identifier(rng)
        while name in taken:
            name = random_identifier(rng)
        taken.add(name)
        mask.functions[tool["name"]] = name
        params: dict[str, str] = {}
        for param in (tool.get("parameters") or {}).get("properties", {}):
            new = random_identifier(rng, 3, 10)
            while new in params.values():
                new = random_identifier(rng, 3, 10)
            params[param] = new
        mask.parameters[tool["name"]] = params
    return mask


def _mask_tool(tool: dict[str, Any], mask: Mask) -> dict[str, Any]:
    name = tool["name"]
    parameters = copy.deepcopy(tool.get("parameters") or {"type": "object", "properties": {}})
    parameters["properties"] = {
        mask.parameter(name, p): schema for p, schema in parameters.get("properties", {}).items()
    }
    if "required" in parameters:
        parameters["required"] = [mask.parameter(name, p) for p in parameters["required"]]
    return {**tool, "name": mask.function(name), "parameters": parameters}


def _mask_message(message: dict[str, Any], mask: Mask) -> dict[str, Any]:
    out = dict(message)
    if message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            function = call.get("function", call)
            name = function["name"]
            arguments = {mask.parameter(name, p): v for p, v in (function.get("arguments") or {}).items()}
            calls.append({**call, "function": {**function, "name": mask.function(name), "arguments": arguments}})
        out["tool_calls"] = calls
    if message.get("role") == "tool" and message.get("name"):
        out["name"] = mask.function(message["name"])
    return out


def mask_example(example: Example, seed: int, mask: Mask | None = None) -> tuple[Example, Mask]:
    """The example with masked names, and the mapping used.

    Args:
        example: The query.
        seed: Combined with the example id, so every query gets its own names, reproducibly.
        mask: A mapping to apply instead of drawing one.

    """
    mask = mask or make_mask(example.tools, random.Random(f"{seed}:{example.id}"))
    reference = [
        {mask.function(name): {mask.parameter(name, p): values for p, values in params.items()}}
        for call in example.reference
        for name, params in call.items()
    ]
    masked = Example(
        id=example.id,
        source=example.source,
        messages=[_mask_message(m, mask) for m in example.messages],
        tools=[_mask_tool(t, mask) for t in example.tools],
        reference=reference,
        group=example.group,
        meta={**example.meta, "masked": True},
    )
    return masked, mask


def mask_actions(actions: Sequence[Action], mask: Mask) -> list[Action]:
    """A trajectory in masked names: function names, and parameter names of the call they belong to."""
    out, function = [], ""
    for action in actions:
        if action.tag is StepTag.FUNC_NAME:
            function = action.name or ""
            out.append(Action.call(mask.function(function)))
        elif action.tag is StepTag.ARG_NAME:
            out.append(Action.arg(mask.parameter(function, action.name or "")))
        else:
            out.append(action)
    return out
