"""Argument values decoded under their JSON schema, so every sample is valid by construction.

A small model asked for an integer may write a word; for a nested object it may invent a key. Sampling
then validating throws such samples away, and a weak model may never produce a valid one. Here each
value's tokens are masked while they are sampled, by llguidance (a Rust JSON-schema-to-token-mask
engine): at every step only tokens that keep the text a prefix of some valid value can be drawn.

llguidance fits the prefix-cached batch sampler best of the three libraries the design names: a
matcher per row costs a few microseconds to copy, a mask about as much per token, it needs no GPU
kernels or compilation step, and it reads a Hugging Face tokenizer directly. (xgrammar compiles each
schema ahead, seconds for a large vocabulary; outlines-core builds a full index per schema.)

The grammar is the text after ``"name":`` as the formats write it: one space, then the value in
canonical separators (``", "``, ``": "``), with no other whitespace, so a sample never spends its token
budget on blank space. After the value, any text that starts with a delimiter may follow: a number
only ends where the model writes what comes after it (``10,``), and forbidding that would leave it
writing digits (`langchain_toolprm.search.values.value_end` cuts the sample there). Keywords
llguidance does not implement are ignored (``lenient``); `jsonschema` still checks every sample
afterwards.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["ValueGrammar", "ValueGrammars", "mask_rows", "value_grammar_text"]

logger = logging.getLogger(__name__)

_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}


def value_grammar_text(schema: Mapping[str, Any]) -> str:
    """The Lark grammar of a value of ``schema`` as written after ``"name":`` (see the module docstring).

    The same text constrains local decoding here and served decoding on a server whose structured
    outputs run llguidance (vLLM's ``guidance`` backend, which its ``auto`` mode picks for Lark).
    """
    return ('start: " " value TAIL?\nTAIL: /[,}\\]\\s][\\s\\S]*/\nvalue: %json '
            + json.dumps({**schema, "x-guidance": _OPTIONS}))


class ValueGrammar:
    """One schema's compiled grammar; `matcher` hands out a fresh matcher per sampled row."""

    def __init__(self, matcher: Any):
        self._matcher = matcher

    def matcher(self) -> Any:
        """A matcher at the start of the value (a copy: rows advance independently)."""
        return self._matcher.deep_copy()


class ValueGrammars:
    """Compiled value grammars of one tokenizer, cached per schema.

    Args:
        tokenizer: A Hugging Face tokenizer.
        vocab_size: The width of the model's logits (may exceed the tokenizer's own vocabulary).
        eos_id: The token that ends a value once it is complete (the end-of-turn token).

    """

    def __init__(self, tokenizer: Any, vocab_size: int, eos_id: int):
        import llguidance.hf

        self._tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=eos_id)
        self._cache: dict[str, ValueGrammar | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def available(cls) -> bool:
        """Whether llguidance is installed (it comes with the ``transformers`` extra)."""
        import importlib.util

        return importlib.util.find_spec("llguidance") is not None

    def get(self, schema: Mapping[str, Any]) -> ValueGrammar | None:
        """The grammar of values of ``schema``, or ``None`` where llguidance cannot build one."""
        import llguidance

        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            if key not in self._cache:
                grammar = llguidance.LLMatcher.grammar_from_lark(value_grammar_text(schema))
                matcher = llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)
                if matcher.is_error():
                    logger.info("No value grammar for %s (%s); its values are sampled freely", key,
                                matcher.get_error())
                    self._cache[key] = None
                else:
                    self._cache[key] = ValueGrammar(matcher)
            return self._cache[key]


def mask_rows(logits: torch.Tensor, matchers: Sequence[Any | None]) -> torch.Tensor:
    """``logits`` with the tokens each row's matcher forbids set to ``-inf`` (rows without one unchanged).

    A matcher that has stopped or failed leaves its row alone: that row is finished and only rides along.
    """
    import llguidance.torch as guided

    rows = [i for i, m in enumerate(matchers) if m is not None and not m.is_stopped() and not m.is_error()]
    if not rows:
        return logits
    bitmask = guided.allocate_token_bitmask(len(rows), logits.shape[-1])
    for position, row in enumerate(rows):
        guided.fill_next_token_bitmask(matchers[row], bitmask, position)
    masked = logits.clone()
    subset = masked[rows].cpu()
    guided.apply_token_bitmask_inplace(subset, bitmask)
    masked[rows] = subset.to(masked.device)
    return masked
