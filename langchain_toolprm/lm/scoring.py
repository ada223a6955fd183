"""A transformers causal LM on cached prefixes: encoding, extending and scoring continuations."""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langchain_toolprm.constrained import ValueGrammar, ValueGrammars

from langchain_toolprm.lm.cache import RootMemory
from langchain_toolprm.lm.fed_tree import FedTree
from langchain_toolprm.lm.judged_tree import JudgedTree, additive_mask, trie_path
from langchain_toolprm.lm.stacked import blocks_after, stack_prefixes
from langchain_toolprm.lm.tokenized import TokenizedLM
from langchain_toolprm.lm.types import ContextLengthError, Prefix, Usage, common_prefix


class ScoringLM(TokenizedLM):
    """A transformers causal LM and its tokenizer, with batched scoring on cached prefixes (`CausalLM` samples too).

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
        self._opening_masks: dict[tuple[tuple[str, ...], bool], torch.Tensor] = {}
        # Recent transformers (5.24 here) call the forward's ``past_key_values`` ``cache`` (the old name warns on
        # every call); older releases know only the old name.
        forward = inspect.signature(model.base_model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward else "past_key_values"
        self._grammars: ValueGrammars | None = None
        self.roots = RootMemory()

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
            extra["attention_mask"] = mask.to(self.device)
        if positions is not None:
            extra["position_ids"] = positions.to(self.device)
        with self._torch.inference_mode():
            out = self.model.base_model(input_ids=ids.to(self.device), use_cache=True,
                                        **{self._cache_kwarg: cache}, **extra)
        return out.last_hidden_state

    def _head(self) -> Any:
        """The output head (the module that turns final hidden states into logits)."""
        return self.model.get_output_embeddings()

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        with self._torch.inference_mode():
            return self._head()(hidden).float()

    def _token_logits(self, hidden: torch.Tensor, token_ids: Sequence[int]) -> torch.Tensor:
        """The logits of ``token_ids`` alone, from their rows of the output head.

        A PRM reads two label tokens; the whole head (a 150k vocabulary: a quarter of a 0.5B model's
        weights) would cost it as much again as the forward pass over the candidates.
        """
        torch = self._torch
        head = self._head()
        index = torch.tensor(list(token_ids), device=head.weight.device)
        bias = head.bias.index_select(0, index) if getattr(head, "bias", None) is not None else None
        with torch.inference_mode():
            return torch.nn.functional.linear(hidden, head.weight.index_select(0, index), bias).float()

    def prefix(self, text: str, usage: Usage | None = None) -> Prefix:
        """Encode a root text (a prompt) once for reuse, feeding only what no recent prompt shares (`RootMemory`)."""
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
            known, shared = self.roots.closest(ids)
            if known is not None and shared == len(ids) == len(known.ids):
                self.roots.keep(known)  # used again: the last to be forgotten (a side reader's, every search)
                return Prefix(text, "", ids, len(ids), known.kv, known.last_hidden)
            start = min(shared, len(ids) - 1)  # feed at least one token: its hidden state is kept
            kv = [(k[:, :, :start], v[:, :, :start]) for k, v in known.kv] if known is not None and start else []
            cache = self._cache(kv, start, 1)
            hidden = self._hidden(self._torch.tensor([ids[start:]]), cache, usage)
            root = Prefix(text, "", ids, len(ids), self._kv_of(cache), hidden[0, -1])
            self.roots.keep(root)
        return root

    def extend(self, base: Prefix, tail: str, usage: Usage | None = None, near: Sequence[Prefix] = ()) -> Prefix:
        """The prefix ``base.root + tail``, fed from whichever known prefix shares the most tokens.

        Args:
            base: A prefix with the same root (its own tail is ignored unless it helps).
            tail: The full text after the root.
            usage: Where to count the compute.
            near: Other prefixes of the same root to reuse (the parent state of a search step).

        """
        return self.extend_many([(base, tail, near)], usage)[0]

    def extend_many(self, requests: Sequence[tuple[Prefix, str, Sequence[Prefix]]], usage: Usage | None = None
                    ) -> list[Prefix]:
        """`extend` for several tails of one root in one forward pass (every beam's new state of a round).

        Each tail is fed from its closest known prefix; the prefixes are stacked in one cache
        (`langchain_toolprm.lm.stacked`) and each tail's new tokens see only their own prefix and themselves.

        Args:
            requests: ``(base, tail, near)`` as `extend` takes them.
            usage: Where to count the compute.

        """
        torch = self._torch
        plans = []
        for base, tail, near in requests:
            ids = base.ids[: base.root_len] + self.encode(tail)
            best, shared = base, common_prefix(ids, base.ids)
            for other in near:
                common = common_prefix(ids, other.ids)
                if common > shared:
                    best, shared = other, common
            plans.append((best, min(shared, len(ids) - 1), ids))  # feed at least one token: its hidden state is kept
        if len(plans) == 1:
            (best, start, ids), = plans
            kv, spans = [(k[:, :, :start], v[:, :, :start]) for k, v in best.kv], [(start, start)]
            new, mask, positions = ids[start:], None, None
        else:
            kv, spans = stack_prefixes([(best, start) for best, start, _ in plans])
            new, mask, positions = self._chains(plans, spans)
        cached = spans[-1][1]
        with self._lock:
            cache = self._cache(kv, cached, 1)
            hidden = self._hidden(torch.tensor([new]), cache, usage, mask, positions)
        fed = self._kv_of(cache)
        out, offset = [], cached
        for (base, tail, _), (best, start, ids) in zip(requests, plans, strict=True):
            end = offset + len(ids) - start
            own = [(torch.cat([k[:, :, :start], fk[:, :, offset:end]], dim=2),
                    torch.cat([v[:, :, :start], fv[:, :, offset:end]], dim=2))
                   for (k, v), (fk, fv) in zip(best.kv, fed, strict=True)] if len(plans) > 1 else fed
            out.append(Prefix(base.root, tail, ids, base.root_len, own, hidden[0, end - cached - 1]))
            offset = end
        return out

    @staticmethod
    def _chains(plans: Sequence[tuple[Prefix, int, list[int]]], spans: Sequence[tuple[int, int]]
                ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Ids, additive mask and positions of several token chains, each after its own span of stacked prefixes."""
        import torch

        counts = [len(ids) - start for _, start, ids in plans]
        allowed = blocks_after([torch.ones(n, n, dtype=torch.bool).tril() for n in counts], spans)
        return ([token for _, start, ids in plans for token in ids[start:]], additive_mask(allowed),
                torch.tensor([[p for _, start, ids in plans for p in range(start, len(ids))]]))

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
                      max_nodes: int = 1024, keep: Callable[[FedTree], None] | None = None) -> list[list[float]]:
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
            keep: Given each pass's `FedTree`, so that prefixes it holds need not be fed again.

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
                self._tree_pass(base, [(fulls[j], starts[j]) for j in group], out, group, usage, keep)
                group, tokens = [], 0
            group.append(i)
            tokens += len(full) - base.root_len
        if group:
            self._tree_pass(base, [(fulls[j], starts[j]) for j in group], out, group, usage, keep)
        return out

    def _tree_pass(self, base: Prefix, rows: list[tuple[list[int], int]], out: list[list[float]],
                   owners: list[int], usage: Usage | None, keep: Callable[[FedTree], None] | None) -> None:
        """One forward pass of `tree_logprobs`: rows as a prefix tree after the cached part of ``base``."""
        torch = self._torch
        cut = max(min(min(common_prefix(full, base.ids), start) for full, start in rows) - 1, 0)
        tree = JudgedTree.build([full[cut:] for full, _ in rows], [[] for _ in rows])
        node_tokens, mask, positions = tree.tree_inputs(cut)
        paths = [trie_path(tree.children, full[cut:]) for full, _ in rows]  # per row, its node at each position
        with self._lock:
            cache = self._cache(base.kv, cut, 1)
            hidden = self._hidden(node_tokens, cache, usage, mask, positions)
        if keep is not None:
            fed = [(k[:, :, cut:], v[:, :, cut:]) for k, v in self._kv_of(cache)]
            keep(FedTree(base, cut, tree.children, fed, hidden[0]))
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

    def _opening_mask_for(self, openings: Sequence[str], *, anywhere: bool = False) -> torch.Tensor:
        """The cached vocabulary mask of tokens that start one of ``openings`` (see `opening_token_ids`)."""
        key = (tuple(openings), anywhere)
        with self._lock:
            mask = self._opening_masks.get(key)
            if mask is None:
                mask = self._opening_masks[key] = self._opening_mask(*key)
        return mask

    def _opening_mask(self, openings: tuple[str, ...], anywhere: bool) -> torch.Tensor:
        mask = self._torch.zeros(len(self.tokenizer), dtype=self._torch.bool, device=self.device)
        mask[self.opening_token_ids(openings, anywhere=anywhere)] = True
        return mask
