"""Precision, recall and F1 of predicted tool calls against reference calls (record-form data).

The metric follows Hammer's evaluation of xLAM-style data (and ToolPRM's ToolAlpaca numbers):

- **API names**: predicted and reference call names are multisets; a true positive is a name in both
  (counted as often as it appears in both).
- **Arguments**: every call contributes ``(function name, parameter, value)`` triples, again as
  multisets. Triples rather than whole calls give partial credit to a call with one wrong value,
  which is what separates a nearly-right small model from a wrong one. Whole-call correctness is
  reported separately as the exact-match rate.
- **Exact match**: the predicted call list equals the reference as a multiset of calls (order-free,
  as parallel calls have no order). An empty prediction for an empty reference is a match, so
  irrelevance records count.

Values compare as canonical JSON: dict key order is ignored, tuples equal lists and ``2.0`` equals
``2`` (JSON does not tell them apart), but strings are compared exactly, unlike BFCL's checker.

Counts are summed over the dataset before dividing (micro-averaging), so a record with many calls
weighs more than a record with one. With nothing predicted and nothing expected, precision and
recall are 1; with nothing predicted but something expected, precision is 0 (and vice versa).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

ToolCall = Mapping[str, Any]
"""A call as ``{"name", "arguments"}`` (``"args"`` as in LangChain's ``ToolCall`` is accepted too)."""


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 with the counts they come from."""

    precision: float
    recall: float
    f1: float
    true_positives: int
    predicted: int
    reference: int

    @classmethod
    def from_counts(cls, true_positives: int, predicted: int, reference: int) -> PRF:
        """Compute the ratios, treating "nothing to find and nothing claimed" as perfect."""
        precision = true_positives / predicted if predicted else float(reference == 0)
        recall = true_positives / reference if reference else float(predicted == 0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls(precision, recall, f1, true_positives, predicted, reference)


@dataclass(frozen=True)
class CallCounts:
    """Match counts of one record (or, summed, of a dataset)."""

    name_true_positives: int = 0
    name_predicted: int = 0
    name_reference: int = 0
    argument_true_positives: int = 0
    argument_predicted: int = 0
    argument_reference: int = 0
    exact_matches: int = 0
    records: int = 0

    def __add__(self, other: CallCounts) -> CallCounts:
        return CallCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class CallMetrics:
    """Dataset-level scores.

    Attributes:
        api: P/R/F1 over function names.
        arguments: P/R/F1 over ``(name, parameter, value)`` triples.
        exact_match: Share of records whose predicted calls equal the reference as a multiset.
        records: How many records were scored.
        counts: The summed counts, to merge scores of several runs without losing precision.

    """

    api: PRF
    arguments: PRF
    exact_match: float
    records: int
    counts: CallCounts

    @classmethod
    def from_counts(cls, counts: CallCounts) -> CallMetrics:
        """Turn summed counts into scores."""
        return cls(
            api=PRF.from_counts(counts.name_true_positives, counts.name_predicted, counts.name_reference),
            arguments=PRF.from_counts(
                counts.argument_true_positives, counts.argument_predicted, counts.argument_reference
            ),
            exact_match=counts.exact_matches / counts.records if counts.records else 0.0,
            records=counts.records,
            counts=counts,
        )


def _plain(value: Any) -> Any:
    """Map a value to the JSON form it stands for: tuples as lists, integral floats as ints."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def canonical_value(value: Any) -> str:
    """Return a canonical JSON text of a value, so equal values compare equal as strings."""
    return json.dumps(_plain(value), sort_keys=True, ensure_ascii=False)


def _name_and_arguments(call: ToolCall) -> tuple[str, Mapping[str, Any]]:
    arguments = call.get("arguments", call.get("args")) or {}
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    return call["name"], arguments


def _argument_triples(calls: Sequence[ToolCall]) -> Counter[tuple[str, str, str]]:
    triples: Counter[tuple[str, str, str]] = Counter()
    for call in calls:
        name, arguments = _name_and_arguments(call)
        triples.update((name, param, canonical_value(value)) for param, value in arguments.items())
    return triples


def _call_multiset(calls: Sequence[ToolCall]) -> Counter[str]:
    canonical: Counter[str] = Counter()
    for call in calls:
        name, arguments = _name_and_arguments(call)
        canonical[canonical_value({"name": name, "arguments": arguments})] += 1
    return canonical


def exact_match(pred_calls: Sequence[ToolCall], ref_calls: Sequence[ToolCall]) -> bool:
    """Tell whether two call lists hold the same calls, in any order (values compared canonically)."""
    return _call_multiset(pred_calls) == _call_multiset(ref_calls)


def _overlap(predicted: Counter[Any], reference: Counter[Any]) -> int:
    return sum((predicted & reference).values())


def call_counts(pred_calls: Sequence[ToolCall], ref_calls: Sequence[ToolCall]) -> CallCounts:
    """Count name and argument matches of one record's predicted calls against its reference calls."""
    predicted_names = Counter(_name_and_arguments(call)[0] for call in pred_calls)
    reference_names = Counter(_name_and_arguments(call)[0] for call in ref_calls)
    predicted_triples, reference_triples = _argument_triples(pred_calls), _argument_triples(ref_calls)
    return CallCounts(
        name_true_positives=_overlap(predicted_names, reference_names),
        name_predicted=sum(predicted_names.values()),
        name_reference=sum(reference_names.values()),
        argument_true_positives=_overlap(predicted_triples, reference_triples),
        argument_predicted=sum(predicted_triples.values()),
        argument_reference=sum(reference_triples.values()),
        exact_matches=int(exact_match(pred_calls, ref_calls)),
        records=1,
    )


def score_calls(predictions: Iterable[Sequence[ToolCall]], references: Iterable[Sequence[ToolCall]]) -> CallMetrics:
    """Micro-average name and argument P/R/F1, and the exact-match rate, over a dataset.

    Args:
        predictions: Each record's predicted calls (``[]`` when the model called nothing).
        references: Each record's reference calls, in the same order.

    Returns:
        The dataset scores.

    Raises:
        ValueError: If the two sequences differ in length, which would silently misalign records.

    """
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    total = CallCounts()
    for predicted, reference in zip(predictions, references, strict=True):
        total += call_counts(predicted, reference)
    return CallMetrics.from_counts(total)
