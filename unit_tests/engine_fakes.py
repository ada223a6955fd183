"""Deterministic stand-ins for the policy and the PRM, so search logic is tested exactly."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from langchain_toolprm.formats import HermesFormat, ToolCallFormat
from langchain_toolprm.grammar import Action, GrammarState, StepTag
from langchain_toolprm.lm import Sample, StopFn, Usage
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.policy.base import Policy, PolicySession
from langchain_toolprm.prm.base import PRM, Path, PRMSession
from langchain_toolprm.tools import ToolSpec


def target_text(fmt: ToolCallFormat, calls: list[dict[str, Any]]) -> str:
    """The text a perfect model would write for ``calls`` in ``fmt``."""
    from langchain_toolprm.grammar import Grammar
    from langchain_toolprm.tools import to_tool_specs

    tools = [{"name": c["name"], "parameters": {"type": "object", "properties": {k: {} for k in c["arguments"]}}}
             for c in calls]
    grammar = Grammar(to_tool_specs({t["name"]: t for t in tools}.values()))
    actions = grammar.actions_for_calls(calls)
    assert actions is not None
    return fmt.render(grammar.walk(actions)[-1])


class TargetSession(PolicySession):
    """Likes continuations that follow a target text; samples the target's value where it can."""

    def __init__(self, target: str, fmt: ToolCallFormat, free_text: str | None = None, wrong_value: str = ' "zzz"'):
        self.target = target
        self.format = fmt
        self.native_format = fmt
        self.prompt = "PROMPT"
        self.usage = Usage()
        self.free_text = free_text if free_text is not None else target
        self.wrong_value = wrong_value

    def token_logprobs(self, items: Sequence[tuple[str, str]]) -> list[list[float]]:
        self.usage.add(sum(len(c) for _, c in items))
        return [[-0.1] if self.target.startswith(text + cont) else [-3.0, -1.0] for text, cont in items]

    def sample(self, assistant_text: str, n: int, *, temperature: float, max_new_tokens: int,
               stop: StopFn | None = None) -> list[Sample]:
        self.usage.add(n)
        if stop is None:
            return [Sample(self.free_text, (1,), -1.0, True)] * n
        text = self.target[len(assistant_text):] if self.target.startswith(assistant_text) else self.wrong_value
        end = stop(text)
        value = text[:end] if end is not None else self.wrong_value
        # The first sample is the target's value, the others one wrong value: a PRM can tell them apart.
        return [Sample(value, (1,), -0.5, True)] + [Sample(self.wrong_value, (2,), -2.0, True)] * (n - 1)


class TargetPolicy(Policy):
    name = "target"

    def __init__(self, calls: list[dict[str, Any]], fmt: ToolCallFormat | None = None, **kwargs: Any):
        self.fmt = fmt or HermesFormat(end_of_turn="<|im_end|>")
        self.calls = calls
        self.kwargs = kwargs

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], *, seed: int | None = None
                ) -> TargetSession:
        text = target_text(self.fmt, self.calls) if self.calls else ""
        return TargetSession(text, self.fmt, **self.kwargs)


class RandomSession(PolicySession):
    """Random log-probabilities and values drawn from a fixed pool (some invalid for any schema)."""

    POOL = (' "abc"', " 5", " 2.5", " true", " null", " [1, 2]", ' {"a": 1}', ' "x y"', " -3", " [\"q\"]", " oops")

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.format = HermesFormat(end_of_turn="<|im_end|>")
        self.native_format = self.format
        self.prompt = "PROMPT"
        self.usage = Usage()

    def token_logprobs(self, items: Sequence[tuple[str, str]]) -> list[list[float]]:
        return [[-self.rng.random() * 3] for _ in items]

    def sample(self, assistant_text: str, n: int, *, temperature: float, max_new_tokens: int,
               stop: StopFn | None = None) -> list[Sample]:
        out = []
        for _ in range(n):
            text = self.rng.choice(self.POOL) + ","
            end = stop(text) if stop else len(text)
            done = end is not None
            out.append(Sample(text[:end] if done else text, (self.rng.randrange(99),), -1.0, done))
        return out


class RandomPolicy(Policy):
    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], *, seed: int | None = None
                ) -> RandomSession:
        return RandomSession(self.seed)


class PreferPRM(PRM):
    """Scores 0.9 for steps that name ``function`` or write ``value``, 0.2 for other choices of that kind."""

    name = "prefer"

    def __init__(self, function: str | None = None, value: Any = None):
        self.function = function
        self.value = value

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec]) -> PRMSession:
        prm = self

        class _Session(PRMSession):
            usage = Usage()

            def score(self, path: Path, state: GrammarState, candidates: Sequence[Action]) -> list[float]:
                out = []
                for a in candidates:
                    if a.tag is StepTag.FUNC_NAME and prm.function is not None:
                        out.append(0.9 if a.name == prm.function else 0.2)
                    elif a.tag is StepTag.ARG_VALUE and prm.value is not None:
                        out.append(0.9 if a.value_json == json.dumps(prm.value) else 0.2)
                    elif a.tag is StepTag.TOTAL_FINISH and not state.calls:
                        out.append(0.2)
                    else:
                        out.append(0.9)
                return out

        return _Session()


class UnsureOfRightStepsPRM(PRM):
    """A PRM that prefers a second call to stopping, yet scores every step of that call low (0.6).

    Its ranking is right at each state (the right step scores highest), its absolute scores are not:
    the imperfect PRM that makes length-dependent aggregations stop early.
    """

    name = "unsure"

    def __init__(self, second: str, finish_after_one: float = 0.7, second_call: float = 0.9):
        self.second = second
        self.finish_after_one = finish_after_one
        self.second_call = second_call

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec]) -> PRMSession:
        second, finish_after_one, second_call = self.second, self.finish_after_one, self.second_call

        class _Session(PRMSession):
            usage = Usage()

            def score(self, path: Path, state: GrammarState, candidates: Sequence[Action]) -> list[float]:
                out = []
                for a in candidates:
                    if a.tag is StepTag.TOTAL_FINISH:
                        out.append(0.95 if len(state.calls) >= 2 else finish_after_one if state.calls else 0.1)
                    elif a.tag is StepTag.FUNC_NAME:
                        right = (a.name == second) == bool(state.calls)
                        out.append((second_call if state.calls else 0.9) if right else 0.2)
                    elif state.calls:
                        out.append(0.6 if a.tag is not StepTag.ARG_VALUE or "Paris" in a.value_json else 0.3)
                    else:
                        out.append(0.95 if a.tag is not StepTag.ARG_VALUE or "Paris" in a.value_json else 0.3)
                return out

        return _Session()
