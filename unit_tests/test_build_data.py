"""PRM data: sources, rollouts, and the `build-data` pipeline (rules only, and with a tiny policy)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from langchain_toolprm.data.build import BuildConfig, build_dataset, format_table, split_of
from langchain_toolprm.data.compose import compose_parallel, compose_repeated, follow_ups, remove_reference_tools
from langchain_toolprm.data.policy_rollouts import policy_trajectories, policy_trajectories_many
from langchain_toolprm.data.rollouts import (
    RolloutConfig,
    Trajectory,
    actions_from_calls,
    complete_along_reference,
    prepare,
)
from langchain_toolprm.data.sources import (
    Example,
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
    assert [e.irrelevant for e in examples] == [True, False, True]
    assert examples[1].reference == [{"add": {"a": [2], "b": [3]}}]
    # after the tool result the assistant answered in text: that decision is an example too
    assert [m["role"] for m in examples[2].messages][-2:] == ["assistant", "tool"]
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


def test_compose_parallel_up_to_four_parts(bfcl_dir: Path) -> None:
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"])
    composed = compose_parallel(examples, 12, seed=3, max_parts=4)
    sizes = {len(e.reference) for e in composed}
    assert sizes <= {2, 3, 4} and len(sizes) > 1
    for example in composed:
        ready = prepare(example)
        assert ready is not None
        finish = [i for i, a in enumerate(ready.reference) if a.tag is StepTag.TOTAL_FINISH]
        assert finish == [len(ready.reference) - 1]
        # stopping after the first call is wrong: the label says so at TOTAL_FINISH
        first_end = next(i for i, a in enumerate(ready.reference) if a.tag is StepTag.FUNC_END)
        stop = ready.grammar.decision(ready.grammar.walk(ready.reference)[first_end + 1])
        early = next(a for a in stop.actions if a.tag is StepTag.TOTAL_FINISH)
        assert ready.matcher.label([*ready.reference[: first_end + 1], early])[-1] is False


def test_compose_repeated_calls_one_function_with_each_part_s_values(bfcl_dir: Path) -> None:
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"])
    other = Example("live_simple_99-0-0", "live_simple", [{"role": "user", "content": "Time in Oslo?"}], [TIME],
                    [{"get_time": {"city": ["Oslo"]}}])
    composed = compose_repeated([*examples, other], 6, seed=2, max_parts=3)
    assert len(composed) == 6
    for example in composed:
        assert example.source == "repeated" and 2 <= len(example.reference) <= 3
        assert {name for call in example.reference for name in call} == {"get_weather"}  # never the lone get_time
        cities = [call["get_weather"]["city"][0] for call in example.reference]
        assert len(set(cities)) == len(cities) and all(c in example.messages[-1]["content"] for c in cities)
        ready = prepare(example)
        assert ready is not None and sum(a.tag is StepTag.FUNC_END for a in ready.reference) == len(cities)


def test_remove_reference_tools_makes_irrelevance(bfcl_dir: Path) -> None:
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"])
    removed = remove_reference_tools(examples, 4, seed=0)
    assert len(removed) == 4
    for example in removed:
        assert example.irrelevant and example.source == "removed-tool"
        assert all(t["name"] != "get_weather" for t in example.tools) and example.tools
        ready = prepare(example)
        assert ready is not None and [a.tag for a in ready.reference] == [StepTag.TOTAL_FINISH]
    assert {e.group for e in removed} <= {e.group for e in examples}  # same split group as its source


def test_follow_ups_answer_after_the_tool_result(bfcl_dir: Path) -> None:
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"])
    composed = compose_parallel(examples, 4, seed=1)
    made = follow_ups(examples + composed, 12, seed=0)
    assert made
    for example in made:
        assert example.messages[-1]["role"] == "tool"
        calls = [m for m in example.messages if m.get("tool_calls")][-1]["tool_calls"]
        results = [m for m in example.messages if m["role"] == "tool"]
        assert [r["tool_call_id"] for r in results] == [c["id"] for c in calls]
        assert example.meta["made"] + example.meta["left"] == len(calls) + len(example.reference)
        assert prepare(example) is not None
    assert any(e.irrelevant for e in made)  # all calls made: answer in text
    answered = [e for e in made if e.irrelevant]
    assert all(e.meta["left"] == 0 for e in answered)


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


class _DecodeSpy:
    """Wraps ``sample_many`` of a `CausalLM`: per call, how many prompts (queries) its rows continue,
    and per prompt, every sample drawn for it in order."""

    def __init__(self, sample_many: Any):
        self.sample_many = sample_many
        self.prompts_per_call: list[int] = []
        self.samples: dict[str, list[tuple[int, ...]]] = {}

    def __call__(self, draws: Any, **kwargs: Any) -> Any:
        self.prompts_per_call.append(len({draw.base.root for draw in draws}))
        out = self.sample_many(draws, **kwargs)
        for draw, samples in zip(draws, out, strict=True):
            self.samples.setdefault(draw.base.root, []).extend(s.token_ids for s in samples)
        return out


def test_batched_rollouts_match_one_by_one(bfcl_dir: Path, tiny_policy: Any, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """Queries decoded together draw and label exactly what each draws alone, and one decode serves them all."""
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"], limit=4)
    ready = [prepare(example) for example in examples]
    assert all(r is not None for r in ready)
    config = RolloutConfig(samples=2, max_new_tokens=16, branch_width=2, max_value_tokens=8)
    seeds = [11, 12, 13, 14]
    alone_spy = _DecodeSpy(tiny_policy.lm.sample_many)
    monkeypatch.setattr(tiny_policy.lm, "sample_many", alone_spy)
    alone = [policy_trajectories(tiny_policy, r, config, seed) for r, seed in zip(ready, seeds, strict=True)]
    together_spy = _DecodeSpy(alone_spy.sample_many)
    monkeypatch.setattr(tiny_policy.lm, "sample_many", together_spy)
    together = policy_trajectories_many(tiny_policy, ready, config, seeds)
    assert set(alone_spy.prompts_per_call) == {1}
    assert together_spy.prompts_per_call[0] == 4  # the first round's values and answers of all four queries
    assert together_spy.samples == alone_spy.samples and len(set(map(tuple, alone_spy.samples.values()))) == 4
    assert [[t.to_json() for t in ts] for ts in together] == [[t.to_json() for t in ts] for ts in alone]
    assert {t.origin for ts in alone for t in ts} >= {"reference", "branch"}


def test_batched_rollouts_give_each_query_its_own_samples(bfcl_dir: Path, tiny_policy: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With a decode that writes each row's own city, every query of a batch labels its own answers and values."""
    from langchain_toolprm.lm import Sample

    def scripted(draws: Any, **kwargs: Any) -> list[list[Sample]]:
        out = []
        for draw in draws:
            city = next(c for c in CITIES if f"Weather in {c}?" in draw.base.root)
            answer = f'<tool_call>\n{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}\n</tool_call>'
            text = f'"{city} {len(draw.base.tail)}"' if draw.stop is not None else answer
            out.append([Sample(text, (row,), -1.0, True) for row in range(draw.n)])
        return out

    spy = _DecodeSpy(scripted)
    monkeypatch.setattr(tiny_policy.lm, "sample_many", spy)
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"], limit=5)
    ready = [prepare(example) for example in examples]
    config = RolloutConfig(samples=2, max_new_tokens=16, branch_width=2, max_value_tokens=8)
    together = policy_trajectories_many(tiny_policy, ready, config, [0] * 5)
    assert spy.prompts_per_call == [5]
    for city, trajectories in zip(CITIES, together, strict=False):
        assert isinstance(trajectories, list)
        (answer,) = [t for t in trajectories if t.origin == "sample"]
        assert answer.correct  # its own city: a misrouted answer names another one and is wrong
        values = [t.actions[-1].value for t in trajectories if t.origin == "branch"
                  and t.actions[-1].tag is StepTag.ARG_VALUE and t.actions[-2].name == "city"]
        assert values and all(v.startswith(f"{city} ") for v in values)
    alone = [policy_trajectories(tiny_policy, r, config, 0) for r in ready]
    assert [[t.to_json() for t in ts] for ts in together] == [[t.to_json() for t in ts] for ts in alone]


def test_a_failed_rollout_costs_only_its_query(bfcl_dir: Path, tiny_policy: Any, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    examples, _ = examples_from_bfcl(bfcl_dir, ["live_simple"], limit=3)
    ready = [prepare(example) for example in examples]
    session = tiny_policy.session

    def failing(messages: Any, specs: Any, **kwargs: Any) -> Any:
        if "Rome" in messages[-1]["content"]:
            raise RuntimeError("no session for Rome")
        return session(messages, specs, **kwargs)

    monkeypatch.setattr(tiny_policy, "session", failing)
    config = RolloutConfig(samples=1, max_new_tokens=8, branch_width=2, max_value_tokens=6)
    results = policy_trajectories_many(tiny_policy, ready, config, [0, 1, 2])
    assert isinstance(results[1], RuntimeError)
    assert all(isinstance(r, list) and r[0].origin == "reference" for r in (results[0], results[2]))
    monkeypatch.setattr(tiny_policy, "sample_across", lambda *a, **k: (_ for _ in ()).throw(MemoryError("decode")))
    results = policy_trajectories_many(tiny_policy, ready, config, [0, 1, 2])
    assert [type(r) for r in results] == [MemoryError, RuntimeError, MemoryError]


def _rollout_records(out: Path) -> list[dict[str, Any]]:
    lines = (out / "rollouts.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda record: record["id"])


def test_build_batches_policy_rollouts(bfcl_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Batched builds write the records of one-by-one builds; a failed query alone falls back to rules."""
    from langchain_toolprm.lm import CausalLM

    rollout = RolloutConfig(samples=1, max_new_tokens=8, branch_width=2, max_value_tokens=6)
    common = {"bfcl_dir": bfcl_dir, "bfcl_categories": ["live_simple"], "limit": 4, "policies": [str(tiny_model_dir)],
              "time_budgets_s": [None], "compose_parallel": 0, "rollout": rollout}
    roots: list[int] = []
    sample_many = CausalLM.sample_many

    def spy(self: CausalLM, draws: Any, **kwargs: Any) -> Any:
        roots.append(len({draw.base.root for draw in draws}))
        return sample_many(self, draws, **kwargs)

    monkeypatch.setattr(CausalLM, "sample_many", spy)
    one = build_dataset(BuildConfig(out=tmp_path / "one", rollout_batch=1, **common), progress=False)
    assert set(roots) == {1}
    roots.clear()
    batched = build_dataset(BuildConfig(out=tmp_path / "batched", rollout_batch=3, **common), progress=False)
    assert max(roots) == 3  # batches of 3 then 1
    assert _rollout_records(tmp_path / "batched") == _rollout_records(tmp_path / "one")
    assert batched["splits"] == one["splits"]
    assert {r["mode"] for r in _rollout_records(tmp_path / "one")} == {f"policy:{tiny_model_dir}"}

    from langchain_toolprm.policy.transformers import TransformersPolicy

    session = TransformersPolicy.session

    def failing(self: Any, messages: Any, specs: Any, **kwargs: Any) -> Any:
        if "Rome" in messages[-1]["content"]:
            raise RuntimeError("no session for Rome")
        return session(self, messages, specs, **kwargs)

    monkeypatch.setattr(TransformersPolicy, "session", failing)
    with caplog.at_level("ERROR", logger="langchain_toolprm.data.build"):
        build_dataset(BuildConfig(out=tmp_path / "failed", rollout_batch=4, **common), progress=False)
    modes = {r["id"]: r["mode"] for r in _rollout_records(tmp_path / "failed")}
    rome = "live_simple_1-0-0"
    assert modes.pop(rome) == "rules" and set(modes.values()) == {f"policy:{tiny_model_dir}"} and len(modes) == 3
    assert f"Rollout failed on {rome}" in caplog.text


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
