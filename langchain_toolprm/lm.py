"""A causal LM with prefix caching: the one place where tokens meet the model.

Both the policy and the generative PRM score many short continuations of one long shared text (the
prompt with its tool list, or the PRM's context). The shared text is encoded once; every later call
feeds only what differs, on a copy of the cached keys and values, with all candidates in one batch.

Texts are always tokenised whole (prefix + continuation), never piece by piece, so the model sees
the tokens it would have produced itself; where a continuation re-tokenises the end of the prefix
(BPE merges across the boundary), the cache is cut back to the last shared token.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langchain_toolprm.constrained import ValueGrammar, ValueGrammars

__all__ = ["CausalLM", "ContextLengthError", "Draw", "Prefix", "PrefixCache", "Sample", "TokenizedLM", "Usage",
           "common_prefix", "logsumexp"]

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

    A prefix has a *root* (a prompt, tokenised alone, as chat templates are) and a *tail* written
    after it (the assistant's text, tokenised alone). The two never share a token, as in training,
    where the template's tokens and the response's tokens are tokenised separately.

    Attributes:
        root: The root text.
        tail: The text after the root.
        ids: Token ids of root then tail.
        root_len: How many of ``ids`` belong to the root.
        kv: Per layer ``(keys, values)`` of shape ``[1, heads, len(ids), dim]``.
        last_hidden: The final hidden state at the last token (its logits predict what comes next).

    """

    root: str
    tail: str
    ids: list[int]
    root_len: int
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(repr=False)
    last_hidden: torch.Tensor = field(repr=False)


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


@dataclass(frozen=True)
class Draw:
    """One request to `CausalLM.sample_many`.

    Attributes:
        base: The prefix to continue.
        n: How many samples (rows).
        max_new_tokens: Token limit per sample.
        stop: Decides when a sample's text is finished; the end-of-turn token always stops.
        generator: Random source of this draw's rows (``None``: the one passed to `sample_many`). Draws of
            different searches decoded together keep their own sources, so each search's samples do not
            depend on what they were batched with.
        grammar: Constrains every row to a valid JSON value of a schema (`CausalLM.value_grammar`).
        ban_first: Texts the first written token (white space aside) may not start, in
            `CausalLM.opening_logprob`'s sense: a text
            answer, once the search decided that no call fits, is drawn from what the call openings
            leave over, the same mass that "answer in text" was scored by.

    """

    base: Prefix
    n: int
    max_new_tokens: int = 64
    stop: StopFn | None = None
    generator: torch.Generator | None = None
    grammar: ValueGrammar | None = None
    ban_first: tuple[str, ...] = ()


class ContextLengthError(ValueError):
    """A prompt longer than the model can read; the message gives both sizes."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading token ids ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _reserve(cache: Any, room: int) -> Any:
    """Give every plain layer of a `DynamicCache` room for ``room`` more tokens, written in place.

    A `DynamicLayer` concatenates at every decoding step: a copy of every row's whole cache per token,
    which on a CPU is most of a many-row decode (rows x prompt length x layers, each step). Decoding
    knows its token limit up front, so the room is reserved once; feeding more than ``room`` raises.
    """
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        def __init__(self, keys: torch.Tensor, values: torch.Tensor):
            super().__init__()
            batch, heads, length, _ = keys.shape
            self._keys = keys.new_empty(batch, heads, length + room, keys.shape[-1])
            self._values = values.new_empty(batch, heads, length + room, values.shape[-1])
            self._keys[:, :, :length] = keys
            self._values[:, :, :length] = values
            self._length = length
            self.device, self.is_initialized = keys.device, True
            self._view()

        def _view(self) -> None:
            self.keys = self._keys[:, :, : self._length]
            self.values = self._values[:, :, : self._length]

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
                   ) -> tuple[torch.Tensor, torch.Tensor]:
            end = self._length + key_states.shape[-2]
            if end > self._keys.shape[-2]:
                raise RuntimeError(f"Cache room for {room} tokens exceeded.")
            self._keys[:, :, self._length : end] = key_states
            self._values[:, :, self._length : end] = value_states
            self._length = end
            self._view()
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self._view()

    cache.layers = [
        ReservedLayer(layer.keys, layer.values) if type(layer) is DynamicLayer and layer.is_initialized else layer
        for layer in cache.layers
    ]
    return cache


class TokenizedLM:
    """What a model's tokenizer alone decides: token ids, the end of a turn, where a sample ends.

    Shared by the in-process `CausalLM` and a served model (`langchain_toolprm.served.ServedLM`), so
    both tokenise, stop and cut samples by the same rules.

    Args:
        tokenizer: The model's tokenizer.
        extra_stop: End-of-turn ids the model's generation config adds to the tokenizer's.

    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, extra_stop: int | list[int] | None = None):
        self.tokenizer = tokenizer
        self.stop_ids = self._end_of_turn_ids(extra_stop)

    # -- tokens ---------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without added special tokens (chat templates write their own)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens kept (formats and stop checks need them)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _end_of_turn_ids(self, extra: int | list[int] | None) -> set[int]:
        ids: set[int] = set()
        for value in (self.tokenizer.eos_token_id, extra):
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

    def opening_token_ids(self, openings: Sequence[str]) -> list[int]:
        r"""The tokens that begin one of ``openings``, leading whitespace aside (see `CausalLM.opening_logprob`).

        A token counts when its text starts with an opening or is the start of one: ``{"`` and ``{\n``
        both open ``{``, and ``<`` may open ``<tool_call>``.
        """
        texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))], skip_special_tokens=False)
        ids = []
        for i, text in enumerate(texts):
            text = text.lstrip()
            if text and any(text.startswith(o) or o.startswith(text) for o in openings):
                ids.append(i)
        return ids

    def ended(self, tokens: list[int], stop: StopFn | None) -> tuple[str, bool] | None:
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


class CausalLM(TokenizedLM):
    """A transformers causal LM and its tokenizer, with batched scoring and sampling on cached prefixes.

    Args:
        model: A causal LM in eval mode.
        tokenizer: Its tokenizer.
        name: A name for logs and metadata.

    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str | None = None):
        import torch

        super().__init__(tokenizer, getattr(getattr(model, "generation_config", None), "eos_token_id", None))
        self.model = model
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.device = next(model.parameters()).device
        self._torch = torch
        # Forward passes are not re-entrant on one model object across threads on every backend;
        # one lock keeps concurrent searches (abatch, async agents) correct.
        self._lock = threading.RLock()
        self._opening_masks: dict[tuple[str, ...], torch.Tensor] = {}
        # Recent transformers (5.24 here) call the forward's ``past_key_values`` ``cache`` (the old name warns on
        # every call); older releases know only the old name.
        forward = inspect.signature(model.base_model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward else "past_key_values"
        self._grammars: ValueGrammars | None = None

    @classmethod
    def from_pretrained(cls, ref: str, **kwargs: Any) -> CausalLM:
        """Load through `langchain_toolprm.models.load_causal_lm` (hub id, folder, GGUF, packaged name)."""
        from langchain_toolprm.models import load_causal_lm

        model, tokenizer = load_causal_lm(ref, **kwargs)
        return cls(model, tokenizer, name=str(ref))

    @property
    def max_context(self) -> int | None:
        """The most tokens the model reads: its position limit, or the tokenizer's if smaller; ``None`` if unknown."""
        limits = [getattr(self.model.config, "max_position_embeddings", None), self.tokenizer.model_max_length]
        known = [int(v) for v in limits if isinstance(v, int | float) and 0 < v < 10**8]
        return min(known) if known else None

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

    def _hidden(self, ids: torch.Tensor, cache: Any, usage: Usage | None, mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states only: the output head runs later, on the few positions that are read.

        Full logits over a 150k vocabulary at every position cost more than the forward pass itself.
        ``mask`` and ``positions`` are for rows whose cached prefixes differ in length (`sample_many`).
        """
        if usage is not None:
            usage.add(int(ids.numel()))
        extra: dict[str, Any] = {}
        if mask is not None:
            extra = {"attention_mask": mask.to(self.device), "position_ids": positions.to(self.device)}
        with self._torch.inference_mode():
            out = self.model.base_model(input_ids=ids.to(self.device), use_cache=True,
                                        **{self._cache_kwarg: cache}, **extra)
        return out.last_hidden_state

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        with self._torch.inference_mode():
            return self.model.get_output_embeddings()(hidden).float()

    def prefix(self, text: str, usage: Usage | None = None) -> Prefix:
        """Encode a root text (a prompt) once for reuse."""
        ids = self.encode(text)
        if not ids:
            raise ValueError("Cannot encode an empty prompt.")
        limit = self.max_context
        if limit is not None and len(ids) >= limit:
            raise ContextLengthError(
                f"The prompt is {len(ids):,} tokens, but {self.name} reads at most {limit:,} (prompt and answer"
                " together). Bind fewer tools, shorten their descriptions or the conversation, or use a model"
                " with a longer context."
            )
        with self._lock:
            cache = self._cache([], 0, 1)
            hidden = self._hidden(self._torch.tensor([ids]), cache, usage)
        return Prefix(text, "", ids, len(ids), self._kv_of(cache), hidden[0, -1])

    def extend(self, base: Prefix, tail: str, usage: Usage | None = None, near: Sequence[Prefix] = ()) -> Prefix:
        """The prefix ``base.root + tail``, fed from whichever known prefix shares the most tokens.

        Args:
            base: A prefix with the same root (its own tail is ignored unless it helps).
            tail: The full text after the root.
            usage: Where to count the compute.
            near: Other prefixes of the same root to reuse (the parent state of a search step).

        """
        ids = base.ids[: base.root_len] + self.encode(tail)
        best, shared = base, common_prefix(ids, base.ids)
        for other in near:
            common = common_prefix(ids, other.ids)
            if common > shared:
                best, shared = other, common
        start = min(shared, len(ids) - 1)  # feed at least one token to get the last hidden state
        with self._lock:
            cache = self._cache(best.kv, start, 1)
            hidden = self._hidden(self._torch.tensor([ids[start:]]), cache, usage)
        return Prefix(base.root, tail, ids, base.root_len, self._kv_of(cache), hidden[0, -1])

    # -- scoring --------------------------------------------------------------------------------
    def token_logprobs(self, base: Prefix, continuations: Sequence[str], usage: Usage | None = None
                       ) -> list[list[float]]:
        """Log-probabilities of each continuation's tokens after ``base``, in one pass (`tree_logprobs`).

        Returns:
            Per continuation, the log-probabilities of the tokens that ``base`` does not fix: the
            continuation's own, plus the last token of the tail if the continuation re-tokenises it.

        """
        return self.tree_logprobs(base, [(base.tail, continuation) for continuation in continuations], usage)

    def tree_logprobs(self, base: Prefix, items: Sequence[tuple[str, str]], usage: Usage | None = None,
                      max_nodes: int = 1024) -> list[list[float]]:
        """Log-probabilities of continuations of many different tails, in one forward pass.

        The search's enumerated decisions come from many states at once (every state of a reference
        path in a data rollout, every beam in a search round), and each state's text differs. Fed as
        a batch per state, that is two passes per state, each copying the cache for every row. Here
        the token sequences past ``base`` form a prefix tree fed as one row: a tree attention mask
        lets each token see the cached prefix and its own ancestors, at the position it has on its
        own path, so every shared token is computed once and the cache is never copied per row.

        Args:
            base: A cached prefix of the same root; the part of it that the items share is reused.
            items: ``(tail, continuation)`` pairs; each text is ``root + tail + continuation``,
                tokenised whole after the root.
            usage: Where to count the compute.
            max_nodes: Most tree tokens per forward pass; larger trees are split between items.

        Returns:
            Per item, the log-probabilities of the tokens that ``root + tail`` does not fix: the
            continuation's own, plus the last token of the tail if the continuation re-tokenises it.

        """
        root_ids = base.ids[: base.root_len]
        tail_ids = {tail: root_ids + self.encode(tail) for tail, _ in items}
        fulls = [root_ids + self.encode(tail + continuation) for tail, continuation in items]
        starts = [min(common_prefix(full, tail_ids[tail]), len(full) - 1) for full, (tail, _) in zip(
            fulls, items, strict=True)]
        out: list[list[float]] = [[] for _ in items]
        group: list[int] = []
        tokens = 0
        for i, full in enumerate(fulls):
            if group and tokens + len(full) - base.root_len > max_nodes:
                self._tree_pass(base, [(fulls[j], starts[j]) for j in group], out, group, usage)
                group, tokens = [], 0
            group.append(i)
            tokens += len(full) - base.root_len
        if group:
            self._tree_pass(base, [(fulls[j], starts[j]) for j in group], out, group, usage)
        return out

    def _tree_pass(self, base: Prefix, rows: list[tuple[list[int], int]], out: list[list[float]],
                   owners: list[int], usage: Usage | None) -> None:
        """One forward pass of `tree_logprobs`: rows as a prefix tree after the cached part of ``base``."""
        torch = self._torch
        cut = max(min(min(common_prefix(full, base.ids), start) for full, start in rows) - 1, 0)
        children: dict[tuple[int, int], int] = {}
        parents: list[int] = []
        node_tokens: list[int] = []
        depths: list[int] = []
        paths: list[list[int]] = []  # per row, the node of each position from ``cut`` on
        for full, _ in rows:
            parent, path = -1, []
            for token in full[cut:]:
                node = children.get((parent, token))
                if node is None:
                    node = children[(parent, token)] = len(node_tokens)
                    node_tokens.append(token)
                    parents.append(parent)
                    depths.append(0 if parent < 0 else depths[parent] + 1)
                path.append(node)
                parent = node
            paths.append(path)
        n = len(node_tokens)
        allowed = torch.zeros(n, cut + n, dtype=torch.bool)
        allowed[:, :cut] = True
        for node, parent in enumerate(parents):  # parents come before their children
            if parent >= 0:
                allowed[node] = allowed[parent]
            allowed[node, cut + node] = True
        mask = torch.zeros(1, 1, n, cut + n)
        mask.masked_fill_(~allowed[None, None], torch.finfo(mask.dtype).min)
        positions = torch.tensor([[cut + d for d in depths]])
        with self._lock:
            hidden = self._hidden(torch.tensor([node_tokens]), self._cache(base.kv, cut, 1), usage, mask, positions)
        reads: dict[int, int] = {}  # node -> row of the logits below
        wanted: list[list[tuple[int, int]]] = []
        for (full, start), path in zip(rows, paths, strict=True):
            wanted.append([(path[p - 1 - cut], full[p]) for p in range(max(start, cut + 1), len(full))])
            for node, _ in wanted[-1]:
                reads.setdefault(node, len(reads))
        if not reads:
            return
        logprobs = torch.log_softmax(self._logits(hidden[0, torch.tensor(list(reads))]), dim=-1)
        for owner, pairs in zip(owners, wanted, strict=True):
            if pairs:
                rows_idx = torch.tensor([reads[node] for node, _ in pairs])
                out[owner] = logprobs[rows_idx, torch.tensor([t for _, t in pairs])].tolist()

    def next_token_logits(self, base: Prefix, texts: Sequence[str], token_ids: Sequence[int],
                          usage: Usage | None = None) -> torch.Tensor:
        """Logits of ``token_ids`` right after ``base.tail + text`` for each text, in one batch.

        Returns:
            A ``[len(texts), len(token_ids)]`` float tensor.

        """
        torch = self._torch
        root_ids = base.ids[: base.root_len]
        fulls = [root_ids + self.encode(base.tail + text) for text in texts]
        cut = max(min(min(common_prefix(f, base.ids), len(f) - 1) for f in fulls), 0)
        rows = [full[cut:] for full in fulls]
        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
        with self._lock:
            hidden = self._hidden(batch, self._cache(base.kv, cut, len(rows)), usage)
        last = hidden[torch.arange(len(rows)), torch.tensor([len(row) - 1 for row in rows])]
        return self._logits(last)[:, list(token_ids)]

    def value_grammar(self, schema: Mapping[str, Any]) -> ValueGrammar | None:
        """The token grammar of JSON values of ``schema`` (`langchain_toolprm.constrained`).

        ``None`` without llguidance, or for a schema it cannot compile: values are then sampled freely
        and checked afterwards.
        """
        from langchain_toolprm.constrained import ValueGrammars

        if not ValueGrammars.available():
            return None
        with self._lock:
            if self._grammars is None:
                eot = self.tokenizer.convert_tokens_to_ids(self.end_of_turn)
                eos = eot if isinstance(eot, int) and eot in self.stop_ids else min(self.stop_ids)
                vocab = self.model.get_output_embeddings().weight.shape[0]
                self._grammars = ValueGrammars(self.tokenizer, vocab, eos)
        return self._grammars.get(schema)

    def opening_logprob(self, base: Prefix, openings: Sequence[str]) -> float:
        r"""Log-probability that the next token after ``base`` begins one of ``openings``.

        A token counts when its text (leading whitespace aside) starts with an opening or is the start
        of one: ``{"`` and ``{\n`` both open ``{``, and ``<`` may open ``<tool_call>``. Read off the
        cached last hidden state, so it costs one output-head product and no forward pass.
        """
        mask = self._opening_mask_for(openings)
        logprobs = self._torch.log_softmax(self._logits(base.last_hidden[None])[0], -1)
        return float(self._torch.logsumexp(logprobs[: len(mask)][mask], 0)) if bool(mask.any()) else -math.inf

    def _opening_mask_for(self, openings: Sequence[str]) -> torch.Tensor:
        """The cached vocabulary mask of tokens that start one of ``openings``."""
        key = tuple(openings)
        with self._lock:
            mask = self._opening_masks.get(key)
            if mask is None:
                mask = self._opening_masks[key] = self._opening_mask(key)
        return mask

    def _opening_mask(self, openings: tuple[str, ...]) -> torch.Tensor:
        mask = self._torch.zeros(len(self.tokenizer), dtype=self._torch.bool, device=self.device)
        mask[self.opening_token_ids(openings)] = True
        return mask

    # -- sampling -------------------------------------------------------------------------------
    def sample(
        self,
        base: Prefix,
        n: int,
        *,
        temperature: float = 0.8,
        max_new_tokens: int = 64,
        stop: StopFn | None = None,
        usage: Usage | None = None,
        generator: torch.Generator | None = None,
        ban_first: Sequence[str] = (),
    ) -> list[Sample]:
        """Sample ``n`` continuations of ``base`` on one shared cache.

        Args:
            base: The text to continue.
            n: Number of samples (rows).
            temperature: 0 for greedy decoding.
            max_new_tokens: Token limit per sample.
            stop: Decides when a sample's text is finished; the end-of-turn token always stops.
            usage: Where to count the compute.
            generator: Random source, for reproducible searches.
            ban_first: Texts the first token may not start (see `Draw`).

        Returns:
            ``n`` samples, in row order.

        """
        draw = Draw(base, n, max_new_tokens, stop, ban_first=tuple(ban_first))
        return self.sample_many([draw], temperature=temperature, usage=usage, generator=generator)[0]

    def sample_many(
        self,
        draws: Sequence[Draw],
        *,
        temperature: float = 0.8,
        usage: Usage | None = None,
        generator: torch.Generator | None = None,
    ) -> list[list[Sample]]:
        """Sample from several prefixes at once, every row of every draw in one decoding batch.

        On a CPU a decoding step costs about one read of the weights whatever the batch, so the values
        of all beams of a search round (or a rollout's whole answers and its branch values) cost what one
        of them would. Prefixes of different lengths (even of different roots) are left-padded in the
        cache and masked; each row keeps its own positions.

        Args:
            draws: What to sample: a prefix, how many rows, their token limit and stop function.
            temperature: 0 for greedy decoding.
            usage: Where to count the compute.
            generator: Random source, for reproducible searches (for draws without their own).

        Returns:
            Per draw, its samples in row order.

        """
        torch = self._torch
        owners = [d for d, draw in enumerate(draws) for _ in range(draw.n)]
        if not owners:
            return [[] for _ in draws]
        lengths = [len(draws[d].base.ids) for d in owners]
        sources = [draws[d].generator or generator for d in owners]
        grammars = [draws[d].grammar for d in owners]
        matchers = [g.matcher() if g is not None else None for g in grammars]
        if any(m is not None for m in matchers):
            from langchain_toolprm.constrained import forced_token, mask_rows
        longest = max(draws[d].max_new_tokens for d in owners)
        # Tokens a value's grammar forces are not counted against its limit (`constrained.forced_token`):
        # they get room of their own, up to as many again; what the limit leaves open the grammar closes.
        room = 2 * longest if any(m is not None for m in matchers) else longest
        with self._lock:
            cache, mask = self._batch_cache(draws)
            cache = _reserve(cache, room)
            logits = self._logits(torch.stack([draws[d].base.last_hidden for d in owners]))
            tokens: list[list[int]] = [[] for _ in owners]
            logprob = [0.0] * len(owners)
            results: list[Sample | None] = [None] * len(owners)
            slots = list(range(len(owners)))  # the row in each batch slot; finished rows ride along
            blank = [True] * len(owners)  # rows that have written white space only (see `Draw.ban_first`)
            running = list(range(len(slots)))  # the slots whose rows still decode
            chosen_count = [0] * len(owners)  # tokens each row chose (forced ones are free)
            for step in range(room):
                step_logprobs = torch.log_softmax(logits, dim=-1)  # the policy's own, for the sample's logprob
                allowed = logits
                opening = [s for s in running if draws[owners[slots[s]]].ban_first and blank[slots[s]]]
                if opening:  # until a row has written more than white space, it may not open a call
                    allowed = logits.clone()
                    for slot in opening:
                        banned = self._opening_mask_for(draws[owners[slots[slot]]].ban_first)
                        allowed[slot, : len(banned)][banned] = -math.inf
                if any(m is not None for m in matchers):
                    running_set = set(running)
                    allowed = mask_rows(allowed, [matchers[slots[s]] if s in running_set else None
                                                  for s in range(len(slots))])
                chosen = allowed.argmax(dim=-1)
                if temperature > 0:  # draw for running rows only: a row's random stream is its own
                    index = torch.tensor(running)
                    probs = torch.softmax(allowed[index] / temperature, dim=-1)
                    chosen[index] = self._multinomial(probs, [sources[slots[slot]] for slot in running])
                keep: list[int] = []
                for slot in running:
                    row = slots[slot]
                    forced = forced_token(matchers[row]) if matchers[row] is not None else None
                    token = int(chosen[slot]) if forced is None else forced
                    tokens[row].append(token)
                    if blank[row] and draws[owners[row]].ban_first:
                        blank[row] = not self.tokenizer.decode([token]).strip()
                    if matchers[row] is not None:
                        matchers[row].consume_token(token)
                    if forced is None:
                        logprob[row] += float(step_logprobs[slot, token])
                        chosen_count[row] += 1
                    chosen[slot] = token
                    draw = draws[owners[row]]
                    ended = self.ended(tokens[row], draw.stop)
                    if ended is not None:
                        results[row] = Sample(ended[0], tuple(tokens[row]), logprob[row], ended[1])
                    elif chosen_count[row] < draw.max_new_tokens and len(tokens[row]) < room:
                        keep.append(slot)
                if not keep:
                    break
                # Dropping finished rows copies the whole cache: done once a quarter of the batch has
                # finished, not at every finish; until then finished rows decode unread.
                if len(keep) <= 3 * len(slots) // 4:
                    index = torch.tensor(keep)
                    cache.batch_select_indices(index)
                    chosen = chosen[index]
                    mask = mask[index] if mask is not None else None
                    slots = [slots[slot] for slot in keep]
                    keep = list(range(len(slots)))
                running = keep
                positions = None
                if mask is not None:
                    mask = torch.cat([mask, mask.new_ones((len(slots), 1))], dim=1)
                    positions = torch.tensor([[lengths[row] + step] for row in slots])
                logits = self._logits(self._hidden(chosen[:, None], cache, usage, mask, positions)[:, -1])
        for row, grammar in enumerate(grammars):
            if results[row] is None and grammar is not None:  # a value the limit cut: closed by its grammar
                rest = grammar.complete(matchers[row], tokens[row])
                if rest is not None:
                    tokens[row] += rest
                    results[row] = Sample(self.decode(tokens[row]), tuple(tokens[row]), logprob[row], True)
        return self._by_draw(draws, owners, tokens, logprob, results)

    def _multinomial(self, probs: torch.Tensor, sources: list[torch.Generator | None]) -> torch.Tensor:
        """One token per row, the rows of each random source drawn together in row order.

        A source's rows are then drawn exactly as if they were decoded without the others: the same
        stream, consumed in the same order.
        """
        torch = self._torch
        groups: dict[int, list[int]] = {}
        for slot, source in enumerate(sources):
            groups.setdefault(id(source), []).append(slot)
        if len(groups) == 1:
            return torch.multinomial(probs, 1, generator=sources[0]).squeeze(1)
        chosen = torch.empty(len(sources), dtype=torch.long, device=probs.device)
        for slots in groups.values():
            index = torch.tensor(slots, device=probs.device)
            chosen[index] = torch.multinomial(probs[index], 1, generator=sources[slots[0]]).squeeze(1)
        return chosen

    def _batch_cache(self, draws: Sequence[Draw]) -> tuple[Any, torch.Tensor | None]:
        """One cache holding every row's prefix, left-padded to the longest; the mask where they differ."""
        torch = self._torch
        if len({id(d.base) for d in draws}) == 1:
            base = draws[0].base
            return self._cache(base.kv, len(base.ids), sum(d.n for d in draws)), None
        from transformers import DynamicCache

        width = max(len(d.base.ids) for d in draws)
        layers = []
        for layer in range(len(draws[0].base.kv)):
            keys, values = [], []
            for draw in draws:
                k, v = draw.base.kv[layer]
                length = len(draw.base.ids)
                pad = (0, 0, width - length, 0)
                keys.append(torch.nn.functional.pad(k[:, :, :length], pad).expand(draw.n, -1, -1, -1))
                values.append(torch.nn.functional.pad(v[:, :, :length], pad).expand(draw.n, -1, -1, -1))
            layers.append((torch.cat(keys), torch.cat(values)))
        mask = torch.cat([
            torch.cat([torch.zeros(d.n, width - len(d.base.ids), dtype=torch.long),
                       torch.ones(d.n, len(d.base.ids), dtype=torch.long)], dim=1)
            for d in draws
        ])
        return DynamicCache(ddp_cache_data=layers, config=self.model.config), mask

    def _by_draw(self, draws: Sequence[Draw], owners: list[int], tokens: list[list[int]], logprob: list[float],
                 results: list[Sample | None]) -> list[list[Sample]]:
        out: list[list[Sample]] = [[] for _ in draws]
        for row, owner in enumerate(owners):
            result = results[row]
            if result is None:
                result = Sample(self.decode(tokens[row]), tuple(tokens[row]), logprob[row], False)
            out[owner].append(result)
        return out


def logsumexp(values: Sequence[float]) -> float:
    """``log(sum(exp(v)))`` without overflow; ``-inf`` for no values."""
    if not values:
        return -math.inf
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


class PrefixCache:
    """Recently used prefixes of one root, so each search step feeds only the tokens it added.

    Args:
        lm: The model.
        root: The encoded prompt.
        usage: Where to count the compute.
        size: How many tails to keep (a beam search needs about two per beam).

    """

    def __init__(self, lm: CausalLM, root: Prefix, usage: Usage, size: int = 32):
        self.lm = lm
        self.root = root
        self.usage = usage
        self.size = size
        self._entries: dict[str, Prefix] = {"": root}

    def get(self, tail: str) -> Prefix:
        """The prefix for ``root + tail``, extended from the closest cached one."""
        found = self._entries.pop(tail, None)
        if found is None:
            near = [p for t, p in self._entries.items() if t and tail.startswith(t)]
            near.sort(key=lambda p: len(p.tail), reverse=True)
            found = self.lm.extend(self.root, tail, self.usage, near[:2])
        self._entries[tail] = found  # most recent last
        while len(self._entries) > self.size:
            oldest = next(t for t in self._entries if t)
            del self._entries[oldest]
        return found
