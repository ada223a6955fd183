"""A PRM that judges steps on the policy's own encoded context (format `toolprm-context-v1`).

The PRM is a LoRA adapter on the policy's model. A search encodes the conversation once, for the
policy; this PRM reads that cache, feeds only each candidate's text on the plain weights and a short
judgement suffix with its adapter on (`langchain_toolprm.prm.context_format` says why), so its work
per candidate is a few tokens and there is one model in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_toolprm.grammar import Action, GrammarState
from langchain_toolprm.lm import CausalLM, Prefix, Usage
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.policy.base import PolicySession
from langchain_toolprm.prm.base import Path as StepPath
from langchain_toolprm.prm.base import PRMSession
from langchain_toolprm.prm.context_format import CONTEXT_PROMPT_VERSION, judgement_suffix
from langchain_toolprm.prm.generative import LabelPRM
from langchain_toolprm.prm.shared import LoraSwitch, lora_switch_on
from langchain_toolprm.tools import ToolSpec

__all__ = ["ContextPRM"]


class ContextPRM(LabelPRM[CausalLM]):
    """Score = P(``+``) after a candidate and its judgement suffix, on the policy's cache and model.

    Args:
        lm: The policy's model (the PRM's base).
        switch: The PRM's adapter on ``lm.model``.
        name: A name for logs and metadata.

    Raises:
        ValueError: The tokenizer does not write the labels as single tokens.

    """

    def __init__(self, lm: CausalLM, switch: LoraSwitch, name: str):
        super().__init__(lm, name)
        self.switch = switch
        self._full_head = any(layer is lm.model.get_output_embeddings() for layer, _, _ in switch.factors)

    @classmethod
    def on_policy_model(cls, ref: str | Path, lm: CausalLM) -> ContextPRM | None:
        """The PRM ``ref`` on the policy model ``lm``, or ``None`` when ``lm`` does not run the adapter's base.

        Raises:
            ValueError: ``ref`` is not a plain LoRA adapter trained on `CONTEXT_PROMPT_VERSION`.

        """
        from langchain_toolprm.prm.adapters import DEFAULT_PRM, is_adapter

        if not is_adapter(ref):
            raise ValueError(f"{ref!s} is not a LoRA adapter; a {CONTEXT_PROMPT_VERSION} PRM must be one.")
        switch = lora_switch_on(ref, lm, CONTEXT_PROMPT_VERSION)
        if switch is None:
            return None
        return cls(lm, switch, "toolprm-default" if str(ref) == DEFAULT_PRM else str(ref))

    @classmethod
    def from_pretrained(cls, ref: str | Path, **load_kwargs: Any) -> ContextPRM:
        """The PRM on a fresh load of its base (`toolprm eval-prm`; a search shares the policy's instead).

        Raises:
            ValueError: ``ref`` is not a plain LoRA adapter trained on `CONTEXT_PROMPT_VERSION`.

        """
        from langchain_toolprm.prm.adapters import plain_lora

        lora = plain_lora(ref, CONTEXT_PROMPT_VERSION)
        if lora is None:
            raise ValueError(f"{ref!s} is not a plain LoRA adapter; a {CONTEXT_PROMPT_VERSION} PRM must be one.")
        prm = cls.on_policy_model(ref, CausalLM.from_pretrained(lora[2], **load_kwargs))
        assert prm is not None  # loaded from the adapter's own base
        return prm

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec]) -> PRMSession:
        raise ValueError(
            f"{self.name} reads the policy's own encoded context ({CONTEXT_PROMPT_VERSION}): it scores inside a"
            " search (run_search, ToolPRMChatModel) whose policy runs on its base model, not on its own.")

    def session_for(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec],
                    policy: PolicySession) -> PRMSession:
        from langchain_toolprm.policy.transformers import TransformersSession

        if not isinstance(policy, TransformersSession) or policy.lm.model is not self.lm.model:
            raise ValueError(
                f"{self.name} scores on its base model's cache, so the search's policy must be that loaded model"
                f" ({self.lm.name}); this search's policy session is {type(policy).__name__}"
                + (f" on {policy.lm.name}." if isinstance(policy, TransformersSession) else "."))
        return _ContextSession(self, policy)


class _ContextSession(PRMSession):
    def __init__(self, prm: ContextPRM, policy: PolicySession):
        from langchain_toolprm.policy.transformers import TransformersSession

        assert isinstance(policy, TransformersSession)  # checked by `ContextPRM.session_for`
        self.prm = prm
        self.policy = policy
        self.usage = Usage()
        self._suffixes: dict[str, list[int]] = {}

    def _suffix(self, action: Action) -> list[int]:
        text = judgement_suffix(action.tag)
        if text not in self._suffixes:
            self._suffixes[text] = self.prm.lm.encode(text)
        return self._suffixes[text]

    def score(self, path: StepPath, state: GrammarState, candidates: Sequence[Action]) -> list[float]:
        return self.score_many([(path, state, candidates)])[0]

    def score_many(self, requests: Sequence[tuple[StepPath, GrammarState, Sequence[Action]]]) -> list[list[float]]:
        """Every beam's candidates in one pass; a candidate the policy's tree pass already read adds only its suffix.

        The policy scores a round's enumerated candidates in one tree pass whose keys and values its
        cache remembers (`PrefixCache.remember`); such a candidate is judged from there, its text not
        fed again. The others (sampled values) are fed after their state's cached prefix.
        """
        import torch

        fmt, cache = self.policy.format, self.policy.cache
        groups: list[tuple[Prefix, list[str], list[list[int]]]] = []
        where: list[list[tuple[int, int]]] = []  # per request and candidate: (group, row)
        fed: list[tuple[int, GrammarState, list[int]]] = []  # (request, state, candidates to feed)
        for i, (_, state, candidates) in enumerate(requests):
            where.append([(-1, -1)] * len(candidates))
            text, rest = fmt.render(state), []
            for j, action in enumerate(candidates):
                held = cache.held(text + fmt.continuation(state, action))
                if held is None:
                    rest.append(j)
                else:
                    where[i][j] = (len(groups), 0)
                    groups.append((held, [""], [self._suffix(action)]))
            if rest:
                fed.append((i, state, rest))
        for base, (i, state, rest) in zip(cache.get_many([fmt.render(s) for _, s, _ in fed]), fed, strict=True):
            candidates = requests[i][2]
            for row, j in enumerate(rest):
                where[i][j] = (len(groups), row)
            groups.append((base, [fmt.continuation(state, candidates[j]) for j in rest],
                           [self._suffix(candidates[j]) for j in rest]))
        # The texts run on the plain weights: the policy's next states among them are kept for it.
        logits = self.prm.lm.judged_logits(groups, self.prm.label_ids, self.prm.switch.active, self.usage,
                                           full_head=self.prm._full_head, keep=cache.remember) if groups else []
        scores = [torch.softmax(group, dim=-1)[:, 0].tolist() for group in logits]
        return [[scores[g][row] for g, row in places] for places in where]
