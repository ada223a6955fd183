"""Call-level P/R/F1 and exact match for record-form data."""

from __future__ import annotations

import pytest

from langchain_toolprm.evaluation import PRF, CallCounts, call_counts, canonical_value, exact_match, score_calls


def call(name: str, **arguments: object) -> dict[str, object]:
    return {"name": name, "arguments": arguments}


def test_exact_match_is_order_free_and_canonical() -> None:
    reference = [call("a", x=1, y={"k": [1, 2]}), call("b", s="t")]
    assert exact_match([call("b", s="t"), call("a", y={"k": (1, 2.0)}, x=1.0)], reference)
    assert not exact_match([call("a", x=1, y={"k": [2, 1]}), call("b", s="t")], reference)
    assert not exact_match([call("b", s="T"), call("a", x=1, y={"k": [1, 2]})], reference)
    assert not exact_match([*reference, call("b", s="t")], reference)
    assert exact_match([], [])


def test_exact_match_counts_duplicates() -> None:
    assert not exact_match([call("a", x=1), call("a", x=1)], [call("a", x=1), call("a", x=2)])


def test_canonical_value_keeps_bool_apart_from_int() -> None:
    assert canonical_value(True) != canonical_value(1)
    assert canonical_value(2.0) == canonical_value(2)
    assert canonical_value(2.5) != canonical_value(2)


def test_call_counts_use_multisets() -> None:
    predicted = [call("a", x=1, y=2), call("a", x=1, y=3), call("c")]
    reference = [call("a", x=1, y=2), call("a", x=5, y=3)]
    assert call_counts(predicted, reference) == CallCounts(
        name_true_positives=2,
        name_predicted=3,
        name_reference=2,
        argument_true_positives=3,  # ("a","x",1) once (reference has it once), ("a","y",2), ("a","y",3)
        argument_predicted=4,
        argument_reference=4,
        exact_matches=0,
        records=1,
    )


def test_arguments_as_json_text_and_langchain_args() -> None:
    predicted = [{"name": "a", "args": {"x": 1}}]
    reference = [{"name": "a", "arguments": '{"x": 1}'}]
    assert exact_match(predicted, reference)
    assert call_counts(predicted, reference).argument_true_positives == 1


def test_score_calls_micro_averages() -> None:
    metrics = score_calls(
        [[call("a", x=1), call("b", y=2)], [], [call("c", z=1)]],
        [[call("a", x=1), call("b", y=3)], [], [call("d", z=1)]],
    )
    assert metrics.records == 3
    assert metrics.exact_match == pytest.approx(1 / 3)
    assert (metrics.api.true_positives, metrics.api.predicted, metrics.api.reference) == (2, 3, 3)
    assert metrics.api.precision == pytest.approx(2 / 3)
    assert metrics.api.f1 == pytest.approx(2 / 3)
    assert metrics.arguments.precision == pytest.approx(1 / 3)
    assert metrics.arguments.recall == pytest.approx(1 / 3)


def test_prf_edge_cases() -> None:
    assert PRF.from_counts(0, 0, 0) == PRF(1.0, 1.0, 1.0, 0, 0, 0)
    assert PRF.from_counts(0, 0, 2) == PRF(0.0, 0.0, 0.0, 0, 0, 2)
    assert PRF.from_counts(0, 3, 0) == PRF(0.0, 0.0, 0.0, 0, 3, 0)
    assert PRF.from_counts(1, 2, 4).f1 == pytest.approx(2 * 0.5 * 0.25 / 0.75)


def test_irrelevance_record_with_a_call() -> None:
    metrics = score_calls([[call("a")]], [[]])
    assert metrics.exact_match == 0.0
    assert metrics.api.precision == 0.0 and metrics.api.recall == 0.0


def test_counts_add_up() -> None:
    one = call_counts([call("a", x=1)], [call("a", x=1)])
    assert (one + one).records == 2 and (one + one).argument_true_positives == 2


def test_score_calls_rejects_misaligned_inputs() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        score_calls([[], []], [[]])
