"""Trajectories for PRM training: the reference path, the policy's own answers, and branches off the path.

Negatives must sit where the search will meet them, so they come from the policy the search runs:

- *samples*: K complete answers at temperature 0.8 from the policy's prompt, read leniently and
  replayed through the grammar (the path stops where the grammar could not have written it);
- *branches*: at every decision of the reference path, the alternatives the policy proposes there
  (`SearchContext.propose`, the very call the search makes: enumerated names and end decisions,
  sampled values), each a one-step detour from a correct prefix;
- *rules*: every legal alternative at the reference path's enumerated decisions, with no policy at all.
  Used for irrelevance queries (the only decision is "call which tool, or none?", a closed set) and
  for queries left over when the build's policy time budget is spent.

Every trajectory is labelled by `ReferenceMatcher` (prefix correctness against the reference).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from langchain_toolprm.data.labels import ReferenceMatcher
from langchain_toolprm.data.sources import Example, reference_calls
from langchain_toolprm.grammar import Action, Grammar, GrammarState, StepTag
from langchain_toolprm.tools import ToolSpec, to_tool_specs

if TYPE_CHECKING:
    pass

__all__ = [
    "RolloutConfig",
    "Trajectory",
    "action_from_json",
    "action_to_json",
    "actions_from_calls",
    "complete_along_reference",
    "labelled_length",
    "prepare",
    "rule_trajectories",
    "value_perturbations",
]


class RolloutConfig(BaseModel):
    """How much of the policy to spend per query.

    Attributes:
        samples: K, complete answers sampled per query.
        temperature: Sampling temperature (the paper's 0.8) for samples and sampled values.
        branch_width: Alternatives the policy proposes at each decision of the reference path (the
            search's M).
        max_new_tokens: Token limit of a complete sample.
        max_value_tokens: Token limit of one sampled value.
        rule_width: Most alternatives per decision for rule branches (random choice beyond it).
        perturb_values: Rule branches per free value: perturbed reference values (`value_perturbations`);
            0 for none. Few, so wrong values do not swamp right ones.
        seed: Random seed.

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: int = Field(2, ge=0)
    temperature: float = Field(0.8, ge=0.0)
    branch_width: int = Field(4, ge=0)
    max_new_tokens: int = Field(96, ge=1)
    max_value_tokens: int = Field(48, ge=1)
    rule_width: int = Field(6, ge=1)
    perturb_values: int = Field(1, ge=0)
    seed: int = 0


@dataclass
class Trajectory:
    """A labelled action path.

    Attributes:
        actions: The steps, from the empty turn.
        labels: Prefix correctness per step.
        origin: ``"reference"``, ``"sample"``, ``"branch"`` (policy proposals), ``"rule"`` (legal
            alternatives, no policy), ``"perturbed"`` (a free value perturbed, no policy) or
            ``"completed"`` (a branch finished along the reference).
        complete: Whether the path ends the turn (``TOTAL_FINISH``): a whole answer.

    """

    actions: list[Action]
    labels: list[bool]
    origin: str
    complete: bool = field(init=False)

    def __post_init__(self) -> None:
        self.complete = bool(self.actions) and self.actions[-1].tag is StepTag.TOTAL_FINISH

    @property
    def correct(self) -> bool:
        """A complete path with every step right."""
        return self.complete and all(self.labels)

    def key(self) -> tuple[Action, ...]:
        """Identity for de-duplication."""
        return tuple(self.actions)

    def to_json(self) -> dict[str, Any]:
        """Compact JSON form: actions as ``[tag, name, value_json]`` triples, labels as 0/1."""
        return {
            "actions": [action_to_json(a) for a in self.actions],
            "labels": [int(x) for x in self.labels],
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trajectory:
        """Inverse of `to_json`."""
        return cls([action_from_json(a) for a in data["actions"]], [bool(x) for x in data["labels"]], data["origin"])


def labelled_length(actions: Sequence[Action], labels: Sequence[bool]) -> int:
    """How many leading steps of a trajectory carry a label worth learning.

    Up to and including the first wrong step, so every history is all ``+`` as in the search; a
    ``FUNC_END`` right after it is kept too: it is forced (no decision of its own), so its label is the
    closing call's, and it is the only place a ``FUNC_END`` can be wrong.
    """
    for i, label in enumerate(labels):
        if not label:
            follows = i + 1 < len(actions) and actions[i + 1].tag is StepTag.FUNC_END
            return i + 2 if follows else i + 1
    return len(labels)


def action_to_json(action: Action) -> list[Any]:
    """``[tag, name, value_json]``."""
    return [action.tag.value, action.name, action.value_json]


def action_from_json(data: Sequence[Any]) -> Action:
    """Inverse of `action_to_json`."""
    return Action(StepTag(data[0]), data[1], data[2])


@dataclass
class Prepared:
    """An example made ready for rollouts: specs, grammar, matcher and the reference path."""

    example: Example
    specs: list[ToolSpec]
    grammar: Grammar
    matcher: ReferenceMatcher
    reference: list[Action]


def prepare(example: Example, *, equivalence: bool = False, max_calls: int = 8) -> Prepared | None:
    """Specs, grammar and reference path of an example, or ``None`` when the grammar cannot write the reference.

    A reference the grammar cannot write (a value outside its schema's enum, an unknown parameter)
    would label the policy's grammatical answers against an answer no search can reach.
    """
    specs = to_tool_specs(example.tools)
    grammar = Grammar(specs, max_calls=max(max_calls, len(example.reference)))
    reference = grammar.actions_for_calls(reference_calls(example.reference, specs))
    if reference is None:
        return None
    matcher = ReferenceMatcher(example.reference, specs, equivalence=equivalence)
    if not all(matcher.label(reference)):
        return None
    return Prepared(example, specs, grammar, matcher, reference)


def _coerce(spec: ToolSpec, param: str, value: Any) -> Any:
    """Bring a near-miss value into the parameter's type, as the search's value reader does."""
    from langchain_toolprm.search.values import read_value

    ok, coerced = read_value(json.dumps(value), spec.properties.get(param, {}))
    return coerced if ok else value


def actions_from_calls(grammar: Grammar, calls: Sequence[dict[str, Any]], finished: bool) -> list[Action]:
    """The longest legal action path that writes ``calls`` (then ``finish`` when the answer ended).

    The search cannot write an unknown tool or an invalid value; a sample's path stops at the first
    step the grammar refuses, so every labelled step is one the search could take.
    """
    state, path = grammar.initial(), []

    def step(action: Action) -> bool:
        nonlocal state
        try:
            state = grammar.apply(state, action)
        except (ValueError, KeyError, TypeError):
            return False
        path.append(action)
        return True

    for call in calls:
        name = str(call.get("name", ""))
        if not step(Action.call(name)):
            return path
        spec = grammar.spec(name)
        arguments = call.get("arguments") or {}
        if not isinstance(arguments, dict):
            return path
        for param, value in arguments.items():
            if not step(Action.arg(str(param))) or not step(Action.set_value(_coerce(spec, str(param), value))):
                return path
        if not step(Action.end_args()) or not step(Action.end_call()):
            return path
    if finished:
        step(Action.finish())
    return path


def labelled_trajectory(prepared: Prepared, actions: Sequence[Action], origin: str) -> Trajectory:
    """``actions`` labelled by prefix correctness against the reference."""
    return Trajectory(list(actions), prepared.matcher.label(actions), origin)


def dedupe(trajectories: list[Trajectory]) -> list[Trajectory]:
    """The trajectories without repeats, first occurrence kept."""
    seen: set[tuple[Action, ...]] = set()
    out = []
    for trajectory in trajectories:
        if trajectory.actions and trajectory.key() not in seen:
            seen.add(trajectory.key())
            out.append(trajectory)
    return out


def complete_along_reference(prepared: Prepared, actions: Sequence[Action]) -> list[Action] | None:
    """A one-step detour from the reference path, finished the way the reference goes on.

    A wrong value, an early ``end_args`` or an early ``finish`` leaves a whole (wrong) answer when the
    reference's remaining steps are replayed after it: complete negatives, which an outcome model and
    trajectory accuracy need, at no policy cost. Detours that cannot be finished so (another function,
    an extra parameter) give ``None``.
    """
    reference, i = prepared.reference, len(actions) - 1
    if i < 0 or list(actions[:i]) != reference[:i] or i >= len(reference):
        return None
    detour, taken = actions[i], reference[i]
    if detour.tag is StepTag.TOTAL_FINISH:
        return list(actions)
    if detour.tag is StepTag.ARG_VALUE:
        rest = reference[i + 1:]
    elif detour.tag is StepTag.ARG_END and taken.tag is StepTag.ARG_NAME:
        j = next((k for k in range(i, len(reference)) if reference[k].tag is StepTag.ARG_END), None)
        if j is None:
            return None
        rest = reference[j + 1:]
    else:
        return None
    path = [*actions, *rest]
    try:
        prepared.grammar.walk(path)
    except ValueError:
        return None
    return path


def completed_branches(prepared: Prepared, trajectories: list[Trajectory]) -> list[Trajectory]:
    """Each unfinished branch finished along the reference (`complete_along_reference`), where it can be."""
    out = []
    for trajectory in trajectories:
        if trajectory.origin in ("branch", "rule", "perturbed") and not trajectory.complete:
            path = complete_along_reference(prepared, trajectory.actions)
            if path is not None and len(path) > len(trajectory.actions):
                out.append(labelled_trajectory(prepared, path, "completed"))
    return out


def _reference_values(prepared: Prepared) -> list[Any]:
    return [a.value for a in prepared.reference if a.tag is StepTag.ARG_VALUE]


def value_perturbations(prepared: Prepared, state: GrammarState, taken: Action, rng: random.Random) -> list[Action]:
    """Wrong-looking values for a free parameter, made without a policy, valid for its schema.

    The mistakes small policies make with free values: another argument's value (the wrong span of the
    request), a number off by one or by a factor of ten, a string cut short or re-cased, a list missing
    an item. They are labelled like every other step, so a perturbation that happens to be acceptable
    is a positive.
    """
    spec = prepared.grammar.spec(state.function or "")
    param = state.param or ""
    value = taken.value
    candidates: list[Any] = [v for v in _reference_values(prepared) if v != value]
    if isinstance(value, bool):
        candidates.append(not value)
    elif isinstance(value, int | float):
        candidates += [value + 1, value - 1, value * 10, -value] if value else [1, -1]
    elif isinstance(value, str) and value.strip():
        words = value.replace(",", " ").split()
        candidates += [value.lower(), value.upper(), f"{value} {words[0]}", value[: max(1, len(value) // 2)]]
        if len(words) > 1:
            candidates += [words[0], words[-1]]
    elif isinstance(value, list) and value:
        candidates += [value[:-1], value[::-1], [*value, value[0]]]
    seen, out = {taken}, []
    for candidate in candidates:
        try:
            action = Action.set_value(candidate)
        except (TypeError, ValueError):
            continue
        if action not in seen and spec.value_is_valid(param, candidate):
            seen.add(action)
            out.append(action)
    rng.shuffle(out)
    return out


def rule_trajectories(prepared: Prepared, config: RolloutConfig, rng: random.Random) -> list[Trajectory]:
    """The reference path and every legal alternative at its enumerated decisions (no policy).

    Decisions with more than ``rule_width`` alternatives keep a random subset; ``finish`` at a call
    slot is always kept, since "one more call, or stop?" is the decision small models get wrong. Free
    values get up to ``perturb_values`` perturbed reference values (`value_perturbations`).
    """
    out = [labelled_trajectory(prepared, prepared.reference, "reference")]
    states = prepared.grammar.walk(prepared.reference)
    for i, (state, taken) in enumerate(zip(states, prepared.reference, strict=False)):
        decision = prepared.grammar.decision(state)
        if decision.free and config.perturb_values:
            values = value_perturbations(prepared, state, taken, rng)[: config.perturb_values]
            out += [labelled_trajectory(prepared, [*prepared.reference[:i], a], "perturbed") for a in values]
        if decision.free or decision.forced:
            continue
        others = [a for a in decision.actions if a != taken]
        keep = [a for a in others if a.tag is StepTag.TOTAL_FINISH]
        rest = [a for a in others if a.tag is not StepTag.TOTAL_FINISH]
        rng.shuffle(rest)
        keep += rest[: max(config.rule_width - len(keep), 0)]
        out += [labelled_trajectory(prepared, [*prepared.reference[:i], a], "rule") for a in keep]
    return dedupe(out + completed_branches(prepared, out))
