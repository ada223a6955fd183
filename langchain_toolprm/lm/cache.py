"""Recently used prefixes of one root, so each search step feeds only what it added."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:

    pass

from langchain_toolprm.lm.types import Prefix, Usage

if TYPE_CHECKING:
    from langchain_toolprm.lm.causal import CausalLM

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
