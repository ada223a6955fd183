"""Which words of the user's request a call copies: "one more call?" told without reading anything.

The coverage check reads the request back after a list with and without its latest call, and drops the
beam where the call adds less than a margin (`Coverage.drop_on` ``"gain"``). One call's gain is noisy:
on held-out requests right calls often read the request no likelier (docs/benchmarks.md, sessions 24
and 25). A call the request asks for carries a part of it, and small models copy that part (a city,
a number, a name) into the call's values, and the function it picks often names the part too; a call too
many repeats parts already carried, or carries what the request never said (another unit, a guessed
name). So a call that copies no word of the request that the calls before it had not copied adds nothing.

Compared with all earlier calls as one set, that misses a cross product ("the weather and the time in A
and in B"): the fourth call's words were each copied by some earlier call, never together. Compared with
each earlier call (``per_call``), a call adds where no single earlier call copied all of its request
words. Words are matched by their stems (Snowball's English stemmer): a request for "nutritional" facts
is carried by ``recipe_nutrition_info``. Words are counted, not only told apart: in "a = 1, b = 2, c =
1" the call ``(1, 2, 1)`` copies "1" twice, so it adds to an earlier ``(1, -3, 2)`` (BFCL parallel
requests repeat small numbers across their parts); a call copies a word at most as often as the request
says it.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import snowballstemmer

from langchain_toolprm.words import leaves, split_identifier

__all__ = ["adds_words", "call_words", "request_words"]

_WORD = re.compile(r"[^\W\d_]+|\d+")
"""Runs of letters or of digits: "5cm" in a request is the number a call copies as ``5``, and the unit."""
_FUNCTION_WORDS = frozenset({
    "the", "and", "for", "with", "from", "into", "onto", "that", "this", "these", "those", "than", "then", "there",
    "their", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "can", "could", "would",
    "should", "will", "shall", "may", "might", "must", "please", "also", "all", "any", "each", "some", "both", "was",
    "were", "are", "has", "have", "had", "not", "but", "you", "your", "yours", "our", "ours", "its", "let", "get",
    "give", "tell", "show", "find", "want", "need", "like", "about", "just", "only", "very", "more", "most", "much",
    "many", "per", "via"
})
"""English function words and request verbs: copied into a value they say nothing about the request's parts."""


_STEMMERS = threading.local()


def _stem(words: list[str]) -> list[str]:
    """Each word's stem; one stemmer per thread, since a Snowball stemmer keeps its word as state."""
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    return [str(stem) for stem in stemmer.stemWords(words)]


def _words(text: str) -> Counter[str]:
    """The stems of a text's content words (three letters or more, and numbers), lower-cased and counted."""
    found = (w.lower() for w in _WORD.findall(text))
    return Counter(_stem([w for w in found if (len(w) >= 3 or w.isdigit()) and w not in _FUNCTION_WORDS]))


def _scalars(value: Any) -> Iterable[str]:
    """The texts of a value's leaves: strings and numbers (a whole float as an integer), not flags or nulls."""
    for leaf in leaves(value):
        if isinstance(leaf, float) and leaf.is_integer():
            yield str(int(leaf))
        elif isinstance(leaf, str | int | float) and not isinstance(leaf, bool):
            yield str(leaf)


def request_words(request: str) -> Counter[str]:
    """The content words of the user's request (their stems), each with how often the request says it."""
    return _words(request)


def call_words(call: Mapping[str, Any]) -> Counter[str]:
    """The content words of a call, stemmed: its function's name (``get_current_time``, ``getCurrentTime``), its values.

    The name counts because two parts of a request may ask different things of the same values ("the
    final velocity and the distance travelled"): there the second call's new words are in its name.
    Parameter names do not count: they are the schema's words, not the request's.
    """
    name = split_identifier(str(call.get("name") or ""))
    return _words(" ".join([name, *_scalars(call.get("arguments") or {})]))


def adds_words(request: Counter[str], earlier: Sequence[Mapping[str, Any]], call: Mapping[str, Any], *,
               per_call: bool = False) -> bool:
    """Whether ``call`` copies a word of the request more often than any of the ``earlier`` calls copies it.

    With ``per_call``: whether it copies words of the request and no one earlier call copies all of them
    as often.
    """
    copied = call_words(call) & request
    if per_call:
        return bool(copied) and not any(copied <= call_words(c) for c in earlier)
    most: Counter[str] = Counter()
    for made in earlier:
        most |= call_words(made)
    return bool(copied - most)
