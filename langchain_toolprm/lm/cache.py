"""Recently used prefixes of one root, so each search step feeds only what it added."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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
        return self.get_many([tail])[0]

    def get_many(self, tails: Sequence[str]) -> list[Prefix]:
        """The prefixes for ``root + tail`` of each tail; those not cached are fed together, in one pass."""
        found = {tail: self._entries.pop(tail) for tail in tails if tail in self._entries}
        missing = [tail for tail in dict.fromkeys(tails) if tail not in found]
        if missing:
            requests = []
            for tail in missing:
                near = [p for t, p in self._entries.items() if t and tail.startswith(t)]
                near.sort(key=lambda p: len(p.tail), reverse=True)
                requests.append((self.root, tail, near[:2]))
            found.update(zip(missing, self.lm.extend_many(requests, self.usage), strict=True))
        for tail in dict.fromkeys(tails):
            self._entries[tail] = found[tail]  # most recent last
        while len(self._entries) > self.size:
            oldest = next(t for t in self._entries if t)
            del self._entries[oldest]
        return [found[tail] for tail in tails]
