"""A PRM without a model: schema and grounding checks.

It costs nothing, so it can run alone (with the policy's log-probabilities breaking its ties), or as a
prior beside a learned PRM. Its judgement is what a careful reader checks first: does the function
fit the request's words, is the value valid for its schema, and does the value appear in the
conversation rather than being invented.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_toolprm.grammar import Action, GrammarState, StepTag
from langchain_toolprm.lm import Usage
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.prm.base import PRM, Path, PRMSession
from langchain_toolprm.tools import ToolSpec
from langchain_toolprm.words import leaves, split_identifier

__all__ = ["RulePRM"]

_WORD = re.compile(r"[a-z]+|\d+(?:\.\d+)?")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(split_identifier(text).lower()))


class RulePRM(PRM):
    """Schema and grounding rules as step scores in (0, 1].

    Args:
        no_call_score: Score of answering in text before any call; low because a request that comes
            with tools usually wants one, yet above zero so the policy can still choose it.
        ungrounded_score: Score of a value that the conversation does not mention.

    """

    name = "rules"

    def __init__(self, no_call_score: float = 0.3, ungrounded_score: float = 0.5):
        self.no_call_score = no_call_score
        self.ungrounded_score = ungrounded_score

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec]) -> PRMSession:
        return _RuleSession(self, messages, specs)


class _RuleSession(PRMSession):
    def __init__(self, rules: RulePRM, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec]):
        self.rules = rules
        self.specs = {s.name: s for s in specs}
        self.text = "\n".join(m.get("content") or "" for m in messages if m["role"] in ("user", "tool"))
        self.lower = self.text.lower()
        self.words = _words(self.text)
        self.usage = Usage()

    def score(self, path: Path, state: GrammarState, candidates: Sequence[Action]) -> list[float]:
        return [self._one(state, action) for action in candidates]

    def _one(self, state: GrammarState, action: Action) -> float:
        tag = action.tag
        if tag is StepTag.FUNC_NAME:
            spec = self.specs.get(action.name or "")
            if spec is None:
                return 0.0
            name_words = _words(spec.name)
            name_hit = len(name_words & self.words) / max(len(name_words), 1)
            desc_hit = len(_words(spec.description) & self.words) / max(len(_words(spec.description)), 1)
            fit = 0.4 + 0.4 * name_hit + 0.2 * min(1.0, 3 * desc_hit)
            # A second call of the same function is right only for requests that ask for several.
            repeats = sum(call.name == spec.name for call in state.calls)
            return fit * 0.6**repeats
        if tag is StepTag.TOTAL_FINISH:
            return 0.8 if state.calls else self.rules.no_call_score
        if tag is StepTag.ARG_END or tag is StepTag.FUNC_END:
            return 0.8
        spec = self.specs.get(state.function or "")
        if spec is None:
            return 0.0
        if tag is StepTag.ARG_NAME:
            param = action.name or ""
            if param in spec.required:
                return 0.9
            schema = spec.properties.get(param, {})
            hints = _words(param) | {str(v).lower() for v in schema.get("enum", [])}
            return 0.9 if hints & self.words else 0.4
        param = state.param or ""
        if param not in spec.properties or not spec.value_is_valid(param, action.value):
            return 0.0
        return self._grounding(action.value, spec.properties[param])

    def _grounding(self, value: Any, schema: dict[str, Any]) -> float:
        low = self.rules.ungrounded_score
        if isinstance(value, bool) or value is None:
            return 0.8
        if isinstance(value, str):
            if value.lower() in self.lower:
                return 1.0
            words = _words(value)
            if words and words <= self.words:
                return 0.85
            return 0.8 if "enum" in schema else low
        if isinstance(value, int | float):
            if _words(repr(value).removesuffix(".0")) <= self.words:
                return 1.0
            return 0.8 if value == schema.get("default") else low
        found = leaves(value)
        if not found:
            return 0.7
        grounded = sum(self._grounding(v, {}) >= 0.85 for v in found)
        return low + (1.0 - low) * grounded / len(found)
