"""The property suite: generated adversarial tool schemas, bound and searched; every call must validate.

`tools()` draws schemas whose satisfiability is known by construction (conflicting enums and
constants, crossed bounds, anyOf/oneOf, nested objects and arrays, unicode names, local ``$defs``).
Each is bound: an unsatisfiable one must be refused at bind time, a satisfiable one accepted. The
accepted ones are searched under ``tool_choice="required"``, with a fast random policy (1,000 schemas)
and with the tiny real model (200 schemas, greedy and beam), and every finished call must pass
``jsonschema`` against the schema as written (``$defs`` included). The counts are printed at the end
(``pytest -s``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from langchain_toolprm import SearchConfig, ToolPRMChatModel, ToolSchemaError, run_search, to_tool_specs
from unit_tests.engine_fakes import RandomPolicy
from unit_tests.schema_strategies import tiny_searches, tools

COUNTS: Counter[str] = Counter()
SUITE: dict[str, Any] = {"deadline": None, "database": None, "derandomize": True,
                         "suppress_health_check": list(HealthCheck)}


def _check_calls(tool: dict[str, Any], calls: list[dict[str, Any]], kind: str) -> None:
    validator = Draft202012Validator(tool["function"]["parameters"])
    for call in calls:
        assert call["name"] == tool["function"]["name"]
        errors = [e.message for e in validator.iter_errors(call["arguments"])]
        COUNTS[f"{kind} invalid calls"] += bool(errors)
        assert not errors, (tool, call, errors)


@settings(max_examples=1000, **SUITE)
@given(drawn=tools(), seed=st.integers(0, 10_000), strategy=st.sampled_from(["greedy", "beam"]))
def test_generated_schemas_bind_iff_satisfiable_and_calls_validate(drawn: tuple[dict[str, Any], bool], seed: int,
                                                                    strategy: str) -> None:
    tool, satisfiable = drawn
    COUNTS["schemas"] += 1
    try:
        to_tool_specs([tool])
    except ToolSchemaError as error:
        COUNTS["refused"] += 1
        assert not satisfiable, f"refused a satisfiable tool: {error}\n{tool}"
        assert tool["function"]["name"] in str(error) and "parameter" in str(error)
        with pytest.raises(ToolSchemaError):
            ToolPRMChatModel(policy="unused").bind_tools([tool])  # refused at bind time, before any model loads
        return
    assert satisfiable, f"accepted an unsatisfiable tool: {tool}"
    COUNTS["accepted"] += 1
    result = run_search("Call the tool.", [tool], policy=RandomPolicy(seed), tool_choice="required",
                        config=SearchConfig(strategy=strategy, max_steps=64, seed=seed))
    COUNTS["random-policy finished"] += result.finished
    if result.finished:
        assert result.calls
        _check_calls(tool, result.calls, "random-policy")


@settings(max_examples=200, **SUITE)
@given(drawn=tools().filter(lambda d: d[1]), seed=st.integers(0, 10_000))
def test_generated_schemas_on_the_tiny_model(tiny_policy: Any, drawn: tuple[dict[str, Any], bool], seed: int) -> None:
    tool, _ = drawn
    COUNTS["tiny schemas"] += 1
    for strategy, result in tiny_searches(tool, tiny_policy, seed):
        COUNTS[f"tiny {strategy} finished"] += result.finished
        if result.finished:
            assert result.calls
            _check_calls(tool, result.calls, f"tiny {strategy}")


def test_report_counts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Runs last in this module: prints what the suite saw and checks its size."""
    if COUNTS["schemas"] == 0 or COUNTS["tiny schemas"] == 0:
        pytest.skip("run the whole module to get the counts")
    with capsys.disabled():
        print("\nschema property suite:", dict(sorted(COUNTS.items())))
    assert COUNTS["schemas"] >= 1000 and COUNTS["tiny schemas"] >= 200
    assert COUNTS["refused"] > 0 and COUNTS["accepted"] > 0  # both kinds were generated
    assert not any(v for k, v in COUNTS.items() if k.endswith("invalid calls"))
    # Every search under tool_choice="required" finishes: values are decoded under their schema, forced
    # tokens are free, a value cut by max_value_tokens is closed by its grammar, enum and const members are
    # written as their exact text (langchain_toolprm.member_rules), and greedy backtracks from a dead end.
    assert COUNTS["tiny greedy finished"] == COUNTS["tiny schemas"]
    assert COUNTS["tiny beam finished"] == COUNTS["tiny schemas"]
