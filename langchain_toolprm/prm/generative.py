"""A generative PRM: a causal LM whose next token after a step is ``+`` or ``-``."""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from langchain_toolprm.grammar import Action, GrammarState
from langchain_toolprm.lm import CausalLM, Prefix, PrefixCache, Usage
from langchain_toolprm.lm.tokenized import TokenizedLM
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.prm.adapters import DEFAULT_PRM, load_prm_model
from langchain_toolprm.prm.base import PRM, Path, PRMSession
from langchain_toolprm.prm.prompt import (
    LABEL_NEGATIVE,
    LABEL_POSITIVE,
    render_context,
    render_history,
    step_text,
)
from langchain_toolprm.tools import ToolSpec

if TYPE_CHECKING:
    import torch

__all__ = ["GenerativePRM", "LabelPRM", "LabelSession"]

LM = TypeVar("LM", bound=TokenizedLM)


class LabelPRM(PRM, Generic[LM]):
    """A PRM whose score of a step is the model's P(``+``) over ``+``/``-`` at the label position after it.

    What the prompt format and the tokenizer decide is here; where the model runs (in process, on a
    server) is the subclass's.

    Args:
        lm: The model; a fine-tuned one (``toolprm train``) knows the prompt format of
            `langchain_toolprm.prm.prompt`.
        name: The PRM's name.

    Raises:
        ValueError: The tokenizer does not write the labels as single tokens.

    """

    def __init__(self, lm: LM, name: str):
        self.lm = lm
        self.name = name
        ids = [lm.single_token_id(label) for label in (LABEL_POSITIVE, LABEL_NEGATIVE)]
        if None in ids:
            raise ValueError(
                f"The tokenizer of {lm.name!r} splits the PRM labels {LABEL_POSITIVE!r}/{LABEL_NEGATIVE!r} "
                "into several tokens; a generative PRM needs each label to be one token."
            )
        self.label_ids: list[int] = [int(i) for i in ids if i is not None]


class GenerativePRM(LabelPRM[CausalLM]):
    """Score = ``softmax([logit(+), logit(-)])[0]`` at the label position after the step, on a local model.

    Args:
        lm: Any causal LM; a fine-tuned one (``toolprm train``) knows the prompt format of
            `langchain_toolprm.prm.prompt`.

    Raises:
        ValueError: The tokenizer does not write the labels as single tokens.

    """

    def __init__(self, lm: CausalLM):
        super().__init__(lm, f"generative:{lm.name}")

    @classmethod
    def from_pretrained(cls, ref: str = DEFAULT_PRM, **load_kwargs: Any) -> GenerativePRM:
        """Load a PRM by reference, with no hub needed for the packaged one.

        ``ref`` is ``"default"`` (the packaged PRM), a `toolprm train` output (LoRA adapter or full model),
        a hub id, a GGUF file or a packaged name.

        Raises:
            ValueError: The PRM was trained on another prompt format than this version writes.

        """
        model, tokenizer = load_prm_model(ref, **load_kwargs)
        name = "toolprm-default" if str(ref) == DEFAULT_PRM else str(ref)
        return cls(CausalLM(model, tokenizer, name=name))

    @classmethod
    def on_policy_model(cls, ref: str, lm: CausalLM) -> GenerativePRM | None:
        """The PRM ``ref`` as an adapter on the policy's loaded model, when ``ref`` is a plain LoRA of that model.

        ``None`` otherwise (another base, a full model, a LoRA variant): load it with `from_pretrained`.
        One base model then serves both, at the memory of the policy alone (`langchain_toolprm.prm.shared`).

        Raises:
            ValueError: The PRM was trained on another prompt format than this version writes.

        """
        from langchain_toolprm.prm.shared import adapted_lm

        adapted = adapted_lm(ref, lm)
        return cls(adapted) if adapted is not None else None

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec]) -> PRMSession:
        usage = Usage()
        context = render_context(messages, specs)
        return _GenerativeSession(self, lambda: PrefixCache(self.lm, self.lm.prefix(context, usage), usage), usage)


class LabelSession(PRMSession):
    """One conversation's step texts; `_scores` reads P(``+``) after each, wherever the model runs."""

    usage: Usage

    @abstractmethod
    def _scores(self, history: str, steps: Sequence[str]) -> list[float]:
        """P(``+``) after each of ``steps``, each written after ``history``."""

    def score(self, path: Path, state: GrammarState, candidates: Sequence[Action]) -> list[float]:
        return self._scores(*self._texts(path, state, candidates))

    @staticmethod
    def _texts(path: Path, state: GrammarState, candidates: Sequence[Action]) -> tuple[str, list[str]]:
        """The history of ``path`` and the text of each candidate step, as the PRM reads them."""
        return render_history([(s, a, True) for s, a in path]), [step_text(state, action) for action in candidates]

    def score_path(self, path: Path) -> list[float]:
        lines = [step_text(s, a) for s, a in path]
        history = render_history([(s, a, True) for s, a in path])
        # Each step's text ends where its label starts, so the prefixes are cut from one history.
        texts, offset = [], 0
        for line in lines:
            texts.append(history[: offset + len(line)])
            offset = history.index("\n", offset + len(line)) + 1
        return self._scores("", texts)


class _GenerativeSession(LabelSession):
    """One conversation's steps, judged on the model's cache of its context.

    The context is encoded when a step is first judged: a search that leaves every decision to the
    policy (`Guidance`) costs the PRM nothing.
    """

    def __init__(self, prm: GenerativePRM, encode: Callable[[], PrefixCache], usage: Usage):
        self.prm = prm
        self._encode = encode
        self.usage = usage

    @cached_property
    def cache(self) -> PrefixCache:
        return self._encode()

    def _scores(self, history: str, steps: Sequence[str]) -> list[float]:
        return self._judged([(history, steps)])[0]

    def score_many(self, requests: Sequence[tuple[Path, GrammarState, Sequence[Action]]]) -> list[list[float]]:
        # Every beam's history is cached: their steps are judged together in one forward pass.
        return self._judged([self._texts(path, state, candidates) for path, state, candidates in requests])

    def _judged(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """P(+) after each step of each ``(history, steps)``, read at the step's last token."""
        import torch

        bases = self.cache.get_many([history for history, _ in items])
        groups: list[tuple[Prefix, Sequence[str], Sequence[Sequence[int]]]] = [
            (base, steps, [[] for _ in steps]) for base, (_, steps) in zip(bases, items, strict=True)]
        # The next round's history is one of these plus its label: kept, it is not fed again.
        logits = self.prm.lm.judged_logits(groups, self.prm.label_ids, _unchanged, self.usage, keep=self.cache.remember)
        return [torch.softmax(rows, dim=-1)[:, 0].tolist() for rows in logits]


def _unchanged(rows: torch.Tensor | None) -> contextlib.AbstractContextManager[None]:
    """No adapter to switch per row: this PRM's model is adapted (or merged) whole."""
    return contextlib.nullcontext()
