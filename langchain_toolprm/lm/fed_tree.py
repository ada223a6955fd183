"""What a tree pass computed, kept so that the prefixes it holds are read from it, not fed again.

A search round scores every beam's enumerated candidates in one tree pass (`ScoringLM.tree_logprobs`).
The candidates the round keeps become the next round's states, and their texts are exactly rows of
that tree: without this record, the next round would feed them again to extend its cache. The
tree's keys and values (and final hidden states) are kept for one round; a prefix whose tokens the
tree holds is assembled from them (the base's cached tokens, then the tree's nodes along its path),
and one the tree holds only partly starts from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from langchain_toolprm.lm.judged_tree import trie_path
from langchain_toolprm.lm.types import Prefix, common_prefix

if TYPE_CHECKING:
    import torch

__all__ = ["FedTree"]


@dataclass
class FedTree:
    """One tree pass: its base, where its tokens start, its trie, and their keys, values and hidden states.

    Attributes:
        base: The cached prefix the tree was fed after.
        cut: How many of ``base``'s tokens the tree read; its nodes sit at positions from there.
        children: ``(parent node, token) -> node`` (parent ``-1``: the tree's first tokens).
        kv: Per layer, the nodes' ``(keys, values)``, ``[1, heads, nodes, dim]``, in node order.
        hidden: The nodes' final hidden states, ``[nodes, dim]``.

    """

    base: Prefix
    cut: int
    children: dict[tuple[int, int], int]
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(repr=False)
    hidden: torch.Tensor = field(repr=False)

    def path(self, ids: Sequence[int]) -> list[int]:
        """The tree's nodes along ``ids`` past ``cut``, as far as the tree holds them."""
        if len(ids) <= self.cut or common_prefix(list(ids), self.base.ids) < self.cut:
            return []
        return trie_path(self.children, ids[self.cut:])

    def prefix(self, ids: Sequence[int], nodes: Sequence[int], tail: str) -> Prefix:
        """The prefix of ``ids`` up to the last of ``nodes`` (a `path`), from the base's cache and the tree's."""
        import torch

        index = torch.tensor(list(nodes))
        kv = [(torch.cat([k[:, :, : self.cut], tk.index_select(2, index)], dim=2),
               torch.cat([v[:, :, : self.cut], tv.index_select(2, index)], dim=2))
              for (k, v), (tk, tv) in zip(self.base.kv, self.kv, strict=True)]
        return Prefix(self.base.root, tail, list(ids[: self.cut + len(nodes)]), self.base.root_len, kv,
                      self.hidden[nodes[-1]])
