"""PRM data: sources, rollouts, and the `build-data` pipeline (rules only, and with a tiny policy)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from langchain_toolprm.data.build import BuildConfig, build_dataset, format_table, split_of
from langchain_toolprm.data.rollouts import (
    RolloutConfig,
    Trajectory,
    actions_from_calls,
    complete_along_reference,
    policy_trajectories,
    prepare,
)
from langchain_toolprm.data.sources import (
    Example,
    compose_parallel,
    examples_from_bfcl,
    examples_from_glaive,
    load_xlam,
    reference_calls,
)
from langchain_toolprm.grammar import StepTag

WEATHER = {"name": "get_weather", "description": "Weather in a city.", "parameters": {
    "type": "dict", "required": ["city"],
    "properties": {"city": {"type": "string", "description": "City name."},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}}}}
TIME = {"name": "get_time", "description": "Local time in a city.", "parameters": {
    "type": "dict", "required": ["city"], "properties": {"city": {"type": "string"}}}}
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Quito", "Delhi", "Tokyo"]


def _write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")


@pytest.fixture
def bfcl_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bfcl"
    simple, answers, irrelevant = [], [], []
    for i, city in enumerate(CITIES):
        case_id = f"live_simple_{i}-0-0"
        simple.append({"id": case_id, "question": [[{"role": "user", "content": f"Weather in {city}?"}]],
                       "function": [WEATHER, TIME]})
        answers.append({"id": case_id, "ground_truth": [{"get_weather": {"city": [city], "unit": ["", "celsius"]}}]})
        irrelevant.append({"id": f"live_irrelevance_{i}-0-0",
                           "question": [[{"role": "user", "content": f"Tell me a joke about {city}."}]],
                           "function": [WEATHER]})
    _write_jsonl(folder / "BFCL_v4_live_simple.json", simple)
    _write_jsonl(folder / "possible_answer" / "BFCL_v4_live_simple.json", answers)
    _write_jsonl(folder / "BFCL_v4_live_irrelevance.json", irrelevant)
    return folder


def test_bfcl_examples(bfcl_dir: Path) -> None:
    examples, skipped = examples_from_bfcl(bfcl_dir, ["live_simple", "live_irrelevance"])
    assert not skipped and len(examples) == 16
    simple = examples[0]
    assert simple.tools[0]["parameters"]["type"] == "object"  # BFCL types converted to JSON schema
    assert reference_calls(simple.reference) == [{"name": "get_weather", "arguments": {"city": "Paris",
                                                                                      "unit": "celsius"}}]
    assert examples[-1].irrelevant


def test_reference_calls_skip_values_no_schema_admits() -> None:
    ready = prepare(Example("x", "t", [{"role": "user", "content": "q"}], [
        {"name": "f", "description": "", "parameters": {"type": "object", "properties": {
            "a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}}],
        [{"f": {"a": ["x"], "b": ["", None]}}]))
    assert ready is not None
    assert [a.tag for a in ready.reference].count(StepTag.ARG_VALUE) == 1


def test_glaive_conversations(tmp_path: Path) -> None:
    tools = json.dumps([{"name": "add", "description": "Add.", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}])
    data = [{"tools": tools, "conversations": [
        {"from": "human", "value": "hi"},
        {"from": "gpt", "value": "Hello!"},
        {"from": "human", "value": "2+3?"},
        {"from": "function_call", "value": json.dumps({"name": "add", "arguments": {"a": 2, "b": 3}})},
        {"from": "observation", "value": "5"},
        {"from": "gpt", "value": "5."},
    ]}]
    file = tmp_path / "glaive.json"
    file.write_text(json.dumps(data), encoding="utf-8")
    examples, skipped = examples_from_glaive(file)
    assert not skipped
    assert [e.irrelevant for e in examples] == [True, False]
    assert examples[1].reference == [{"add": {"a": [2], "b": [3]}}]
    assert {e.group for e in examples} == {"glaive-0"}


def test_xlam_records(tmp_path: Path) -> None:
    row = {"id": 7, "query": "Find 3 items.",
           "tools": json.dumps([{"name": "find", "description": "Find items.", "parameters": {
               "n": {"type": "int", "description": "How many."},
               "sort": {"type": "str, optional", "description": "Order.", "default": "asc"}}}]),
           "answers": json.dumps([{"name": "find", "arguments": {"n": 3}}])}
    file = tmp_path / "xlam.jsonl"
    _write_jsonl(file, [row, {**row, "id": 8, "answers": "[]"}])
    examples, skipped = load_xlam(file)
    assert not skipped and [e.id for e in examples] == ["7", "8"]
    params = examples[0].tools[0]["parameters"]
    assert params["required"] == ["n"] and params["properties"]["n"]["type"] == "integer"
    assert examples[1].irrelevant
    assert prepare(examples[0]) is not None


def test_compose_parallel(bfcl_dir: Path) -> None:
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"])
    composed = compose_parallel(examples, 3, seed=1)
    assert len(composed) == 3
    for example in composed:
        assert len(example.reference) == 2
        ready = prepare(example)
        assert ready is not None and sum(a.tag is StepTag.FUNC_END for a in ready.reference) == 2


def test_actions_from_calls_stop_where_the_grammar_refuses(bfcl_dir: Path) -> None:
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"])
    ready = prepare(examples[0])
    assert ready is not None
    unknown = actions_from_calls(ready.grammar, [{"name": "nope", "arguments": {}}], True)
    assert unknown == []
    coerced = actions_from_calls(ready.grammar, [{"name": "get_time", "arguments": {"city": 5}}], True)
    assert coerced[-1].tag is StepTag.TOTAL_FINISH and coerced[2].value == "5"  # as the search reads values
    labels = ready.matcher.label(coerced)
    assert labels[0] is False


def test_complete_along_reference(bfcl_dir: Path) -> None:
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"])
    ready = prepare(examples[0])
    assert ready is not None
    value_at = next(i for i, a in enumerate(ready.reference) if a.tag is StepTag.ARG_VALUE)
    wrong = [*ready.reference[:value_at], ready.reference[value_at].__class__(StepTag.ARG_VALUE, value_json='"X"')]
    full = complete_along_reference(ready, wrong)
    assert full is not None and full[-1].tag is StepTag.TOTAL_FINISH and len(full) == len(ready.reference)
    trajectory = Trajectory(full, ready.matcher.label(full), "completed")
    assert trajectory.complete and not trajectory.correct


def test_split_is_stable_and_by_group() -> None:
    assert split_of("a", 0, 0.5) == split_of("a", 0, 0.5)
    splits = {split_of(f"g{i}", 0, 0.3) for i in range(50)}
    assert splits == {"train", "test"}


def test_build_rules_only(bfcl_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    config = BuildConfig(out=out, bfcl_dir=bfcl_dir, bfcl_categories=["live_simple", "live_irrelevance"],
                         policies=[], time_budgets_s=[], compose_parallel=4, test_fraction=0.3, mask_ratio=0.5)
    stats = build_dataset(config, progress=False)
    for name in ("train.jsonl", "test.jsonl", "masks.jsonl", "stats.json", "stats.md", "rollouts.jsonl"):
        assert (out / name).is_file()
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert train and test
    assert not {q["group"] for q in train} & {q["group"] for q in test}
    queries = stats["splits"]["train"]["queries"] + stats["splits"]["test"]["queries"]
    assert 17 <= queries <= 20  # 16 BFCL cases and the composed ones a split could make
    masked = [q for q in train + test if q["masked"]]
    masks = {json.loads(line)["id"] for line in (out / "masks.jsonl").read_text().splitlines()}
    assert masks == {q["id"] for q in masked} and 0 < len(masked) < queries
    tags = stats["splits"]["train"]["tags"]
    assert tags["FUNC_NAME"]["negative"] > 0 and tags["TOTAL_FINISH"]["positive"] > 0
    steps = stats["splits"]["train"]["steps"]
    assert steps["total"] == steps["positive"] + steps["negative"] > 0
    table = format_table(stats)
    assert "| train |" in table and "| trajectories: reference |" in table and "| queries: rules |" in table
    lines = (out / "rollouts.jsonl").read_text().count("\n")
    again = build_dataset(config, progress=False)  # resumes: nothing redone
    assert (out / "rollouts.jsonl").read_text().count("\n") == lines
    assert again["splits"] == stats["splits"]


def test_policy_rollouts_with_a_tiny_model(bfcl_dir: Path, tiny_policy: Any) -> None:
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"], limit=1)
    ready = prepare(examples[0])
    assert ready is not None
    config = RolloutConfig(samples=2, max_new_tokens=16, branch_width=2, max_value_tokens=8)
    trajectories = policy_trajectories(tiny_policy, ready, config, seed=0)
    origins = {t.origin for t in trajectories}
    assert {"reference", "branch"} <= origins
    assert all(len(t.labels) == len(t.actions) for t in trajectories)
    assert len({t.key() for t in trajectories}) == len(trajectories)
    for trajectory in trajectories:
        ready.grammar.walk(trajectory.actions)  # every labelled step is one the search could take


def test_build_with_a_policy(bfcl_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    config = BuildConfig(out=tmp_path / "d", bfcl_dir=bfcl_dir, bfcl_categories=["live_simple"], limit=2,
                         policies=[str(tiny_model_dir)], time_budgets_s=[None], compose_parallel=0,
                         rollout=RolloutConfig(samples=1, max_new_tokens=8, branch_width=2, max_value_tokens=6))
    stats = build_dataset(config, progress=False)
    modes = Counter(stats["splits"]["train"]["modes"]) + Counter(stats["splits"]["test"]["modes"])
    assert modes == {f"policy:{tiny_model_dir}": 2}


def test_value_perturbations_are_valid_and_labelled(bfcl_dir: Path) -> None:
    import random

    from langchain_toolprm.data.rollouts import rule_trajectories, value_perturbations

    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"], limit=1)
    ready = prepare(examples[0])
    assert ready is not None
    states = ready.grammar.walk(ready.reference)
    at = next(i for i, a in enumerate(ready.reference) if a.tag is StepTag.ARG_VALUE)
    values = value_perturbations(ready, states[at], ready.reference[at], random.Random(0))
    assert values and ready.reference[at] not in values
    assert all(ready.grammar.is_legal(states[at], v) for v in values)
    perturbed = [t for t in rule_trajectories(ready, RolloutConfig(), random.Random(0)) if t.origin == "perturbed"]
    assert perturbed and all(t.labels[-1] is False for t in perturbed)  # "paris", "PARIS", "P"... are wrong
