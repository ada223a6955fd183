"""The step grammar: how one assistant turn of tool calls is built from small decisions.

Names and structure are a closed set read from the tool specs; only argument values are generated.
So every finished state is a list of calls that validates against the tools' schemas, whatever the
model writes. Each decision is a *step* with one of the paper's six tags, and the PRM scores steps.

States are immutable and hashable so beams can share them, be de-duplicated and be used as keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from langchain_toolprm.tools import ToolSpec, enumerable_values

__all__ = [
    "Action",
    "Call",
    "CallKey",
    "Decision",
    "Grammar",
    "GrammarState",
    "StepTag",
    "ToolChoice",
    "canonical_json",
    "enumerable_values",
]


class StepTag(str, Enum):
    """The step kinds of the ToolPRM paper."""

    FUNC_NAME = "FUNC_NAME"
    ARG_NAME = "ARG_NAME"
    ARG_VALUE = "ARG_VALUE"
    ARG_END = "ARG_END"
    FUNC_END = "FUNC_END"
    TOTAL_FINISH = "TOTAL_FINISH"


def canonical_json(value: Any) -> str:
    """One text per JSON value, so equal values compare equal as strings (de-duplication, hashing)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


@dataclass(frozen=True)
class Action:
    """One decision.

    Attributes:
        tag: The step kind.
        name: The function name (FUNC_NAME) or parameter name (ARG_NAME).
        value_json: The canonical JSON text of the value (ARG_VALUE).

    """

    tag: StepTag
    name: str | None = None
    value_json: str | None = None

    @property
    def value(self) -> Any:
        """The JSON value of an ARG_VALUE action."""
        return None if self.value_json is None else json.loads(self.value_json)

    def describe(self) -> str:
        """A short human-readable form, used in traces and PRM prompts."""
        if self.tag is StepTag.FUNC_NAME:
            return f"call {self.name}"
        if self.tag is StepTag.ARG_NAME:
            return f"argument {self.name}"
        if self.tag is StepTag.ARG_VALUE:
            return f"value {self.value_json}"
        return {
            StepTag.ARG_END: "end arguments",
            StepTag.FUNC_END: "end call",
            StepTag.TOTAL_FINISH: "finish",
        }[self.tag]

    @classmethod
    def call(cls, name: str) -> Action:
        """Start a call of ``name``."""
        return cls(StepTag.FUNC_NAME, name=name)

    @classmethod
    def arg(cls, name: str) -> Action:
        """Choose parameter ``name`` to fill next."""
        return cls(StepTag.ARG_NAME, name=name)

    @classmethod
    def set_value(cls, value: Any) -> Action:
        """Fill the chosen parameter with ``value``."""
        return cls(StepTag.ARG_VALUE, value_json=canonical_json(value))

    @classmethod
    def end_args(cls) -> Action:
        """Close the argument object."""
        return cls(StepTag.ARG_END)

    @classmethod
    def end_call(cls) -> Action:
        """Close the call (always forced after ``end_args``)."""
        return cls(StepTag.FUNC_END)

    @classmethod
    def finish(cls) -> Action:
        """End the list of calls; with no call yet it means "answer in text"."""
        return cls(StepTag.TOTAL_FINISH)


CallKey = tuple[str, tuple[tuple[str, str], ...]]
"""`Call.key`: a call's name and its arguments as sorted ``(name, canonical JSON)`` pairs."""


@dataclass(frozen=True)
class Call:
    """A finished call; arguments keep the order in which they were written."""

    name: str
    arguments: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "arguments"}`` with decoded values."""
        return {"name": self.name, "arguments": {p: json.loads(v) for p, v in self.arguments}}

    def key(self) -> CallKey:
        """An order-free identity: the same call written with its arguments in another order."""
        return self.name, tuple(sorted(self.arguments))

    @classmethod
    def of(cls, name: str, arguments: Mapping[str, Any]) -> Call:
        """A call from its name and decoded arguments (a conversation's earlier tool calls)."""
        return cls(name, tuple((p, canonical_json(v)) for p, v in arguments.items()))


@dataclass(frozen=True)
class GrammarState:
    """A partial turn: closed calls plus, possibly, one open call.

    Attributes:
        calls: Calls already closed.
        function: The open call's function name, if a call is open.
        arguments: The open call's filled arguments as ``(name, canonical JSON)``.
        param: The parameter chosen and awaiting its value.
        closing: Arguments ended; the call closes next.
        done: The turn is finished.

    """

    calls: tuple[Call, ...] = ()
    function: str | None = None
    arguments: tuple[tuple[str, str], ...] = ()
    param: str | None = None
    closing: bool = False
    done: bool = False

    @property
    def filled(self) -> frozenset[str]:
        """Names of the open call's filled parameters."""
        return frozenset(name for name, _ in self.arguments)

    def call_dicts(self) -> list[dict[str, Any]]:
        """The closed calls as ``{"name", "arguments"}`` dicts."""
        return [call.to_dict() for call in self.calls]


@dataclass(frozen=True)
class Decision:
    """What may be decided in a state.

    Attributes:
        tag: The step kind of the decision (the slot decision mixes FUNC_NAME and TOTAL_FINISH).
        actions: The enumerated legal actions. Empty when a free value must be sampled.
        value_schema: The JSON schema of the value to sample, for free values.
        param: The parameter being filled, for values.

    """

    tag: StepTag
    actions: tuple[Action, ...] = ()
    value_schema: Mapping[str, Any] | None = None
    param: str | None = None

    @property
    def forced(self) -> bool:
        """Only one legal action: no policy or PRM call is needed."""
        return self.value_schema is None and len(self.actions) == 1

    @property
    def free(self) -> bool:
        """A value that must be sampled rather than enumerated."""
        return self.value_schema is not None


@dataclass(frozen=True)
class ToolChoice:
    """The caller's constraint on calling, honoured by the grammar itself.

    Attributes:
        mode: ``"auto"`` (call or answer), ``"none"`` (answer in text), ``"required"`` (at least one
            call) or ``"function"`` (exactly one call of ``function``).
        function: The forced function name in ``"function"`` mode.

    """

    mode: str = "auto"
    function: str | None = None

    @classmethod
    def parse(cls, choice: Any, tool_names: Sequence[str]) -> ToolChoice:
        """Read any of the forms LangChain and OpenAI use.

        Args:
            choice: ``None``, ``"auto"``, ``"none"``, ``"any"``, ``"required"``, ``True``, a tool name,
                ``{"type": "function", "function": {"name": ...}}`` (OpenAI), or ``{"type": "auto" | "any" |
                "none"}`` and ``{"type": "tool", "name": ...}`` (Anthropic).
            tool_names: The bound tools, to check a named choice.

        Raises:
            ValueError: The choice names no bound tool or has an unknown form.

        """
        if choice is None or choice == "auto" or choice is False:
            return cls("auto")
        if choice == "none":
            return cls("none")
        if choice in ("any", "required") or choice is True:
            return cls("required")
        name: Any = choice
        if isinstance(choice, Mapping):
            name = (choice.get("function") or {}).get("name") or choice.get("name")
            if name is None and choice.get("type") in ("auto", "none", "any", "required"):
                return cls.parse(choice["type"], tool_names)  # Anthropic's {"type": "any"}
        if isinstance(name, str):
            if name not in tool_names:
                raise ValueError(f"tool_choice names {name!r}, which is not a bound tool: {list(tool_names)}.")
            return cls("function", name)
        raise ValueError(f"Unsupported tool_choice {choice!r}.")


@dataclass
class Grammar:
    """Legal actions and transitions over the bound tools.

    Attributes:
        specs: The bound tools.
        tool_choice: The caller's calling constraint.
        max_calls: The most calls in one turn (1 when parallel calls are not allowed).
        answered: Keys of calls whose results the conversation already holds (`Call.key`); like a call
            already made in this turn, none of them may be made again: its result would tell nothing new,
            and an agent that repeats it loops.

    """

    specs: Sequence[ToolSpec]
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    max_calls: int = 8
    answered: frozenset[CallKey] = frozenset()

    def __post_init__(self) -> None:
        self._by_name = {spec.name: spec for spec in self.specs}
        if self.max_calls < 1:
            raise ValueError("max_calls must be at least 1.")

    def spec(self, name: str) -> ToolSpec:
        """The spec of a bound tool."""
        return self._by_name[name]

    def initial(self) -> GrammarState:
        """The empty turn."""
        return GrammarState()

    def decision(self, state: GrammarState) -> Decision:
        """What may be decided in ``state``.

        Raises:
            ValueError: The state is finished.

        """
        if state.done:
            raise ValueError("The state is finished; it has no decisions left.")
        if state.closing:
            return Decision(StepTag.FUNC_END, (Action.end_call(),))
        if state.param is not None:
            spec = self.spec(state.function or "")
            schema = spec.properties[state.param]
            values = spec.choices(state.param)
            if values is None:
                return Decision(StepTag.ARG_VALUE, value_schema=schema, param=state.param)
            return Decision(StepTag.ARG_VALUE, tuple(Action.set_value(v) for v in values), param=state.param)
        if state.function is not None:
            spec = self.spec(state.function)
            actions = [Action.arg(p) for p in spec.properties if p not in state.filled]
            # A call identical to one already made in this turn, or already answered, may not end.
            if all(r in state.filled for r in spec.required) and (
                Call(spec.name, state.arguments).key() not in self._made(state)
            ):
                actions.append(Action.end_args())
            return Decision(StepTag.ARG_NAME, tuple(actions))
        return Decision(StepTag.FUNC_NAME, tuple(self._slot_actions(state)))

    def _made(self, state: GrammarState) -> set[CallKey]:
        """The calls that may not be made again: this turn's and the answered ones."""
        return {call.key() for call in state.calls} | self.answered

    def _slot_actions(self, state: GrammarState) -> list[Action]:
        choice, n = self.tool_choice, len(state.calls)
        if choice.mode == "none" or n >= self.max_calls:
            return [Action.finish()]
        if choice.mode == "function":
            return [Action.call(choice.function or "")] if n == 0 else [Action.finish()]
        made = self._made(state)
        # A function without parameters has one call; once made, or answered, it is not proposed again.
        actions = [Action.call(spec.name) for spec in self.specs if spec.properties or (spec.name, ()) not in made]
        if choice.mode == "auto" or n > 0:
            actions.append(Action.finish())
        return actions

    def is_legal(self, state: GrammarState, action: Action) -> bool:
        """Whether ``action`` may be taken in ``state`` (values are checked against the schema)."""
        decision = self.decision(state)
        if decision.free:
            return action.tag is StepTag.ARG_VALUE and self.spec(state.function or "").value_is_valid(
                state.param or "", action.value
            )
        return action in decision.actions

    def apply(self, state: GrammarState, action: Action) -> GrammarState:
        """The state after ``action``.

        Raises:
            ValueError: The action is not legal in ``state``.

        """
        if not self.is_legal(state, action):
            raise ValueError(f"Illegal action {action.describe()!r} in state {state}.")
        tag = action.tag
        if tag is StepTag.FUNC_NAME:
            return replace(state, function=action.name)
        if tag is StepTag.ARG_NAME:
            return replace(state, param=action.name)
        if tag is StepTag.ARG_VALUE:
            filled = (state.param or "", action.value_json or "null")
            return replace(state, param=None, arguments=(*state.arguments, filled))
        if tag is StepTag.ARG_END:
            return replace(state, closing=True)
        if tag is StepTag.FUNC_END:
            call = Call(state.function or "", state.arguments)
            return GrammarState(calls=(*state.calls, call))
        return replace(state, done=True)

    def actions_for_calls(self, calls: Sequence[Mapping[str, Any]]) -> list[Action] | None:
        """The action path that writes ``calls``, or ``None`` if the grammar cannot write them.

        Used to score parsed samples (best-of-n, majority) and reference answers (PRM data) step by
        step with the same tags the search uses.
        """
        state, path = self.initial(), []
        try:
            for call in calls:
                steps = [Action.call(str(call["name"]))]
                for name, value in dict(call.get("arguments") or {}).items():
                    steps += [Action.arg(name), Action.set_value(value)]
                steps += [Action.end_args(), Action.end_call()]
                for action in steps:
                    state = self.apply(state, action)
                    path.append(action)
            path.append(Action.finish())
            self.apply(state, Action.finish())
        except (ValueError, KeyError, TypeError):
            return None
        return path

    def walk(self, actions: Sequence[Action]) -> list[GrammarState]:
        """The states along an action path, starting with the initial state."""
        states = [self.initial()]
        for action in actions:
            states.append(self.apply(states[-1], action))
        return states
