"""Several cached prefixes of one root in one cache, so one forward pass serves every beam of a round.

A beam search round asks the same model the same kind of question for each beam: extend its state's
text, or judge its candidates. The beams' cached prefixes share the prompt and part of the call text,
then part ways. Stacked in one cache (the shared tokens once, then each prefix's own tokens), they can
be read by one pass whose rows each see the shared tokens and their own prefix's span, at the
positions those tokens have on their own path. Keys are stored with their positions applied, so
tokens of different paths side by side in one cache are still read as on their own path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_toolprm.lm.types import Prefix, common_prefix

if TYPE_CHECKING:
    import torch

__all__ = ["blocks_after", "stack_prefixes"]

KV = list[tuple["torch.Tensor", "torch.Tensor"]]


def stack_prefixes(prefixes: Sequence[tuple[Prefix, int]]) -> tuple[KV, list[tuple[int, int]]]:
    """One cache of the first ``length`` tokens of each ``(prefix, length)``: shared tokens once, then each one's own.

    Returns:
        The stacked keys and values per layer, and per prefix the span of its own tokens in them
        (every prefix also reads the shared tokens, which come before the first span).

    """
    import torch

    first = prefixes[0][0].ids[: prefixes[0][1]]
    shared = min(common_prefix(prefix.ids[:length], first) for prefix, length in prefixes)
    pieces = [(prefixes[0][0], 0, shared)] + [(prefix, shared, length) for prefix, length in prefixes]
    spans, end = [], shared
    for _, start, stop in pieces[1:]:
        spans.append((end, end + stop - start))
        end += stop - start

    def joined(layer: int, part: int) -> torch.Tensor:
        return torch.cat([prefix.kv[layer][part][:, :, a:b] for prefix, a, b in pieces], dim=2)

    return [(joined(layer, 0), joined(layer, 1)) for layer in range(len(prefixes[0][0].kv))], spans


def blocks_after(owns: Sequence[torch.Tensor], spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """The boolean ``[rows, cached + rows]`` mask of blocks of new tokens, each after its prefix in `stack_prefixes`.

    Args:
        owns: Per prefix, the ``[r, r]`` mask of its new tokens among themselves (causal for a chain,
            a tree's ancestry for candidates).
        spans: The prefixes' spans in the stacked cache.

    """
    import torch

    cached, rows = spans[-1][1], sum(len(own) for own in owns)
    allowed = torch.zeros(rows, cached + rows, dtype=torch.bool)
    allowed[:, : spans[0][0]] = True
    start = 0
    for own, (a, b) in zip(owns, spans, strict=True):
        end = start + len(own)
        allowed[start:end, a:b] = True
        allowed[start:end, cached + start: cached + end] = own
        start = end
    return allowed
