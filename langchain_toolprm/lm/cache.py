"""Recently used prefixes of one root, so each search step feeds only what it added; recent roots of one model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_toolprm.lm.fed_tree import FedTree
from langchain_toolprm.lm.types import Prefix, Usage, common_prefix

if TYPE_CHECKING:
    from langchain_toolprm.lm.causal import CausalLM


_KEPT_TREES = 8
"""Tree passes remembered per cache: a round's, for beams up to four, and the round's before."""
_KEPT_ROOTS = 4
"""Prompts remembered per model: a search's own prompt and its side readers' (`search.reading`), with room
for a second conversation served at once."""


class RootMemory:
    """The prompts a model encoded last, so a new prompt feeds only the tokens it shares with none of them.

    A search opens sessions on prompts it has seen before: every search's side readers
    (`search.reading`) open on the same short prompt, and an agent's next turn is its last prompt with a
    call and its result added. Keys and values depend only on the tokens before them, so a shared run
    of token ids is reused as it is.

    Args:
        size: How many prompts to keep (each holds its keys and values: about 24 KB a token for the packaged 0.5B
            in float32).

    """

    def __init__(self, size: int = _KEPT_ROOTS):
        self.size = size
        self._roots: list[Prefix] = []

    def closest(self, ids: Sequence[int]) -> tuple[Prefix | None, int]:
        """The remembered prompt that shares the most leading tokens with ``ids``, and how many it shares."""
        best, shared = None, 0
        for root in self._roots:
            common = common_prefix(ids, root.ids)
            if common > shared:
                best, shared = root, common
        return best, shared

    def clear(self) -> None:
        """Forget every prompt: the next one is encoded whole, as a fresh process would."""
        self._roots = []

    def keep(self, root: Prefix) -> None:
        """Remember a prompt, or one used again, as the most recent; the least recently used goes beyond ``size``."""
        kept = [r for r in self._roots if r.ids != root.ids] + [root]
        self._roots = kept[-self.size:] if self.size > 0 else []


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
        self._fed: list[FedTree] = []

    def remember(self, tree: FedTree) -> None:
        """Keep a tree pass's keys and values: the prefixes it holds are read from it (the latest few trees).

        A round leaves one tree from the policy's enumeration and one per beam from a PRM's judgement.
        """
        self._fed = [*self._fed[-(_KEPT_TREES - 1):], tree]

    def get(self, tail: str) -> Prefix:
        """The prefix for ``root + tail``, extended from the closest cached one."""
        return self.get_many([tail])[0]

    def get_many(self, tails: Sequence[str]) -> list[Prefix]:
        """The prefixes for ``root + tail`` of each tail; those not cached are fed together, in one pass."""
        found = {tail: self._entries.pop(tail) for tail in tails if tail in self._entries}
        missing = []
        for tail in dict.fromkeys(tails):
            if tail in found:
                continue
            held, whole = self._held(tail)
            if held is not None and whole:
                found[tail] = held
                continue
            near = [p for t, p in self._entries.items() if t and tail.startswith(t)]
            near.sort(key=lambda p: len(p.tail), reverse=True)
            missing.append((tail, [*([held] if held is not None else []), *near[:2]]))
        if missing:
            requests = [(self.root, tail, near) for tail, near in missing]
            found.update(zip([t for t, _ in missing], self.lm.extend_many(requests, self.usage), strict=True))
        for tail in dict.fromkeys(tails):
            self._entries[tail] = found[tail]  # most recent last
        while len(self._entries) > self.size:
            oldest = next(t for t in self._entries if t)
            del self._entries[oldest]
        return [found[tail] for tail in tails]

    def held(self, tail: str) -> Prefix | None:
        """The prefix for ``root + tail`` if it is cached or a remembered tree pass holds all of it; else ``None``.

        Nothing is fed and nothing is stored: a caller that reads many such prefixes once (a PRM
        judging the candidates the policy's tree pass already read) keeps the cache for the search.
        """
        if tail in self._entries:
            return self._entries[tail]
        held, whole = self._held(tail)
        return held if whole else None

    def _held(self, tail: str) -> tuple[Prefix | None, bool]:
        """The longest prefix of ``root + tail`` a remembered tree pass holds, and whether it is all of it."""
        ids = self.root.ids[: self.root.root_len] + self.lm.encode(tail)
        best: tuple[FedTree, list[int]] | None = None
        for tree in self._fed:
            nodes = tree.path(ids)
            if nodes and (best is None or tree.cut + len(nodes) > best[0].cut + len(best[1])):
                best = (tree, nodes)
        if best is None:
            return None, False
        tree, nodes = best
        end = tree.cut + len(nodes)
        whole = end == len(ids)
        # A partial prefix only seeds an extension; its tail is a label (decoded), never a cache key.
        label = tail if whole else str(self.lm.tokenizer.decode(ids[self.root.root_len: end]))
        return tree.prefix(ids, nodes, label), whole
