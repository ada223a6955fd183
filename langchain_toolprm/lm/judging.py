"""A PRM's judgements on a transformers causal LM: label logits after many candidates of many beams, in one pass.

A PRM judges every beam's candidates of a search round. Each beam's state has a cached prefix; they
share the prompt and part of the call text. Here those prefixes are stacked in one cache
(`langchain_toolprm.lm.stacked`), each beam's candidate texts form a prefix tree after its own prefix
and each text's judgement suffix a branch off it (`JudgedTree`), and one forward pass reads them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from langchain_toolprm.lm.fed_tree import FedTree
from langchain_toolprm.lm.judged_tree import JudgedTree, additive_mask
from langchain_toolprm.lm.scoring import ScoringLM
from langchain_toolprm.lm.stacked import blocks_after, stack_prefixes
from langchain_toolprm.lm.types import Prefix, Usage, common_prefix

if TYPE_CHECKING:
    import torch

__all__ = ["JudgingLM"]


class JudgingLM(ScoringLM):
    """`ScoringLM` with the PRM's judgement pass (`judged_logits`); `CausalLM` samples too."""

    def judged_logits(self, groups: Sequence[tuple[Prefix, Sequence[str], Sequence[Sequence[int]]]],
                      token_ids: Sequence[int], adapter: Callable[[torch.Tensor | None], AbstractContextManager[Any]],
                      usage: Usage | None = None, *, full_head: bool = False,
                      keep: Callable[[FedTree], None] | None = None) -> list[torch.Tensor]:
        """Logits of ``token_ids`` after each ``base.tail + text`` and its suffix: texts plain, suffixes adapted.

        A PRM judging the candidates of every beam of a search round does it in one forward pass. Each
        group (a beam's state: its cached prefix, candidate texts and their judgement suffixes) is a
        `JudgedTree`: the texts' tokens past what its prefix holds, then every suffix as a branch off
        its text. The groups' cached prefixes share the prompt; their cache is assembled as the shared
        part once and then each prefix's own tokens, so each group reads exactly its own prefix, at the
        positions it has there, and nothing already cached is fed again. ``adapter(rows)`` adds a PRM's
        LoRA at the suffix rows only (`langchain_toolprm.prm.shared.LoraSwitch.active`).

        Args:
            groups: ``(base, texts, suffixes)``: a cached prefix of the root (the policy's prompt and call
                text so far), continuations of its tail, and per text the token ids read after it (none:
                the logits are read at the text's last token).
            token_ids: The tokens whose logits are read after each suffix (a PRM's labels).
            adapter: Enters the adapted model for the positions it is given (an index tensor; ``None``: all).
            usage: Where to count the compute.
            full_head: Run the whole output head inside ``adapter(None)`` (for an adapter that changes it).
            keep: Given each group's texts as a `FedTree` (they ran on the model's own weights), so that a
                prefix they hold (the next round's state) need not be fed again.

        Returns:
            Per group, a ``[len(texts), len(token_ids)]`` float tensor.

        """
        torch = self._torch
        trees, cuts = [], []
        for base, texts, suffixes in groups:
            root_ids = base.ids[: base.root_len]
            fulls = [root_ids + self.encode(base.tail + text) for text in texts]
            # Every row feeds at least its last token, so a row without a suffix is read there.
            cuts.append(min(min(common_prefix(full, base.ids), len(full) - 1) for full in fulls))
            trees.append(JudgedTree.build([full[cuts[-1]:] for full in fulls], suffixes))
        kv, spans = stack_prefixes([(base, cut) for (base, _, _), cut in zip(groups, cuts, strict=True)])
        cached = spans[-1][1]
        blocks = [tree.one_pass_rows(cut) for tree, cut in zip(trees, cuts, strict=True)]
        allowed = blocks_after([own for _, own, _, _ in blocks], spans)
        ids: list[int] = []
        positions: list[int] = []
        last: list[list[int]] = []
        adapted: list[int] = []
        for (block_ids, _, block_positions, block_last), tree in zip(blocks, trees, strict=True):
            start = len(ids)
            adapted += range(start + len(tree.tokens), start + len(block_ids))
            last.append([start + i for i in block_last])
            ids += block_ids
            positions += block_positions
        mask = additive_mask(allowed)
        with self._lock:
            cache = self._cache(kv, cached, 1)
            with adapter(torch.tensor(adapted)):
                hidden = self._hidden(torch.tensor([ids]), cache, usage, mask, torch.tensor([positions]))[0]
            if keep is not None:
                self._keep_texts(groups, cuts, trees, [len(block[0]) for block in blocks], cached, cache, hidden, keep)
            reads = hidden[torch.tensor([i for group in last for i in group])]
            if full_head:
                with adapter(None):
                    logits = self._logits(reads)[:, list(token_ids)]
            else:
                logits = self._token_logits(reads, token_ids)
        out, start = [], 0
        for group in last:
            out.append(logits[start: start + len(group)])
            start += len(group)
        return out

    def _keep_texts(self, groups: Sequence[tuple[Prefix, Sequence[str], Sequence[Sequence[int]]]],
                    cuts: Sequence[int], trees: Sequence[JudgedTree], sizes: Sequence[int], cached: int, cache: Any,
                    hidden: torch.Tensor, keep: Callable[[FedTree], None]) -> None:
        """Each group's text tokens of a `judged_logits` pass as a `FedTree` (its suffixes left out)."""
        fed, start = self._kv_of(cache), cached
        for (base, texts, _), cut, tree, size in zip(groups, cuts, trees, sizes, strict=True):
            n = len(tree.tokens)
            if any(texts):  # a group of empty texts re-read its prefix's last token: nothing new to keep
                kv = [(k[:, :, start: start + n], v[:, :, start: start + n]) for k, v in fed]
                keep(FedTree(base, cut, tree.children, kv, hidden[start - cached: start - cached + n]))
            start += size
