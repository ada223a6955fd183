"""A causal LM with prefix caching: the one place where tokens meet the model.

Both the policy and the generative PRM score many short continuations of one long shared text (the
prompt with its tool list, or the PRM's context). The shared text is encoded once; every later call
feeds only what differs, on a copy of the cached keys and values, with all candidates in one batch.

Texts are always tokenised whole (prefix + continuation), never piece by piece, so the model sees
the tokens it would have produced itself; where a continuation re-tokenises the end of the prefix
(BPE merges across the boundary), the cache is cut back to the last shared token.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["CausalLM", "Prefix", "Sample", "Usage"]

logger = logging.getLogger(__name__)

StopFn = Callable[[str], int | None]
"""Given the text generated so far, the length of its finished part, or ``None`` to go on."""


@dataclass
class Usage:
    """Compute spent on a model: tokens fed through it and forward passes."""

    tokens: int = 0
    forwards: int = 0

    def add(self, tokens: int) -> None:
        """Count one forward pass over ``tokens`` token positions."""
        self.tokens += tokens
        self.forwards += 1


@dataclass
class Prefix:
    """An encoded text whose keys and values are kept for reuse.

    Attributes:
        text: The text.
        ids: Its token ids.
        kv: Per layer ``(keys, values)`` of shape ``[1, heads, len(ids), dim]``.

    """

    text: str
    ids: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(repr=False)


@dataclass
class Sample:
    """A sampled continuation.

    Attributes:
        text: The generated text, cut where the stop function said it was finished.
        token_ids: The tokens that produced it.
        logprob: Sum of the tokens' log-probabilities under the untempered model.
        finished: Whether it ended (stop function or end of turn) before the token limit.

    """

    text: str
    token_ids: tuple[int, ...]
    logprob: float
    finished: bool


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class CausalLM:
    """A transformers causal LM and its tokenizer, with batched scoring and sampling on cached prefixes.

    Args:
        model: A causal LM in eval mode.
        tokenizer: Its tokenizer.
        name: A name for logs and metadata.

    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str | None = None):
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.device = next(model.parameters()).device
        self._torch = torch
        # Forward passes are not re-entrant on one model object across threads on every backend;
        # one lock keeps concurrent searches (abatch, async agents) correct.
        self._lock = threading.RLock()
        self.stop_ids = self._end_of_turn_ids()

    @classmethod
    def from_pretrained(cls, ref: str, **kwargs: Any) -> CausalLM:
        """Load through `langchain_toolprm.models.load_causal_lm` (hub id, folder, GGUF, packaged name)."""
        from langchain_toolprm.models import load_causal_lm

        model, tokenizer = load_causal_lm(ref, **kwargs)
        return cls(model, tokenizer, name=str(ref))

    # -- tokens ---------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without added special tokens (chat templates write their own)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens kept (formats and stop checks need them)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _end_of_turn_ids(self) -> set[int]:
        ids: set[int] = set()
        config_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (self.tokenizer.eos_token_id, config_eos):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list):
                ids.update(v for v in value if isinstance(v, int))
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id and token_id >= 0:
                ids.add(token_id)
        return ids

    @property
    def end_of_turn(self) -> str:
        """The text of the token that ends an assistant turn."""
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id in self.stop_ids:
                return token
        return self.tokenizer.eos_token or ""

    def single_token_id(self, text: str) -> int | None:
        """The id of ``text`` if it is exactly one token, else ``None``."""
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None

    # -- caches ---------------------------------------------------------------------------------
    def _cache(self, kv: list[tuple[torch.Tensor, torch.Tensor]], length: int, batch: int) -> Any:
        from transformers import DynamicCache

        if length == 0:
            return DynamicCache(config=self.model.config)
        data = [
            (k[:, :, :length].expand(batch, -1, -1, -1), v[:, :, :length].expand(batch, -1, -1, -1))
            for k, v in kv
        ]
        return DynamicCache(ddp_cache_data=data, config=self.model.config)

    @staticmethod
    def _kv_of(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _forward(self, ids: torch.Tensor, cache: Any, usage: Usage | None, keep: int = 0) -> Any:
        if usage is not None:
            usage.add(int(ids.numel()))
        with self._torch.inference_mode():
            return self.model(
                input_ids=ids.to(self.device), past_key_values=cache, use_cache=True, logits_to_keep=keep
            )

    def prefix(self, text: str, usage: Usage | None = None, base: Prefix | None = None) -> Prefix:
        """Encode ``text`` once for reuse, starting from ``base``'s cache where the tokens agree."""
        ids = self.encode(text)
        start = 0
        if base is not None:
            start = min(_common_prefix(ids, base.ids), len(ids) - 1)
        with self._lock:
            cache = self._cache(base.kv if base is not None else [], start, 1)
            if start < len(ids):
                self._forward(self._torch.tensor([ids[start:]]), cache, usage, keep=1)
        return Prefix(text, ids, self._kv_of(cache))

    # -- scoring --------------------------------------------------------------------------------
    def token_logprobs(
        self, prefix: Prefix, items: Sequence[tuple[str, str]], usage: Usage | None = None
    ) -> list[list[float]]:
        """Log-probabilities of continuation tokens, all items in one batch.

        Args:
            prefix: The cached shared text.
            items: ``(context, continuation)`` pairs; the text is ``prefix.text + context + continuation``.
            usage: Where to count the compute.

        Returns:
            Per item, the log-probabilities of the tokens of the full text that the context alone does
            not fix (the continuation's tokens, plus a boundary token the continuation re-tokenised).

        """
        torch = self._torch
        fulls = [self.encode(prefix.text + context + cont) for context, cont in items]
        starts = []
        for (context, _), full in zip(items, fulls, strict=True):
            context_ids = self.encode(prefix.text + context) if context else prefix.ids
            starts.append(min(_common_prefix(full, context_ids), len(full) - 1))
        shared = min([_common_prefix(full, prefix.ids) for full in fulls] + [min(starts)])
        cut = max(shared - 1, 0)  # feed the last shared token again: its logits score the first new one
        rows = [full[cut:] for full in fulls]
        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
        with self._lock:
            logits = self._forward(batch, self._cache(prefix.kv, cut, len(rows)), usage).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for b, (row, start) in enumerate(zip(rows, starts, strict=True)):
            first = max(start - cut, 1)  # position in the row of the first scored token
            positions = torch.arange(first - 1, len(row) - 1)
            targets = torch.tensor(row[first:])
            out.append(logprobs[b, positions, targets].tolist())
        return out

    def next_token_logits(
        self, prefix: Prefix, texts: Sequence[str], token_ids: Sequence[int], usage: Usage | None = None
    ) -> torch.Tensor:
        """Logits of ``token_ids`` right after ``prefix.text + text`` for each text, in one batch.

        Returns:
            A ``[len(texts), len(token_ids)]`` float tensor.

        """
        torch = self._torch
        fulls = [self.encode(prefix.text + text) for text in texts]
        shared = min(_common_prefix(full, prefix.ids) for full in fulls)
        cut = max(min(shared, min(len(f) for f in fulls) - 1), 0)
        rows = [full[cut:] for full in fulls]
        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
        with self._lock:
            logits = self._forward(batch, self._cache(prefix.kv, cut, len(rows)), usage).logits
        last = torch.tensor([len(row) - 1 for row in rows])
        return logits[torch.arange(len(rows)), last][:, list(token_ids)].float()

    # -- sampling -------------------------------------------------------------------------------
    def sample(
        self,
        prefix: Prefix,
        context: str,
        n: int,
        *,
        temperature: float = 0.8,
        max_new_tokens: int = 64,
        stop: StopFn | None = None,
        usage: Usage | None = None,
        generator: torch.Generator | None = None,
    ) -> list[Sample]:
        """Sample ``n`` continuations of ``prefix.text + context`` on one shared cache.

        Args:
            prefix: The cached shared text.
            context: Text after the prefix, fed once and shared by all samples.
            n: Number of samples (rows).
            temperature: 0 for greedy decoding.
            max_new_tokens: Token limit per sample.
            stop: Decides when a sample's text is finished; the end-of-turn token always stops.
            usage: Where to count the compute.
            generator: Random source, for reproducible searches.

        Returns:
            ``n`` samples, in row order.

        """
        torch = self._torch
        ids = self.encode(prefix.text + context)
        start = min(_common_prefix(ids, prefix.ids), len(ids) - 1)
        with self._lock:
            cache = self._cache(prefix.kv, start, 1)
            logits = self._forward(torch.tensor([ids[start:]]), cache, usage, keep=1).logits[:, -1]
            cache.batch_repeat_interleave(n)
            logits = logits.expand(n, -1)
            tokens: list[list[int]] = [[] for _ in range(n)]
            logprob = [0.0] * n
            results: list[Sample | None] = [None] * n
            active = list(range(n))
            for _ in range(max_new_tokens):
                step_logprobs = torch.log_softmax(logits.float(), dim=-1)
                if temperature > 0:
                    probs = torch.softmax(logits.float() / temperature, dim=-1)
                    chosen = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                else:
                    chosen = step_logprobs.argmax(dim=-1)
                keep: list[int] = []
                for slot, row in enumerate(active):
                    token = int(chosen[slot])
                    tokens[row].append(token)
                    logprob[row] += float(step_logprobs[slot, token])
                    ended = self._ended(tokens[row], stop)
                    if ended is None:
                        keep.append(slot)
                    else:
                        results[row] = Sample(ended[0], tuple(tokens[row]), logprob[row], ended[1])
                if not keep:
                    break
                if len(keep) < len(active):
                    cache.batch_select_indices(torch.tensor(keep))
                    chosen = chosen[keep]
                    active = [active[slot] for slot in keep]
                logits = self._forward(chosen[:, None], cache, usage, keep=1).logits[:, -1]
        return [
            result
            if result is not None
            else Sample(self.decode(tokens[row]), tuple(tokens[row]), logprob[row], False)
            for row, result in enumerate(results)
        ]

    def _ended(self, tokens: list[int], stop: StopFn | None) -> tuple[str, bool] | None:
        """``(text, finished)`` once a sample ends, ``None`` while it goes on.

        The end-of-turn token ends every sample; with a stop function, a sample cut by it is finished
        only if the stop function accepts the text before it.
        """
        if tokens[-1] in self.stop_ids:
            text = self.decode(tokens[:-1])
            if stop is None:
                return text, True
            end = stop(text + "\n")
            return (text[:end], True) if end is not None else (text, False)
        if stop is None:
            return None
        text = self.decode(tokens)
        end = stop(text)
        return None if end is None else (text[:end], True)


def logsumexp(values: Sequence[float]) -> float:
    """``log(sum(exp(v)))`` without overflow; ``-inf`` for no values."""
    if not values:
        return -math.inf
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))
