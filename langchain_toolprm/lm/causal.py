"""`CausalLM`: the scoring model with batched sampling (the decode loop and its reserved caches)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


from langchain_toolprm.lm.judging import JudgingLM
from langchain_toolprm.lm.types import Draw, Prefix, Sample, StopFn, Usage


def _reserve(cache: Any, room: int) -> Any:
    """Give every plain layer of a `DynamicCache` room for ``room`` more tokens, written in place.

    A `DynamicLayer` concatenates at every decoding step: a copy of every row's whole cache per token,
    which on a CPU is most of a many-row decode (rows x prompt length x layers, each step). Decoding
    knows its token limit up front, so the room is reserved once; feeding more than ``room`` raises.
    """
    from transformers.cache_utils import CacheLayerMixin, DynamicLayer

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

        def _view(self) -> tuple[torch.Tensor, torch.Tensor]:
            keys, values = self._keys[:, :, : self._length], self._values[:, :, : self._length]
            self.keys, self.values = keys, values
            return keys, values

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
                   ) -> tuple[torch.Tensor, torch.Tensor]:
            end = self._length + key_states.shape[-2]
            if end > self._keys.shape[-2]:
                raise RuntimeError(f"Cache room for {room} tokens exceeded.")
            self._keys[:, :, self._length : end] = key_states
            self._values[:, :, self._length : end] = value_states
            self._length = end
            return self._view()

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self._view()

    def reserved(layer: CacheLayerMixin) -> CacheLayerMixin:
        # A layer holds its tensors once initialised (`DynamicLayer.lazy_initialization` sets both).
        if type(layer) is DynamicLayer and layer.keys is not None and layer.values is not None:
            return ReservedLayer(layer.keys, layer.values)
        return layer

    cache.layers = [reserved(layer) for layer in cache.layers]
    return cache


class CausalLM(JudgingLM):
    """A transformers causal LM and its tokenizer, with batched scoring and sampling on cached prefixes.

    Args:
        model: A causal LM in eval mode.
        tokenizer: Its tokenizer.
        name: A name for logs and metadata.

    """

    @classmethod
    def from_pretrained(cls, ref: str, **kwargs: Any) -> CausalLM:
        """Load through `langchain_toolprm.models.load_causal_lm` (hub id, folder, GGUF, packaged name)."""
        from langchain_toolprm.models import load_causal_lm

        model, tokenizer = load_causal_lm(ref, **kwargs)
        return cls(model, tokenizer, name=str(ref))

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
            controls = torch.tensor([i for i in self.control_ids if i < logits.shape[-1]], dtype=torch.long)
            stops = list(self.stop_ids)
            for step in range(room):
                step_logprobs = torch.log_softmax(logits, dim=-1)  # the policy's own, for the sample's logprob
                allowed = logits
                answers = [s for s in running if draws[owners[slots[s]]].ban_first]
                if answers:  # a text answer writes no chat-control token; until it has written more than
                    allowed = logits.clone()  # white space, it may not open a call, nor end
                    if len(controls):
                        allowed[torch.tensor(answers)[:, None], controls[None, :]] = -math.inf
                    for slot in (s for s in answers if blank[slots[s]]):
                        banned = self._opening_mask_for(draws[owners[slots[slot]]].ban_first, anywhere=True)
                        allowed[slot, : len(banned)][banned] = -math.inf
                        allowed[slot, stops] = -math.inf
                if any(m is not None for m in matchers):
                    running_set = set(running)
                    allowed = mask_rows(allowed, [matchers[slots[s]] if s in running_set else None
                                                  for s in range(len(slots))])
                chosen = allowed.argmax(dim=-1)
                drawn = [s for s in running if not draws[owners[slots[s]]].greedy] if temperature > 0 else []
                if drawn:  # draw for running sampled rows only: a row's random stream is its own
                    index = torch.tensor(drawn)
                    probs = torch.softmax(allowed[index] / temperature, dim=-1)
                    chosen[index] = self._multinomial(probs, [sources[slots[slot]] for slot in drawn])
                keep: list[int] = []
                for slot in running:
                    row = slots[slot]
                    matcher = matchers[row]
                    forced = forced_token(matcher) if matcher is not None else None
                    token = int(chosen[slot]) if forced is None else forced
                    tokens[row].append(token)
                    if blank[row] and draws[owners[row]].ban_first:
                        blank[row] = not self.decode([token]).strip()
                    if matcher is not None:
                        matcher.consume_token(token)
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
        for row, (grammar, matcher) in enumerate(zip(grammars, matchers, strict=True)):
            if results[row] is None and grammar is not None and matcher is not None:  # cut by the limit:
                rest = grammar.complete(matcher, tokens[row])  # closed by its grammar
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
