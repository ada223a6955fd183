"""PRM training on a tiny random model: packing matches inference, objectives, resume, save, load, eval."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from langchain_toolprm.data.build import BuildConfig, build_dataset
from langchain_toolprm.data.rollouts import Trajectory
from langchain_toolprm.grammar import Grammar, StepTag
from langchain_toolprm.prm.adapters import DEFAULT_PRM, default_prm_path, is_adapter, load_prm_model, prm_folder
from langchain_toolprm.tools import to_tool_specs
from langchain_toolprm.train import (
    TrainConfig,
    answer_selection,
    evaluate_prm,
    load_queries,
    pack_query,
    train_prm,
)
from langchain_toolprm.train.model import label_logits, label_token_ids

WEATHER = {"name": "get_weather", "description": "Weather in a city.", "parameters": {
    "type": "dict", "required": ["city"],
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}
TIME = {"name": "get_time", "description": "Local time.", "parameters": {
    "type": "dict", "required": ["city"], "properties": {"city": {"type": "string"}}}}
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Quito", "Delhi", "Tokyo", "Accra", "Hanoi"]


def _write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prm-data")
    simple, answers = [], []
    for i, city in enumerate(CITIES):
        case_id = f"live_simple_{i}-0-0"
        simple.append({"id": case_id, "question": [[{"role": "user", "content": f"Weather in {city}?"}]],
                       "function": [WEATHER, TIME]})
        answers.append({"id": case_id, "ground_truth": [{"get_weather": {"city": [city], "unit": ["", "celsius"]}}]})
    _write_jsonl(root / "bfcl" / "BFCL_v4_live_simple.json", simple)
    _write_jsonl(root / "bfcl" / "possible_answer" / "BFCL_v4_live_simple.json", answers)
    config = BuildConfig(out=root / "data", bfcl_dir=root / "bfcl", bfcl_categories=["live_simple"], policies=[],
                         time_budgets_s=[], compose_parallel=2, test_fraction=0.3)
    build_dataset(config, progress=False)
    return root / "data"


def _tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_packed_tree_reads_steps_as_inference_does(data_dir: Path, tiny_model_dir: Path) -> None:
    """Every node's label logits equal those of the PRM scoring that step through `GenerativePRM`."""
    import torch

    from langchain_toolprm.lm import CausalLM
    from langchain_toolprm.prm.generative import GenerativePRM

    model, tokenizer = load_prm_model(str(tiny_model_dir))
    query = load_queries(data_dir)[0]
    packed = pack_query(query, tokenizer, "eval")
    assert packed is not None and len(packed.node_spans) > 5
    plus, minus = label_token_ids(tokenizer)
    with torch.no_grad():
        tree = torch.softmax(label_logits(model, packed, "cpu")[:, [plus, minus]], dim=-1)[:, 0]
    specs = to_tool_specs(query["tools"])
    grammar = Grammar(specs)
    session = GenerativePRM(CausalLM(model, tokenizer)).session(query["messages"], specs)
    order = {"reference": 0, "sample": 1, "branch": 2, "rule": 3, "perturbed": 3, "completed": 4}
    trajectories = sorted((Trajectory.from_json(t) for t in query["trajectories"]), key=lambda t: order[t.origin])
    checked = 0
    for (nodes, _, _), trajectory in zip(packed.trajectories, trajectories, strict=True):
        states = grammar.walk(trajectory.actions)
        path = list(zip(states, trajectory.actions, strict=False))
        for i, node in enumerate(nodes):
            expected = session.score(path[:i], states[i], [trajectory.actions[i]])[0]
            assert abs(float(tree[node]) - expected) < 1e-4
            checked += 1
    assert checked >= len(packed.node_spans)


def test_objectives_choose_their_labels(data_dir: Path, tiny_model_dir: Path) -> None:
    tokenizer = _tokenizer(tiny_model_dir)
    query = next(q for q in load_queries(data_dir) if any(not all(t["labels"]) for t in q["trajectories"]))
    prm = pack_query(query, tokenizer, "prm")
    coarse = pack_query(query, tokenizer, "coarse")
    outcome = pack_query(query, tokenizer, "outcome")
    assert prm is not None and coarse is not None and outcome is not None
    assert any(t is False for t in prm.targets) and any(t is True for t in prm.targets)
    assert all(t is None for t, tag in zip(coarse.targets, coarse.tags, strict=True) if tag is StepTag.ARG_VALUE)
    assert any(t is not None for t in coarse.targets)
    finals = {nodes[-1] for nodes, _, _ in outcome.trajectories}
    assert all((t is None) == (i not in finals) for i, t in enumerate(outcome.targets))
    # A wrong step ends its trajectory's labels (all histories are "+"), except the forced FUNC_END after it.
    for nodes, _, _ in prm.trajectories:
        labels = [prm.targets[n] for n in nodes]
        if False in labels:
            cut = labels.index(False)
            assert len(labels) - cut <= 2
    assert pack_query(query, tokenizer, "prm", max_context_tokens=5) is None


def test_the_decisions_objective_labels_the_call_list_steps_only(data_dir: Path, tiny_model_dir: Path) -> None:
    tokenizer = _tokenizer(tiny_model_dir)
    pairs = [(pack_query(q, tokenizer, "decisions"), pack_query(q, tokenizer, "prm")) for q in load_queries(data_dir)]
    packed = [p for p, _ in pairs if p is not None]
    labelled = [(p, node) for p in packed for node, t in enumerate(p.targets) if t is not None]
    assert {True, False} <= {p.targets[node] for p, node in labelled}
    for p, node in labelled:
        parent = p.node_parent[node]
        assert parent == -1 or p.tags[parent] is StepTag.FUNC_END
        assert p.tags[node] in (StepTag.FUNC_NAME, StepTag.TOTAL_FINISH)
    # Every history is right: a path holds no wrong step before its last, and none inside a call.
    for p in packed:
        for nodes, _, _ in p.trajectories:
            assert all(p.targets[n] is not False for n in nodes[:-1])
            assert p.targets[nodes[-1]] is not None
    # Fewer labels and shorter sequences than the full PRM objective's packing of the same query.
    for decisions, full in pairs:
        if decisions is not None:
            assert full is not None and len(decisions.ids) <= len(full.ids)
            assert sum(t is not None for t in decisions.targets) < sum(t is not None for t in full.targets)


def test_train_resume_save_load_and_eval(data_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "prm"
    config = TrainConfig(data=data_dir, out=out, base=str(tiny_model_dir), max_steps=2, batch_size=2,
                         save_every=1, lora_r=4, threads=1)
    first = train_prm(config, progress=False)
    assert first["steps"] == 2 and first["train_labels"] > 0
    assert (out / "checkpoint" / "state.json").is_file()
    resumed = train_prm(config.model_copy(update={"max_steps": 4, "stop_at_step": 3}), progress=False)
    assert resumed["steps"] == 3 and resumed["planned_steps"] == 4 and resumed["stopped_at_step"] == 3
    assert not resumed["stopped_by_time_budget"]
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 3
    assert is_adapter(out)
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_model_dir)
    meta = json.loads((out / "toolprm_prm.json").read_text())
    assert meta["objective"] == "prm" and meta["prompt_version"]
    model, _ = load_prm_model(out)
    assert not hasattr(model, "peft_config")  # merged
    result = evaluate_prm(out, data_dir, progress=False)
    assert result.steps > 0 and result.trajectories > 0
    assert 0.0 <= result.step_accuracy <= 1.0 and 0.0 <= result.always_positive_step_accuracy <= 1.0
    assert result.aggregation == "min"
    assert result.ranking_groups > 0 and 0.0 <= result.ranking_accuracy <= 1.0
    assert result.selection_groups > 0 and set(result.selection_accuracy) == {"last", "min", "prod", "mean"}
    assert 0.0 < result.random_selection_accuracy < 1.0
    assert all(0.0 <= v <= 1.0 for v in result.selection_accuracy.values())
    assert set(result.per_tag) <= {t.value for t in StepTag}
    mixed = evaluate_prm(out, data_dir, split="train", per_source=1, progress=False)
    assert mixed.queries == 2  # one live_simple query, one composed
    assert set(mixed.focus) == {"TOTAL_FINISH of parallel queries", "stop or go on after the one call asked for"}
    assert 0.0 <= mixed.focus["TOTAL_FINISH of parallel queries"]["accuracy"] <= 1.0


def test_answer_selection_judges_each_aggregation_on_answers_of_different_lengths() -> None:
    no_call = ([0.6], False)  # one step: a wrong "no call"
    call = ([0.9, 0.5, 0.95, 0.9], True)  # a right call with one doubtful step
    picks = answer_selection([no_call, call])
    assert picks == {"last": True, "min": False, "prod": False, "mean": True}
    assert answer_selection([call, ([0.2], True)]) is None  # nothing to choose between
    assert answer_selection([no_call]) is None


def test_outcome_model_and_full_fine_tuning(data_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "orm"
    config = TrainConfig(data=data_dir, out=out, base=str(tiny_model_dir), objective="outcome", lora=False,
                         max_steps=1, batch_size=2)
    summary = train_prm(config, progress=False)
    assert summary["steps"] == 1
    assert (out / "config.json").is_file() and not is_adapter(out)
    result = evaluate_prm(out, data_dir, progress=False)
    assert result.aggregation == "last"
    # Several builds train one PRM: their train splits are read one after the other.
    both = TrainConfig(data=[data_dir, data_dir / "train.jsonl"], out=tmp_path / "both", base=str(tiny_model_dir),
                       objective="outcome", lora=False, max_steps=1, batch_size=2)
    assert train_prm(both, progress=False)["train_queries"] == 2 * summary["train_queries"]


def test_prm_folder_resolves_the_packaged_name_and_keeps_paths(tmp_path: Path) -> None:
    assert prm_folder(DEFAULT_PRM) == default_prm_path()
    assert prm_folder(tmp_path / DEFAULT_PRM) == tmp_path / DEFAULT_PRM  # a folder named "default" is a folder
    assert prm_folder(str(tmp_path)) == tmp_path


def test_label_weights_and_sibling_groups(data_dir: Path, tiny_model_dir: Path) -> None:
    from langchain_toolprm.train.loop import _label_weights
    from langchain_toolprm.train.packing import sibling_groups

    tokenizer = _tokenizer(tiny_model_dir)
    data = [p for p in (pack_query(q, tokenizer, "prm") for q in load_queries(data_dir)) if p is not None]
    weights = _label_weights(data, balance=True)
    counts: dict = {}
    for packed in data:
        for tag, target in zip(packed.tags, packed.targets, strict=True):
            if target is not None:
                counts[(tag, target)] = counts.get((tag, target), 0) + 1
    for tag in StepTag:
        pos, neg = counts.get((tag, True), 0), counts.get((tag, False), 0)
        if pos and neg:  # each tag's right and wrong steps weigh the same in total
            assert abs(pos * weights[(tag, True)] - neg * weights[(tag, False)]) < 1e-6
    assert set(_label_weights(data, balance=False).values()) == {1.0}
    groups = [g for p in data for g in sibling_groups(p)]
    assert groups
    packed = data[0]
    for positives, negatives in sibling_groups(packed):
        parents = {packed.node_parent[n] for n in positives + negatives}
        assert len(parents) == 1
        assert all(packed.targets[n] for n in positives) and not any(packed.targets[n] for n in negatives)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft's own call, as a reference
def test_adapter_merges_without_peft(data_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """A trained plain LoRA loads by the plain sum (no peft), which gives exactly peft's merged weights."""
    import torch
    from peft import PeftModel

    from langchain_toolprm.models import load_causal_lm
    from langchain_toolprm.prm.adapters import lora_variant, merge_lora

    out = tmp_path / "prm"
    train_prm(TrainConfig(data=data_dir, out=out, base=str(tiny_model_dir), max_steps=2, batch_size=2,
                          lora_layers=1, lr=5e-2), progress=False)
    assert lora_variant(json.loads((out / "adapter_config.json").read_text())) == []
    merged, _ = load_prm_model(out)
    by_peft = PeftModel.from_pretrained(load_causal_lm(str(tiny_model_dir))[0], str(out)).merge_and_unload()
    base, _ = load_causal_lm(str(tiny_model_dir))
    changed = False
    for (name, a), (_, b), (_, c) in zip(merged.state_dict().items(), by_peft.state_dict().items(),
                                         base.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
        changed |= not torch.allclose(a, c)
    assert changed
    with pytest.raises(ValueError, match="use_dora"):
        merge_lora(base, out, {"peft_type": "LORA", "use_dora": True})


def test_trained_prm_loads_by_reference_and_refuses_another_prompt_format(
        data_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """A `toolprm train` folder is a PRM reference like any other; one trained on another prompt is refused."""
    from langchain_toolprm.components import load_prm
    from langchain_toolprm.prm.generative import GenerativePRM
    from langchain_toolprm.prm.prompt import PROMPT_VERSION

    out = tmp_path / "prm"
    train_prm(TrainConfig(data=data_dir, out=out, base=str(tiny_model_dir), max_steps=1, batch_size=2,
                          lora_layers=1), progress=False)
    prm = load_prm(str(out))
    assert isinstance(prm, GenerativePRM) and prm.name == f"generative:{out}"
    query = load_queries(data_dir, "train")[0]
    specs = to_tool_specs(query["tools"])
    grammar = Grammar(specs)
    state = grammar.initial()
    session = prm.session(query["messages"], specs)
    scores = session.score((), state, list(grammar.decision(state).actions)[:3])
    assert scores and all(0.0 < s < 1.0 for s in scores)

    meta_file = out / "toolprm_prm.json"
    meta = json.loads(meta_file.read_text())
    assert meta["prompt_version"] == PROMPT_VERSION
    meta_file.write_text(json.dumps({**meta, "prompt_version": "toolprm-prompt-v0"}))
    with pytest.raises(ValueError, match="toolprm-prompt-v0"):
        GenerativePRM.from_pretrained(str(out))


def test_training_continues_from_a_trained_adapter(data_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """``init`` starts from a trained adapter's weights (not a fresh one) and refuses a mismatched base."""
    from safetensors.torch import load_file

    first = tmp_path / "first"
    train_prm(TrainConfig(data=data_dir, out=first, base=str(tiny_model_dir), max_steps=2, batch_size=2,
                          lora_layers=1, lr=5e-2), progress=False)
    # zero training steps' worth of change: lr so small the weights stay where init put them
    again = tmp_path / "again"
    train_prm(TrainConfig(data=data_dir, out=again, base=str(tiny_model_dir), init=str(first), max_steps=1,
                          batch_size=2, lr=1e-12, warmup_ratio=0.0), progress=False)
    before = load_file(str(first / "adapter_model.safetensors"))
    after = load_file(str(again / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    assert all(torch_allclose(before[k], after[k]) for k in before)
    fresh = tmp_path / "fresh"
    train_prm(TrainConfig(data=data_dir, out=fresh, base=str(tiny_model_dir), max_steps=1, batch_size=2,
                          lora_layers=1, lr=1e-12, warmup_ratio=0.0), progress=False)
    other = load_file(str(fresh / "adapter_model.safetensors"))
    assert not all(torch_allclose(before[k], other[k]) for k in before)
    with pytest.raises(ValueError, match="adapts"):
        train_prm(TrainConfig(data=data_dir, out=tmp_path / "bad", base="elsewhere", init=str(first), max_steps=1),
                  progress=False)
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        train_prm(TrainConfig(data=data_dir, out=tmp_path / "bad2", base=str(tiny_model_dir), init=str(tmp_path)),
                  progress=False)


def test_a_context_prm_starts_from_an_adapter_of_the_first_format(data_dir: Path, tiny_model_dir: Path,
                                                                    tmp_path: Path) -> None:
    """``init`` across prompt formats is a warm start: the weights carry over, the meta names both formats."""
    from safetensors.torch import load_file

    from langchain_toolprm.prm.context_format import CONTEXT_PROMPT_VERSION
    from langchain_toolprm.prm.prompt import PROMPT_VERSION

    first = tmp_path / "first"
    train_prm(TrainConfig(data=data_dir, out=first, base=str(tiny_model_dir), max_steps=2, batch_size=2,
                          lora_layers=1, lr=5e-2), progress=False)
    context = tmp_path / "context"
    train_prm(TrainConfig(data=data_dir, out=context, base=str(tiny_model_dir), init=str(first), prompt="policy",
                          max_steps=1, batch_size=2, lr=1e-12, warmup_ratio=0.0), progress=False)
    meta = json.loads((context / "toolprm_prm.json").read_text())
    assert (meta["prompt_version"], meta["init_prompt_version"]) == (CONTEXT_PROMPT_VERSION, PROMPT_VERSION)
    before = load_file(str(first / "adapter_model.safetensors"))
    after = load_file(str(context / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    assert all(torch_allclose(before[k], after[k]) for k in before)
    meta_file = first / "toolprm_prm.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "prompt_version": "toolprm-prompt-v0"}))
    with pytest.raises(ValueError, match="toolprm-prompt-v0"):
        train_prm(TrainConfig(data=data_dir, out=tmp_path / "old", base=str(tiny_model_dir), init=str(first),
                              max_steps=1), progress=False)


def torch_allclose(a: Any, b: Any) -> bool:
    import torch

    return bool(torch.allclose(a.float(), b.float(), atol=1e-6))


def test_mix_sources_draws_every_source_in_turn() -> None:
    from langchain_toolprm.train import Packed
    from langchain_toolprm.train.loop import _policy_first

    def packed(source: str, mode: str) -> Packed:
        return Packed([], [], 0, [], [], [], [], [], [], mode, source)

    data = [packed("big", "rules") for _ in range(20)] + [packed("small", "rules"), packed("small", "policy:x")]
    mixed = _policy_first(data, 4, seed=0, by_source=True)
    assert [p.source for p in mixed].count("small") == 2
    assert next(p for p in mixed if p.source == "small").mode == "policy:x"
    plain = _policy_first(data, 4, seed=0)
    assert plain[0].mode == "policy:x"


def test_focus_names_the_decisions_reported_apart() -> None:
    from langchain_toolprm.train import Packed
    from langchain_toolprm.train.evaluate import _focus

    def packed(calls: int, source: str = "bfcl:live_simple") -> Packed:
        return Packed([], [], 0, [(0, 1), (1, 2)], [-1, 0], [0, 1], [None, True],
                      [StepTag.FUNC_NAME, StepTag.TOTAL_FINISH], [], "rules", source, calls)

    assert _focus(packed(2), 1) == ["TOTAL_FINISH of parallel queries"]
    assert _focus(packed(1), 1) == []
    after_call = Packed([], [], 0, [(0, 1), (1, 2), (2, 3)], [-1, 0, 1], [0, 1, 2], [None, None, True],
                        [StepTag.FUNC_NAME, StepTag.FUNC_END, StepTag.TOTAL_FINISH], [], "rules", "composed", 1)
    assert _focus(after_call, 2) == ["stop or go on after the one call asked for"]
    assert _focus(replace(after_call, reference_calls=2), 2) == ["TOTAL_FINISH of parallel queries"]
    assert _focus(after_call, 1) == []
    assert _focus(packed(0), 0) == ["first step of no-call queries"]
    assert _focus(packed(0, "follow-up"), 0) == ["first step of no-call queries", "first step after tool results"]


def test_queries_with_refused_tools_are_left_out(data_dir: Path, tiny_model_dir: Path) -> None:
    query = load_queries(data_dir)[0]
    bad = {**query, "tools": [{"name": "t", "parameters": {"type": "object", "properties": {
        "p": {"type": "integer", "enum": []}}}}]}
    tokenizer = _tokenizer(tiny_model_dir)
    assert pack_query(bad, tokenizer, "eval") is None
    assert pack_query(query, tokenizer, "eval") is not None


def test_first_per_source_takes_every_source() -> None:
    from langchain_toolprm.train import Packed
    from langchain_toolprm.train.evaluate import _first_per_source

    data = [Packed([], [], 0, [], [], [], [], [], [], "rules", s) for s in ["a", "a", "a", "b", "c", "c"]]
    assert [p.source for p in _first_per_source(data, 2)] == ["a", "a", "b", "c", "c"]


def test_sources_train_on_the_named_sources_only(data_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    composed = TrainConfig(data=data_dir, out=tmp_path / "composed", base=str(tiny_model_dir), max_steps=1,
                           batch_size=8, lora_r=4, threads=1, sources=["composed"])
    every = composed.model_copy(update={"out": tmp_path / "every", "sources": None})
    only, both = train_prm(composed, progress=False), train_prm(every, progress=False)
    queries = load_queries(data_dir, "train")
    assert only["train_queries"] == sum(q["source"] == "composed" for q in queries) > 0
    assert both["train_queries"] == len(queries) > only["train_queries"]
    with pytest.raises(ValueError, match=r"composd.*the data holds: bfcl:live_simple, composed"):
        train_prm(composed.model_copy(update={"out": tmp_path / "typo", "sources": ["composd"]}), progress=False)
