"""Step labels: whether each step is still on the way to the reference answer.

A step is ``+`` when the path up to and including it is the start of some correct answer, ``-``
otherwise; after the first ``-`` every later step is ``-`` too (the answer can no longer be right).
This is the question the search asks the PRM: of the candidate steps from a kept path, which keep it
right? Correct answers follow the rules of the benchmark the search is judged on:

- Parallel calls match the reference order-free: a call may match any reference call not yet matched.
- Arguments may come in any order; a parameter the reference does not list is wrong; a parameter
  whose acceptable values include ``""`` may be left out (BFCL's optional rule).
- Values match exactly (numbers by value, ``true`` is not ``1``), or, with ``equivalence=True``, by
  BFCL's acceptable-value rules (string normalisation, ``int`` for ``float``): labels then agree with
  the BFCL checker rather than with one spelling of the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_toolprm.grammar import Action, StepTag
from langchain_toolprm.tools import ToolSpec

__all__ = ["ReferenceMatcher", "label_path", "same_value"]

Reference = Sequence[Mapping[str, Mapping[str, Sequence[Any]]]]

_BFCL_TYPE = {"string": "string", "integer": "integer", "number": "float", "boolean": "boolean",
              "array": "array", "object": "dict"}


def _is_omit_marker(value: Any) -> bool:
    return isinstance(value, str) and value == ""


def same_value(a: Any, b: Any) -> bool:
    """Exact JSON equality: numbers by value (``1 == 1.0``), booleans apart from numbers, lists in order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _nested_ok(value: Any, candidate: Any) -> bool:
    """Exact match against BFCL's nested form: dict entries (and dicts in lists) hold acceptable lists."""
    if isinstance(candidate, dict) and candidate and all(isinstance(v, list) for v in candidate.values()):
        if not isinstance(value, dict) or any(k not in candidate for k in value):
            return False
        for key, options in candidate.items():
            if key in value:
                if not any(_acceptable(value[key], o) for o in options if not _is_omit_marker(o)):
                    return False
            elif not any(_is_omit_marker(o) for o in options):
                return False
        return True
    if isinstance(candidate, list) and candidate and all(isinstance(v, dict) for v in candidate):
        return isinstance(value, list) and len(value) == len(candidate) and all(
            _nested_ok(v, c) for v, c in zip(value, candidate, strict=True))
    return False


def _acceptable(value: Any, candidate: Any) -> bool:
    return same_value(value, candidate) or _nested_ok(value, candidate)


def _bfcl_spec(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON-schema parameter as the BFCL checker's type doc, or ``None`` when BFCL has no such type."""
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in _BFCL_TYPE:
        return None
    spec: dict[str, Any] = {"type": _BFCL_TYPE[kind]}
    if kind == "array":
        items = schema.get("items")
        item_kind = items.get("type") if isinstance(items, Mapping) else None
        if not isinstance(item_kind, str) or item_kind not in _BFCL_TYPE:
            return None
        spec["items"] = {"type": _BFCL_TYPE[item_kind]}
    return spec


class ReferenceMatcher:
    """Labels action paths against one reference answer.

    Args:
        reference: BFCL's ground-truth form ``[{function: {param: [acceptable values]}}]``; ``[]`` means
            the right answer is no call.
        specs: The tools; needed for ``equivalence`` (BFCL compares values by the parameter's type).
        equivalence: Compare values by BFCL's acceptable-value rules instead of exact match.

    """

    def __init__(self, reference: Reference, specs: Sequence[ToolSpec] = (), *, equivalence: bool = False):
        self.calls: list[tuple[str, dict[str, list[Any]]]] = []
        for call in reference:
            for name, params in call.items():
                self.calls.append((name, {p: list(v) for p, v in params.items()}))
        self.specs = {s.name: s for s in specs}
        self.equivalence = equivalence

    def required(self, index: int) -> set[str]:
        """Parameters reference call ``index`` must have (those without the ``""`` marker)."""
        return {p for p, values in self.calls[index][1].items() if not any(_is_omit_marker(v) for v in values)}

    def value_ok(self, index: int, param: str, value: Any) -> bool:
        """Whether ``value`` is acceptable for ``param`` of reference call ``index``."""
        name, params = self.calls[index]
        acceptable = params.get(param)
        if acceptable is None:
            return False
        if any(_acceptable(value, v) for v in acceptable if not _is_omit_marker(v)):
            return True
        if not self.equivalence:
            return False
        spec = self.specs.get(name)
        bfcl = _bfcl_spec(spec.properties.get(param, {})) if spec is not None else None
        if bfcl is None:
            return False
        from langchain_toolprm.evaluation.bfcl_checker import check_argument

        try:
            return check_argument(param, value, bfcl, list(acceptable)).valid
        except (ValueError, KeyError, TypeError):
            return False

    def label(self, actions: Sequence[Action]) -> list[bool]:
        """One label per action: ``True`` while the path can still end in a correct answer.

        The matcher keeps every way of pairing the calls written so far with reference calls (few:
        turns have a handful of calls), so order-free matching is exact, not greedy.
        """
        everything = frozenset(range(len(self.calls)))
        closed: set[frozenset[int]] = {frozenset()}  # sets of reference calls matched by closed calls
        open_: set[tuple[frozenset[int], frozenset[int]]] = set()  # (matched, candidates of the open call)
        filled: list[str] = []
        param = ""
        labels: list[bool] = []
        for action in actions:
            if labels and not labels[-1]:
                labels.append(False)
                continue
            tag = action.tag
            if tag is StepTag.FUNC_NAME:
                filled = []
                open_ = set()
                for used in closed:
                    candidates = frozenset(i for i in everything - used if self.calls[i][0] == action.name)
                    if candidates:
                        open_.add((used, candidates))
                ok = bool(open_)
            elif tag is StepTag.ARG_NAME:
                param = action.name or ""
                open_ = {(u, c) for u, c in ((u, frozenset(i for i in c if param in self.calls[i][1]))
                                             for u, c in open_) if c}
                ok = bool(open_)
            elif tag is StepTag.ARG_VALUE:
                value = action.value
                open_ = {(u, c) for u, c in ((u, frozenset(i for i in c if self.value_ok(i, param, value)))
                                             for u, c in open_) if c}
                filled.append(param)
                ok = bool(open_)
            elif tag is StepTag.ARG_END:
                done = set(filled)
                open_ = {(u, c) for u, c in ((u, frozenset(i for i in c if self.required(i) <= done))
                                             for u, c in open_) if c}
                ok = bool(open_)
            elif tag is StepTag.FUNC_END:
                closed = {u | {i} for u, c in open_ for i in c}
                open_ = set()
                ok = bool(closed)
            else:
                ok = not open_ and everything in closed
            labels.append(ok)
        return labels

    def correct(self, actions: Sequence[Action]) -> bool:
        """Whether a complete path writes a correct answer."""
        return bool(actions) and actions[-1].tag is StepTag.TOTAL_FINISH and all(self.label(actions))


def label_path(reference: Reference, actions: Sequence[Action], specs: Sequence[ToolSpec] = (), *,
               equivalence: bool = False) -> list[bool]:
    """Labels of one path (see `ReferenceMatcher.label`)."""
    return ReferenceMatcher(reference, specs, equivalence=equivalence).label(actions)
