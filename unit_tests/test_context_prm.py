"""The policy-context PRM format: trained on the policy's own prompt and call text, scored on its cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_toolprm.data.rollouts import Trajectory
from langchain_toolprm.evaluation.render import prm_eval_tables
from langchain_toolprm.grammar import Grammar
from langchain_toolprm.lm.judged_tree import JudgedTree
from langchain_toolprm.tools import to_tool_specs
from langchain_toolprm.train import TrainConfig, evaluate_prms, load_queries, train_prm
from langchain_toolprm.train.context_packing import PolicyRenderer, pack_context_queries, pack_context_query
from langchain_toolprm.train.packing import ORIGIN_ORDER, pack_queries
from unit_tests.test_train import _tokenizer, data_dir  # noqa: F401 (a fixture)


def test_judged_tree_shares_tokens_and_keeps_suffixes_apart():
    tree = JudgedTree.build([[1, 2, 3], [1, 2, 4], []], [[9, 8], [9], [7]])
    assert tree.tokens == [1, 2, 3, 4] and tree.parents == [-1, 0, 1, 1] and tree.ends == [2, 3, -1]
    ids, mask, positions = tree.tree_inputs(prefix_len=5)
    assert positions.tolist() == [[5, 6, 7, 7]]
    seen = mask[0, 0] == 0
    assert seen[3].tolist() == [True] * 5 + [True, True, False, True]  # token 4 does not see token 3
    ids, mask, positions, last = tree.suffix_inputs(prefix_len=5)
    assert ids.tolist() == [[9, 8, 9, 7]] and positions.tolist() == [[8, 9, 8, 5]] and last == [1, 2, 3]
    seen = mask[0, 0] == 0
    # row 0's second suffix token: the prefix, its path 1-2-3, its own suffix so far; not row 1's token 4
    assert seen[1].tolist() == [True] * 5 + [True, True, True, False] + [True, True, False, False]
    assert seen[3].tolist() == [True] * 5 + [False] * 4 + [False, False, False, True]  # nothing past the prefix


def test_one_pass_inputs_are_the_two_passes_side_by_side():
    """One pass sees exactly what the tree pass and the suffix pass see, at the same positions."""
    import torch

    tree = JudgedTree.build([[1, 2, 3], [1, 2, 4], []], [[9, 8], [9], [7]])
    tree_ids, tree_mask, tree_positions = tree.tree_inputs(prefix_len=5)
    suffix_ids, suffix_mask, suffix_positions, suffix_last = tree.suffix_inputs(prefix_len=5)
    ids, mask, positions, last = tree.one_pass_inputs(prefix_len=5)
    assert ids.tolist() == [tree_ids[0].tolist() + suffix_ids[0].tolist()]
    assert positions.tolist() == [tree_positions[0].tolist() + suffix_positions[0].tolist()]
    assert last == [4 + i for i in suffix_last]
    seen = mask[0, 0] == 0
    assert torch.equal(seen[:4, :9], tree_mask[0, 0] == 0) and not seen[:4, 9:].any()  # the tree never sees a suffix
    assert torch.equal(seen[4:], suffix_mask[0, 0] == 0)


def test_the_adapter_changes_only_the_rows_it_is_given(tiny_model_dir: Path, tiny_lora_dir: Path) -> None:
    """Rows outside the index run on the plain weights; rows inside as with the adapter everywhere."""
    import torch
    from transformers import AutoModelForCausalLM

    from langchain_toolprm.prm.adapters import plain_lora
    from langchain_toolprm.prm.shared import LoraSwitch

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    lora = plain_lora(str(tiny_lora_dir), "toolprm-prompt-v1")
    assert lora is not None
    switch = LoraSwitch(model, lora[0], lora[1])
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
        with switch.active():
            adapted = model(input_ids=ids).logits
        # One layer only: the rows' hidden states stay apart (no attention mixes them before the head).
        layer = switch.factors[0][0]
        hidden = torch.randn(1, 5, layer.in_features)
        with switch.active(torch.tensor([1, 3])):
            mixed = layer(hidden)
            with pytest.raises(RuntimeError, match="already on"), switch.active(torch.tensor([0])):
                pass
        with switch.active():
            full = layer(hidden)
        base = layer(hidden)
    assert not torch.allclose(plain, adapted)  # the adapter does something here
    assert torch.allclose(mixed[:, [0, 2, 4]], base[:, [0, 2, 4]]) and torch.allclose(mixed[:, [1, 3]], full[:, [1, 3]])
    assert not torch.allclose(base[:, [1, 3]], full[:, [1, 3]])


@pytest.fixture(scope="module")
def context_prm_dir(data_dir: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("context-prm") / "prm"
    summary = train_prm(TrainConfig(data=data_dir, out=out, base=str(tiny_model_dir), prompt="policy", max_steps=2,
                                    batch_size=2, lr=5e-2, threads=1), progress=False)
    assert summary["prompt_version"] == "toolprm-context-v1" and summary["steps"] == 2
    return out


def test_a_trained_context_prm_scores_in_search_as_in_training(context_prm_dir: Path, data_dir: Path,  # noqa: F811
                                                                tiny_model_dir: Path) -> None:
    """Every node's score from the training-time packing equals the search's score of that step."""
    import contextlib

    import torch

    from langchain_toolprm.components import load_prm
    from langchain_toolprm.policy.transformers import TransformersPolicy
    from langchain_toolprm.prm.context import ContextPRM
    from langchain_toolprm.train.model import judged_label_logits, label_token_ids

    policy = TransformersPolicy.from_pretrained(str(tiny_model_dir), format="template")
    prm = load_prm(str(context_prm_dir), policy)
    assert isinstance(prm, ContextPRM) and prm.lm is policy.lm  # one model: the adapter rides on the policy's
    tokenizer = _tokenizer(tiny_model_dir)
    plus, minus = label_token_ids(tokenizer)
    query = load_queries(data_dir)[0]
    packed = pack_context_query(query, PolicyRenderer(tokenizer), "eval", max_tokens=100_000)  # every trajectory
    assert packed is not None and len(packed.targets) > 5 and len(packed.trajectories) > 1
    with torch.inference_mode():
        logits = judged_label_logits(policy.lm.model, packed, "cpu", plain=contextlib.nullcontext,
                                     adapted=prm.switch.active)
    packed_scores = torch.softmax(logits[:, [plus, minus]], dim=-1)[:, 0]
    specs = to_tool_specs(query["tools"])
    grammar = Grammar(specs)
    session = policy.session(query["messages"], specs)
    scoring = prm.session_for(query["messages"], specs, session)
    trajectories = sorted((Trajectory.from_json(t) for t in query["trajectories"]),
                          key=lambda t: ORIGIN_ORDER[t.origin])
    checked = 0
    requests, expected = [], []
    for (nodes, _, _), trajectory in zip(packed.trajectories, trajectories, strict=True):
        states = grammar.walk(trajectory.actions)
        path = list(zip(states, trajectory.actions, strict=False))
        for i, node in enumerate(nodes):
            requests.append((path[:i], states[i], [trajectory.actions[i]]))
            expected.append(scoring.score(*requests[-1])[0])
            assert abs(float(packed_scores[node]) - expected[-1]) < 1e-4
            checked += 1
    assert checked >= len(packed.targets)
    assert scoring.usage.forwards == checked  # one forward pass per judged state: texts and suffixes together
    # Every state of every trajectory at once (prefixes of each other, and paths that part ways): one pass.
    together = scoring.score_many(requests)
    assert scoring.usage.forwards == checked + 1
    assert max(abs(a[0] - b) for a, b in zip(together, expected, strict=True)) < 1e-4
    assert len({round(float(s), 4) for s in packed_scores}) > 1  # trained: the scores are not all one value


def test_candidates_the_policy_already_read_cost_the_prm_their_suffix_only(context_prm_dir: Path, data_dir: Path,  # noqa: F811
                                                                           tiny_model_dir: Path) -> None:
    """After the policy's tree pass over a state's candidates, the PRM feeds no candidate text again."""
    from langchain_toolprm.components import load_prm
    from langchain_toolprm.grammar import StepTag
    from langchain_toolprm.policy.transformers import TransformersPolicy

    policy = TransformersPolicy.from_pretrained(str(tiny_model_dir), format="template")
    prm = load_prm(str(context_prm_dir), policy)
    query = load_queries(data_dir)[0]
    specs = to_tool_specs(query["tools"])
    grammar = Grammar(specs)
    reference = next(Trajectory.from_json(t) for t in query["trajectories"] if t["origin"] == "reference")
    states = grammar.walk(reference.actions)
    path = list(zip(states, reference.actions, strict=False))
    checked = 0
    for i, state in enumerate(states[:-1]):
        decision = grammar.decision(state)
        actions = list(decision.actions)
        if decision.free or len(actions) < 2 or any(a.tag is StepTag.FUNC_NAME for a in actions):
            continue
        fresh = prm.session_for(query["messages"], specs, policy.session(query["messages"], specs))
        want = fresh.score(path[:i], state, actions)
        session = policy.session(query["messages"], specs)
        scoring = prm.session_for(query["messages"], specs, session)
        fmt = session.format
        session.token_logprobs([(fmt.render(state), fmt.continuation(state, a)) for a in actions])
        got = scoring.score(path[:i], state, actions)
        assert got == pytest.approx(want, abs=1e-4)
        suffixes = sum(len(scoring._suffix(a)) for a in actions)
        assert scoring.usage.forwards == 1 and scoring.usage.tokens == suffixes + len(actions)  # + one seam token each
        assert len(session.cache._fed) == 1  # judging what the tree held leaves nothing new to remember
        checked += 1
    assert checked


def test_a_search_with_a_context_prm_spends_a_few_tokens_per_candidate(context_prm_dir: Path, tiny_model_dir: Path,
                                                                       tiny_lora_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The PRM reads the policy's cache: per candidate, its text and suffix only, never the prompt again."""
    from langchain_toolprm import SearchConfig, run_search
    from langchain_toolprm.components import load_policy
    from langchain_toolprm.prm import context
    from langchain_toolprm.prm.prompt import render_context

    states_per_request: list[int] = []
    most = [0]  # tokens the context PRM may feed: each candidate's own text and suffix, and a seam token
    score_many = context._ContextSession.score_many

    def recorded(self, requests):  # type: ignore[no-untyped-def]
        states_per_request.append(len(requests))
        fmt = self.policy.format
        most[0] += sum(len(self.prm.lm.encode(fmt.continuation(state, a))) + len(self._suffix(a)) + 2
                       for _, state, candidates in requests for a in candidates)
        return score_many(self, requests)

    monkeypatch.setattr(context._ContextSession, "score_many", recorded)

    policy = load_policy(str(tiny_model_dir))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    for name, prm in (("context", context_prm_dir), ("generic", tiny_lora_dir)):
        judged_rounds: set[int] = set()
        result = run_search(messages, tools, policy=policy, prm=str(prm), tool_choice="required",
                            config=SearchConfig(num_beams=2, beam_width=3, max_value_tokens=8, aggregation="mean"),
                            on_step=lambda round_, nodes, seen=judged_rounds: seen.update(
                                [round_] if any(n.score is not None for n in nodes) else []))
        assert result.finished and result.calls[0]["name"] == "get_weather"
        if name == "context":  # every beam of a round judged in one pass, never the prompt or the history
            assert result.cost.prm_forwards == len(judged_rounds) == len(states_per_request)
            assert max(states_per_request) == 2, states_per_request
            assert result.cost.prm_tokens <= most[0], (result.cost.prm_tokens, most[0])
        else:  # the generic PRM encodes the conversation in its own format first
            assert result.cost.prm_tokens > len(policy.lm.encode(render_context(messages, to_tool_specs(tools))))


def test_a_context_prm_refuses_to_run_apart_from_its_base_policy(context_prm_dir: Path, tiny_model_dir: Path,
                                                                 tmp_path: Path) -> None:
    from langchain_toolprm.components import load_prm
    from langchain_toolprm.prm.context import ContextPRM
    from unit_tests.conftest import save_tiny_model
    from unit_tests.engine_fakes import TargetPolicy

    with pytest.raises(ValueError, match="reads the policy's own context"):
        load_prm(str(context_prm_dir))  # no policy: it cannot load as a model of its own
    other = save_tiny_model(tmp_path / "other-model")
    from langchain_toolprm.policy.transformers import TransformersPolicy

    with pytest.raises(ValueError, match="reads the policy's own context"):
        load_prm(str(context_prm_dir), TransformersPolicy.from_pretrained(str(other)))
    prm = ContextPRM.from_pretrained(str(context_prm_dir))
    with pytest.raises(ValueError, match="inside a search"):
        prm.session([], [])
    session = TargetPolicy([]).session([], [])
    with pytest.raises(ValueError, match="policy must be that loaded model"):
        prm.session_for([], [], session)
    with pytest.raises(ValueError, match="lora=True"):
        TrainConfig(data=tmp_path, out=tmp_path / "x", prompt="policy", lora=False)


def test_eval_prm_scores_a_context_prm(context_prm_dir: Path, data_dir: Path) -> None:  # noqa: F811
    from langchain_toolprm.train import evaluate_prm

    result = evaluate_prm(str(context_prm_dir), data_dir, progress=False)
    assert result.queries > 0 and result.steps > 0 and 0.0 <= result.step_accuracy <= 1.0


def test_eval_prm_compares_formats_on_the_queries_that_fit_both(context_prm_dir: Path, data_dir: Path,  # noqa: F811
                                                                 tiny_model_dir: Path) -> None:
    """The two formats encode contexts of different lengths: a query that fits one only is left out of both."""
    queries = load_queries(data_dir, "train")
    tokenizer = _tokenizer(tiny_model_dir)
    plain = {p.query_id: p.context_len for p in pack_queries(queries, tokenizer, "eval", 10_000, 10_000)}
    context = {p.query_id: p.context_len for p in pack_context_queries(queries, tokenizer, "eval", 10_000, 10_000)}

    def split_at(cap: int) -> tuple[list[str], list[str]]:
        return ([q for q in plain if max(plain[q], context[q]) <= cap],
                [q for q in plain if min(plain[q], context[q]) <= cap < max(plain[q], context[q])])

    # A cap that some query fits in both formats, and another in one format only.
    cap = next(c for c in sorted({*plain.values(), *context.values()}) if all(split_at(c)))
    fits_both = split_at(cap)[0]
    # A sequence cap at which the formats keep different trajectories of some query: both judge those both kept.
    def kept(max_tokens: int) -> dict[str, tuple[set[int], set[int]]]:
        plain_kept = {p.query_id: set(p.kept) for p in pack_queries(queries, tokenizer, "eval", cap, max_tokens)}
        context_kept = {p.query_id: set(p.kept)
                        for p in pack_context_queries(queries, tokenizer, "eval", cap, max_tokens)}
        return {q: (plain_kept[q], context_kept[q]) for q in fits_both}

    tight = next(n for n in range(128, 4096, 64) if any(a & b and a != b for a, b in kept(n).values()))
    results = evaluate_prms([str(tiny_model_dir), str(context_prm_dir)], data_dir, split="train",
                            max_context_tokens=cap, max_tokens=tight, progress=False)
    judged = [q for q, (a, b) in kept(tight).items() if a & b]
    assert [r.query_ids for r in results] == [judged, judged]
    assert (results[0].steps, results[0].trajectories) == (results[1].steps, results[1].trajectories)
    assert "Not comparable" not in prm_eval_tables(results)
    fewer = results[1].model_copy(update={"steps": results[0].steps - 1})
    assert "Not comparable" in prm_eval_tables([results[0], fewer])
    with pytest.raises(ValueError, match="fits every model"):
        evaluate_prms([str(tiny_model_dir), str(context_prm_dir)], data_dir, split="train", max_context_tokens=16,
                      progress=False)
