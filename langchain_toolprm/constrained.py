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

The token limit bounds what the model chooses, not what the grammar forces: a required key, or the
rest of a single enum member, is written for free (`forced_token`), and a value still open at
the limit is closed with a short valid continuation (`ValueGrammar.complete`) instead of being thrown
away, so a search under ``tool_choice="required"`` does not die of a weak model's long strings.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from langchain_toolprm.member_rules import value_rule

if TYPE_CHECKING:
    import torch
    from llguidance import LLMatcher
    from transformers import PreTrainedTokenizerBase

__all__ = ["ValueGrammar", "ValueGrammars", "forced_token", "mask_rows", "value_grammar_text"]

logger = logging.getLogger(__name__)

_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}
# What closes a value soonest, tried in order where the grammar allows it: inside a string, its end (or
# one letter towards a minimum length); elsewhere the end of a container, the next item or key (a
# required key is then forced), and the shortest scalars. A digit comes after "," so an array that needs
# more items gets them rather than an ever longer number.
_CLOSE_IN_STRING = '"a'
_CLOSE_OUTSIDE = '}],"0123456789ntf[{-.e'
_COMPLETION_LIMIT = 256


def _in_string(text: str) -> bool:
    """Whether JSON text ends inside a string (its quotes counted, escaped ones skipped)."""
    inside = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif inside and char == "\\":
            escaped = True
        elif char == '"':
            inside = not inside
    return inside


def value_grammar_text(schema: Mapping[str, Any]) -> str:
    """The Lark grammar of a value of ``schema`` as written after ``"name":`` (see the module docstring).

    Enum and const members are literal texts (`langchain_toolprm.member_rules`), so each is written exactly.
    The same text constrains local decoding here and served decoding on a server whose structured
    outputs run llguidance (vLLM's ``guidance`` backend, which its ``auto`` mode picks for Lark).
    """
    return 'start: " " value TAIL?\nTAIL: /[,}\\]\\s][\\s\\S]*/\n' + value_rule(schema, _OPTIONS)


class ValueGrammar:
    """One schema's compiled grammar; `matcher` hands out a fresh matcher per sampled row.

    Args:
        matcher: The compiled matcher at the start of the value.
        grammars: The tokenizer's grammars (for the token ids `complete` writes with).

    """

    def __init__(self, matcher: LLMatcher, grammars: ValueGrammars):
        self._matcher = matcher
        self._grammars = grammars

    def matcher(self) -> LLMatcher:
        """A matcher at the start of the value (a copy: rows advance independently)."""
        return self._matcher.deep_copy()

    def complete(self, matcher: LLMatcher, written: Sequence[int]) -> list[int] | None:
        """Tokens that close the value ``written`` so far (``matcher`` is after it), or ``None`` if none fit.

        Forced text is taken whole; otherwise the first token of the preference order (`_CLOSE_OUTSIDE`,
        `_CLOSE_IN_STRING`) that the grammar allows, else the lowest-numbered allowed one. Every step
        keeps the text a prefix of a valid value, so this ends valid unless the step limit runs out.
        """
        import numpy as np

        out: list[int] = []
        while len(out) < _COMPLETION_LIMIT:
            if matcher.is_accepting():
                return out
            if matcher.is_stopped() or matcher.is_error():
                return None
            forced = matcher.compute_ff_tokens()
            if forced:
                matcher.consume_tokens(forced)
                out += forced
                continue
            bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
            bits[self._grammars.eos_id] = 0
            text = self._grammars.decode([*written, *out])
            order = _CLOSE_IN_STRING if _in_string(text) else _CLOSE_OUTSIDE
            token = next((t for t in self._grammars.char_ids(order) if bits[t]), None)
            if token is None:
                allowed = np.flatnonzero(bits)
                if not len(allowed):
                    return None
                token = int(allowed[0])
            matcher.consume_token(token)
            out.append(token)
        return None


class ValueGrammars:
    """Compiled value grammars of one tokenizer, cached per schema.

    Args:
        tokenizer: A Hugging Face tokenizer.
        vocab_size: The width of the model's logits (may exceed the tokenizer's own vocabulary).
        eos_id: The token that ends a value once it is complete (the end-of-turn token).

    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, vocab_size: int, eos_id: int):
        import llguidance.hf
        from transformers import PreTrainedTokenizerFast

        if not isinstance(tokenizer, PreTrainedTokenizerFast):  # llguidance reads the Rust tokenizer
            raise ValueError(f"Value grammars need a fast tokenizer; {type(tokenizer).__name__} is not one.")
        self._tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=eos_id)
        self._hf = tokenizer
        self.eos_id = eos_id
        self._cache: dict[str, ValueGrammar | None] = {}
        self._char_ids: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def decode(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``."""
        return cast(str, self._hf.decode(list(tokens)))  # one id list decodes to one string

    def char_ids(self, chars: str) -> list[int]:
        """The single-token ids of ``chars``, in order (characters without one left out)."""
        if chars not in self._char_ids:
            ids = [self._hf.encode(c, add_special_tokens=False) for c in chars]
            self._char_ids[chars] = [i[0] for i in ids if len(i) == 1]
        return self._char_ids[chars]

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
                    self._cache[key] = ValueGrammar(matcher, self)
            return self._cache[key]


def forced_token(matcher: LLMatcher) -> int | None:
    """The next token when the grammar allows only one way on (a key's name, an enum's rest), else ``None``."""
    if matcher.is_stopped() or matcher.is_error():
        return None
    tokens = matcher.compute_ff_tokens()
    return int(tokens[0]) if tokens else None


def mask_rows(logits: torch.Tensor, matchers: Sequence[LLMatcher | None]) -> torch.Tensor:
    """``logits`` with the tokens each row's matcher forbids set to ``-inf`` (rows without one unchanged).

    A matcher that has stopped or failed leaves its row alone: that row is finished and only rides along.
    """
    import llguidance.torch as guided

    live = [(i, m) for i, m in enumerate(matchers) if m is not None and not m.is_stopped() and not m.is_error()]
    if not live:
        return logits
    rows = [i for i, _ in live]
    bitmask = guided.allocate_token_bitmask(len(rows), logits.shape[-1])
    for position, (_, matcher) in enumerate(live):
        guided.fill_next_token_bitmask(matcher, bitmask, position)
    masked = logits.clone()
    subset = masked[rows].cpu()
    guided.apply_token_bitmask_inplace(subset, bitmask)
    masked[rows] = subset.to(masked.device)
    return masked
