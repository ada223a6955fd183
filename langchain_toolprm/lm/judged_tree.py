"""Token sequences as one prefix tree, each with a short suffix branch off its last token.

A PRM that reads the policy's own context (`langchain_toolprm.prm.context_format`) scores many
candidate texts that share a prefix, each followed by the same kind of judgement suffix. The texts
run on the model's plain weights and the suffixes with the PRM's adapter on: the texts as a prefix
tree (every shared token once), the suffixes as branches off their text's last token. Inference feeds
both in one forward pass, the adapter added at the suffix rows only
(`langchain_toolprm.prm.shared.LoraSwitch.active`); training feeds them as two passes, so that the
tree needs no gradient. Training builds the same tree over a query's context and every step of its
trajectories (`langchain_toolprm.train.context_packing`), so the model is trained on exactly the
attention pattern it is scored with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["JudgedTree", "additive_mask", "trie_path"]


@dataclass
class JudgedTree:
    """Rows of token ids after a shared prefix, as a tree, and one suffix per row.

    Attributes:
        tokens: The tree's tokens, parents before children.
        parents: Per tree token, its parent (``-1``: the shared prefix).
        depths: Per tree token, how many tree tokens precede it on its path.
        ends: Per row, the tree token it ends at (``-1``: the row adds nothing to the prefix).
        suffixes: Per row, the suffix's token ids.
        children: ``(parent, token) -> tree token``: the trie that shares the rows' tokens.

    """

    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    suffixes: list[list[int]] = field(default_factory=list)
    children: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)
    _on_path: torch.Tensor | None = field(default=None, repr=False)  # `_ancestry`, until a row adds a token

    @classmethod
    def build(cls, rows: Sequence[Sequence[int]], suffixes: Sequence[Sequence[int]]) -> JudgedTree:
        """The tree of ``rows`` (each a list of token ids after the prefix), every shared token once."""
        tree = cls()
        for row, suffix in zip(rows, suffixes, strict=True):
            tree.add(row, suffix)
        return tree

    def new_tokens(self, row: Sequence[int]) -> int:
        """How many tokens `add` would put in the tree for ``row`` (its suffix aside)."""
        return len(row) - len(trie_path(self.children, row))

    def add(self, row: Sequence[int], suffix: Sequence[int]) -> int:
        """Add a row and its suffix; returns the row's index."""
        node = -1
        for token in row:
            child = self.children.get((node, token))
            if child is None:
                child = self.children[(node, token)] = len(self.tokens)
                self.tokens.append(token)
                self.parents.append(node)
                self.depths.append(0 if node < 0 else self.depths[node] + 1)
            node = child
        self.ends.append(node)
        self.suffixes.append(list(suffix))
        return len(self.ends) - 1

    def _ancestry(self) -> torch.Tensor:
        """``[n, n]``: whether tree token j is on the path to tree token i (itself included)."""
        import torch

        n = len(self.tokens)
        if self._on_path is not None and len(self._on_path) == n:  # both passes read it: built once
            return self._on_path
        on_path = torch.zeros(n, n, dtype=torch.bool)
        for node, parent in enumerate(self.parents):
            if parent >= 0:
                on_path[node] = on_path[parent]
            on_path[node, node] = True
        self._on_path = on_path
        return on_path

    def tree_inputs(self, prefix_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids [1, n], additive mask [1, 1, n, prefix_len + n], positions [1, n])`` of the tree alone.

        Training feeds the tree and the suffixes as two passes (`suffix_inputs`), the tree without a
        gradient; inference feeds both at once (`one_pass_inputs`). The attention is the same. The
        policy's enumeration pass (`ScoringLM.tree_logprobs`) is a tree without suffixes.
        """
        import torch

        allowed = torch.cat([torch.ones(len(self.tokens), prefix_len, dtype=torch.bool), self._ancestry()], dim=1)
        return torch.tensor([self.tokens]), additive_mask(allowed), torch.tensor([self._tree_positions(prefix_len)])

    def suffix_inputs(self, prefix_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """``(ids, mask, positions, last)`` of the suffixes, after the prefix and the whole tree in the cache.

        ``last`` holds, per row, the index (in the pass's tokens) of its suffix's last token, where its
        label is read.
        """
        import torch

        ids, allowed, positions, last = self._suffix_rows(prefix_len)
        return torch.tensor([ids]), additive_mask(allowed), torch.tensor([positions]), last

    def one_pass_inputs(self, prefix_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """``(ids, mask, positions, last)``: the tree's tokens, then every suffix, as one pass after the prefix.

        The tree's rows see the prefix and their ancestors, a suffix's rows its text's path and its own
        earlier tokens, exactly as in the two passes; ``last`` indexes the pass's tokens (tree first),
        and the suffix rows are the pass's last ``len(ids) - len(self.tokens)``.
        """
        import torch

        ids, own, positions, last = self.one_pass_rows(prefix_len)
        allowed = torch.cat([torch.ones(len(ids), prefix_len, dtype=torch.bool), own], dim=1)
        return torch.tensor([ids]), additive_mask(allowed), torch.tensor([positions]), last

    def one_pass_rows(self, prefix_len: int) -> tuple[list[int], torch.Tensor, list[int], list[int]]:
        """`one_pass_inputs` without the prefix's columns: ``(ids, [r, r] boolean mask, positions, last)``.

        Several trees, each after its own cached prefix, are fed in one pass by placing these blocks
        side by side (`JudgingLM.judged_logits`). A row with an empty suffix is read at its text's last
        token (a PRM whose label follows the step text directly).

        Raises:
            ValueError: A row has neither a token past the prefix nor a suffix: nothing of it is fed.

        """
        import torch

        n = len(self.tokens)
        suffix_ids, suffix_allowed, suffix_positions, suffix_last = self._suffix_rows(prefix_len)
        tree_allowed = torch.zeros(n, n + len(suffix_ids), dtype=torch.bool)
        tree_allowed[:, :n] = self._ancestry()
        own = torch.cat([tree_allowed, suffix_allowed[:, prefix_len:]])
        last = []
        for row, (end, suffix, at) in enumerate(zip(self.ends, self.suffixes, suffix_last, strict=True)):
            if not suffix and end < 0:
                raise ValueError(f"Row {row} adds no token to the prefix and has no suffix: there is nothing to read.")
            last.append(n + at if suffix else end)
        return self.tokens + suffix_ids, own, self._tree_positions(prefix_len) + suffix_positions, last

    def _tree_positions(self, prefix_len: int) -> list[int]:
        return [prefix_len + d for d in self.depths]

    def _suffix_rows(self, prefix_len: int) -> tuple[list[int], torch.Tensor, list[int], list[int]]:
        """Suffix ids, their boolean ``[total, prefix_len + n + total]`` mask, positions and each row's last index."""
        import torch

        n = len(self.tokens)
        ancestry = self._ancestry()
        total = sum(len(s) for s in self.suffixes)
        allowed = torch.zeros(total, prefix_len + n + total, dtype=torch.bool)
        allowed[:, :prefix_len] = True
        ids: list[int] = []
        positions: list[int] = []
        last: list[int] = []
        for end, suffix in zip(self.ends, self.suffixes, strict=True):
            start = len(ids)
            base = prefix_len + (self.depths[end] + 1 if end >= 0 else 0)
            for j, token in enumerate(suffix):
                row = start + j
                if end >= 0:
                    allowed[row, prefix_len: prefix_len + n] = ancestry[end]
                allowed[row, prefix_len + n + start: prefix_len + n + row + 1] = True
                ids.append(token)
                positions.append(base + j)
            last.append(len(ids) - 1)
        return ids, allowed, positions, last


def trie_path(children: dict[tuple[int, int], int], row: Sequence[int]) -> list[int]:
    """The trie's nodes along ``row`` from its root (parent ``-1``), as far as the trie holds it."""
    nodes, node = [], -1
    for token in row:
        found = children.get((node, token))
        if found is None:
            break
        nodes.append(node := found)
    return nodes


def additive_mask(allowed: torch.Tensor) -> torch.Tensor:
    """A boolean ``[q, k]`` mask as the additive ``[1, 1, q, k]`` float mask the models take."""
    import torch

    mask = torch.zeros(allowed.shape)
    mask.masked_fill_(~allowed, torch.finfo(mask.dtype).min)
    return mask[None, None]
