"""End to end on a tiny random model loaded through the real loading code."""

import json
import math

import pytest
import torch

from langchain_toolprm import GenerativePRM, RulePRM, SearchConfig, StepTag, TransformersPolicy, run_search
from langchain_toolprm.lm import CausalLM, Draw, PrefixCache, Usage
from langchain_toolprm.tools import to_tool_specs
from unit_tests.conftest import save_tiny_model

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]},
                                         "days": {"type": "integer"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "multiply", "description": "Multiply", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}},
]
Q = "What is the weather in Paris?"


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return CausalLM.from_pretrained(str(tiny_model_dir))


def full_logprobs(lm, root_ids, tail_ids):
    ids = torch.tensor([root_ids + tail_ids])
    with torch.inference_mode():
        logits = lm.model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return [lp[len(root_ids) + i - 1, t].item() for i, t in enumerate(tail_ids)]


def test_cached_scoring_matches_full_forward(lm):
    root = lm.prefix("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    cache = PrefixCache(lm, root, Usage())
    base = cache.get('<tool_call>\n{"name": "get_weather", "arguments": {')
    conts = ['"city": "Paris"', "}}", '"unit": "c"']
    got = lm.token_logprobs(base, conts)
    for cont, lps in zip(conts, got, strict=True):
        tail = lm.encode(base.tail + cont)
        expected = full_logprobs(lm, root.ids, tail)
        assert lps == pytest.approx(expected[len(expected) - len(lps):], abs=1e-4)
    # extending from a cached neighbour gives the same numbers as encoding from scratch
    longer = cache.get(base.tail + '"city": "Paris", ')
    fresh = lm.extend(root, longer.tail)
    assert torch.allclose(longer.last_hidden, fresh.last_hidden, atol=1e-5)


def test_a_prompt_feeds_only_what_no_recent_prompt_shares(lm):
    """An agent's next turn, and every search's side reader: the prompt seen before is not fed again."""
    lm, alone = CausalLM(lm.model, lm.tokenizer), CausalLM(lm.model, lm.tokenizer)  # nothing remembered yet
    turn = "<|im_start|>system\nYou call tools.<|im_end|>\n<|im_start|>user\nweather in Paris?<|im_end|>\n"
    first, again, next_turn = Usage(), Usage(), Usage()
    root = lm.prefix(turn + "<|im_start|>assistant\n", first)
    assert first.tokens == len(root.ids)
    assert lm.prefix(turn + "<|im_start|>assistant\n", again).kv is root.kv
    assert again.tokens == 0
    later = turn + "<|im_start|>assistant\nsunny<|im_end|>\n<|im_start|>assistant\n"
    grown = lm.prefix(later, next_turn)
    assert grown.ids[:len(root.ids)] == root.ids
    assert next_turn.tokens == len(grown.ids) - len(root.ids)
    # the same keys, values and next-token state as encoding the longer prompt alone
    fresh = alone.prefix(later)
    assert torch.allclose(grown.last_hidden, fresh.last_hidden, atol=1e-5)
    for (k, v), (fk, fv) in zip(grown.kv, fresh.kv, strict=True):
        assert torch.allclose(k, fk, atol=1e-5) and torch.allclose(v, fv, atol=1e-5)
    # a prompt that is a strict start of a remembered one feeds its last token, whose state is not kept
    short = Usage()
    assert lm.prefix(turn, short).ids == lm.encode(turn) and short.tokens == 1


def test_a_prompt_used_again_is_the_last_to_be_forgotten(lm):
    """A side reader's prompt, read at every search, stays while the searches' own prompts come and go."""
    lm = CausalLM(lm.model, lm.tokenizer)
    lm.roots.size = 2
    side, *asked = [f"<|im_start|>system\n{text}<|im_end|>\n<|im_start|>assistant\n"
                    for text in ("Read the request.", "weather in Paris?", "time in Rome?")]
    lm.prefix(side)
    for prompt in asked:
        lm.prefix(prompt)
        again = Usage()
        lm.prefix(side, again)
        assert again.tokens == 0


def test_tree_scoring_matches_full_forward(lm):
    """Continuations of several tails in one tree pass give the numbers of one full forward each."""
    root = lm.prefix("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    head = '<tool_call>\n{"name": "get_weather", "arguments": {'
    items = [("", "<tool_call>"), ("", "Hello"), (head, '"city": "Paris"'), (head, "}}"),
             (head + '"city": "Paris", ', '"unit": "c"'), (head + '"city": "Paris"', ", "), (head, '"unit": "c"')]
    for max_nodes in (1024, 12):  # one pass, and a tree split between items
        usage = Usage()
        got = lm.tree_logprobs(root, items, usage, max_nodes=max_nodes)
        assert usage.forwards == 1 or max_nodes < 1024
        for (tail, cont), lps in zip(items, got, strict=True):
            full = lm.encode(tail + cont)
            expected = full_logprobs(lm, root.ids, full)
            assert lps, (tail, cont)
            assert lps == pytest.approx(expected[len(expected) - len(lps):], abs=1e-4)
    # from a cached prefix the items share, as the policy session calls it: the same numbers as from the root
    base = PrefixCache(lm, root, Usage()).get(head)
    from_base = lm.tree_logprobs(base, items[2:4])
    from_root = lm.tree_logprobs(root, items[2:4])
    for a, b in zip(from_base, from_root, strict=True):
        assert a == pytest.approx(b, abs=1e-4)



def test_extending_many_prefixes_in_one_pass_matches_extending_each(lm):
    """Every beam's new state in one pass: the same keys, values and last hidden state as one pass each."""
    from langchain_toolprm.lm import PrefixCache, Usage

    root = lm.prefix("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    near = lm.extend(root, '<tool_call>\n{"name": "multiply"')
    tails = ['<tool_call>\n{"name": "multiply", "arguments": {"a": 2', '<tool_call>\n{"name": "add"', "hello there"]
    usage = Usage()
    together = lm.extend_many([(root, tail, [near]) for tail in tails], usage)
    assert usage.forwards == 1
    for tail, got in zip(tails, together, strict=True):
        want = lm.extend(root, tail)
        assert got.ids == want.ids and got.tail == tail
        assert torch.allclose(got.last_hidden, want.last_hidden, atol=1e-4)
        for (k, v), (wk, wv) in zip(got.kv, want.kv, strict=True):
            assert k.shape == wk.shape and torch.allclose(k, wk, atol=1e-4) and torch.allclose(v, wv, atol=1e-4)
    cache = PrefixCache(lm, root, Usage())
    first = cache.get_many([tails[0], tails[1], tails[0]])
    assert cache.usage.forwards == 1 and first[0] is first[2]
    again = cache.get_many(tails[:2])
    assert again[0] is first[0] and again[1] is first[1] and cache.usage.forwards == 1  # cached: nothing fed


def test_a_tree_pass_leaves_its_rows_cached(lm):
    """The next round's states are rows of this round's tree: read from its keys and values, not fed again."""
    from langchain_toolprm.lm import PrefixCache, Usage

    root = lm.prefix("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    cache = PrefixCache(lm, root, Usage())
    items = [("<tool_call>\n", '{"name": "multiply"'), ("<tool_call>\n", '{"name": "add"'), ("", "hello")]
    lm.tree_logprobs(root, items, cache.usage, keep=cache.remember)
    assert cache.usage.forwards == 1
    held = cache.get('<tool_call>\n{"name": "add"')
    assert cache.usage.forwards == 1  # nothing fed: the tree held all of it
    before = cache.usage.tokens
    beyond = cache.get('<tool_call>\n{"name": "multiply", "arguments": {')
    # One pass from where the tree's row ends: only the tokens past it (and one re-read at the seam).
    assert cache.usage.forwards == 2 and cache.usage.tokens - before <= len(lm.encode(', "arguments": {')) + 1
    for got in (held, beyond):
        want = lm.extend(root, got.tail)
        assert got.ids == want.ids and torch.allclose(got.last_hidden, want.last_hidden, atol=1e-4)
        for (k, v), (wk, wv) in zip(got.kv, want.kv, strict=True):
            assert torch.allclose(k, wk, atol=1e-4) and torch.allclose(v, wv, atol=1e-4)


def test_a_prm_judgement_leaves_the_next_history_almost_fed(lm):
    """The next round's PRM history is a judged step plus its label: the step is not fed again."""
    from langchain_toolprm.grammar import Action, Grammar

    prm = GenerativePRM(lm)
    specs = to_tool_specs(TOOLS)
    grammar = Grammar(specs)
    state = grammar.initial()
    first = [Action(StepTag.FUNC_NAME, name="get_weather"), Action(StepTag.FUNC_NAME, name="multiply")]
    later = grammar.apply(state, first[0])
    second = [Action(StepTag.ARG_NAME, name="city"), Action(StepTag.ARG_NAME, name="days")]
    spent, scores = {}, {}
    for keeps in (True, False):
        session = prm.session([{"role": "user", "content": Q}], specs)
        if not keeps:
            session.cache.remember = lambda tree: None  # type: ignore[method-assign]
        session.score_many([((), state, first)])
        before = session.usage.tokens
        scores[keeps] = session.score_many([(((state, first[0]),), later, second)])[0]
        spent[keeps] = session.usage.tokens - before
    assert scores[True] == pytest.approx(scores[False], abs=1e-4)
    step = len(lm.encode(session._texts((), state, first)[1][0]))
    assert spent[True] <= spent[False] - step + 1  # one seam token re-read where the kept step ends


def test_judged_logits_of_many_prefixes_in_one_pass_match_full_forwards(lm):
    """Texts after different cached prefixes, with or without a suffix, in one pass: the numbers of full forwards.

    The labels' logits come from the head's rows for them alone, and every group reads its own prefix.
    """
    import contextlib

    from langchain_toolprm.lm import Usage

    root = lm.prefix("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    called = lm.extend(root, '<tool_call>\n{"name": ')
    plus = lm.single_token_id(" +")
    token_ids = [plus, lm.single_token_id(" -"), 7]
    groups = [(root, ["<tool_call>", '{"name": "multiply"', "hello"], [[], [], [plus, 9]]),
              (called, ['"multiply"', '"add"'], [[], [5]])]
    usage = Usage()
    got = lm.judged_logits(groups, token_ids, lambda rows: contextlib.nullcontext(), usage)
    assert usage.forwards == 1 and [g.shape for g in got] == [(3, 3), (2, 3)]
    for (base, texts, suffixes), rows in zip(groups, got, strict=True):
        for row, text, suffix in zip(rows, texts, suffixes, strict=True):
            ids = torch.tensor([root.ids + lm.encode(base.tail + text) + suffix])
            with torch.inference_mode():
                full = lm.model(input_ids=ids).logits[0, -1].float()
            assert row.tolist() == pytest.approx(full[token_ids].tolist(), abs=1e-4)


def test_greedy_sampling_matches_argmax(lm):
    root = lm.prefix("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    (sample,) = lm.sample(root, 1, temperature=0.0, max_new_tokens=5)
    ids = list(root.ids)
    for token in sample.token_ids:
        with torch.inference_mode():
            assert int(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()) == token
        ids.append(token)
    assert math.isfinite(sample.logprob)


def test_a_banned_opening_cannot_start_the_sample(lm, monkeypatch):
    """A text answer is drawn from what the call openings leave over: its first token opens none."""
    brace = lm.tokenizer.convert_tokens_to_ids("{")
    logits = lm._logits

    def prefer_brace(hidden):
        out = logits(hidden).clone()
        out[..., brace] += 100.0  # the model "wants" to open a JSON call
        return out

    monkeypatch.setattr(lm, "_logits", prefer_brace)
    root = lm.prefix("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    (free,) = lm.sample(root, 1, temperature=0.0, max_new_tokens=3)
    assert free.token_ids[0] == brace
    (banned,) = lm.sample(root, 1, temperature=0.0, max_new_tokens=3, ban_first=["{", "```"])
    text = lm.tokenizer.decode([banned.token_ids[0]]).lstrip()
    assert banned.token_ids[0] != brace and not text.startswith(("{", "`"))
    # white space first does not open the way: the mask holds until the row writes something
    newline = lm.tokenizer.convert_tokens_to_ids("Ċ")

    def newline_then_brace(hidden):
        out = logits(hidden).clone()
        out[..., brace] += 100.0
        out[..., newline] += 200.0 if len(calls) == 0 else 0.0
        calls.append(1)
        return out

    calls: list[int] = []
    monkeypatch.setattr(lm, "_logits", newline_then_brace)
    (spaced,) = lm.sample(root, 1, temperature=0.0, max_new_tokens=3, ban_first=["{"])
    assert spaced.token_ids[0] == newline and spaced.token_ids[1] != brace
    # nor does a token that holds an opening behind another character (the 0.5B, kept from `{`, wrote `({"`)
    (holder,) = (i for i in range(len(lm.tokenizer)) if lm.decode([i]).strip() == '[{"')

    def prefer_holder(hidden):
        out = logits(hidden).clone()
        out[..., holder] += 100.0
        return out

    monkeypatch.setattr(lm, "_logits", prefer_holder)
    (held,) = lm.sample(root, 1, temperature=0.0, max_new_tokens=3, ban_first=['{"'])
    assert held.token_ids[0] != holder
    # and an answer writes no chat-control token, first or later (the 0.5B opened with <|im_start|>)
    start = lm.tokenizer.convert_tokens_to_ids("<|im_start|>")

    def prefer_start(hidden):
        out = logits(hidden).clone()
        out[..., start] += 100.0
        return out

    monkeypatch.setattr(lm, "_logits", prefer_start)
    (free,) = lm.sample(root, 1, temperature=0.0, max_new_tokens=3)
    assert free.token_ids[0] == start
    (answer,) = lm.sample(root, 1, temperature=0.0, max_new_tokens=3, ban_first=["{"])
    assert start not in answer.token_ids and start in lm.control_ids



def test_no_call_allowed_still_answers_in_words(tiny_policy, monkeypatch):
    """Under tool_choice="none" (an agent's last turn) the tools leave the prompt, but a model that wants to
    call again must still not open its answer with a call written as text: the answer is what the call
    openings leave over, as when the search chose no call itself."""
    lm = tiny_policy.lm
    brace = lm.tokenizer.convert_tokens_to_ids("{")
    end = lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    (word,) = lm.encode(" the")
    logits = lm._logits

    def prefer_brace(hidden):
        out = logits(hidden).clone()
        out[..., brace] += 100.0
        out[..., end] += 90.0  # and, denied its call, it would rather say nothing
        out[..., word] += 80.0
        return out

    monkeypatch.setattr(lm, "_logits", prefer_brace)
    config = SearchConfig(strategy="greedy", answer_in_text=True, max_new_tokens=4)
    result = run_search(Q, TOOLS, policy=tiny_policy, tool_choice="none", config=config)
    assert result.finished and not result.calls
    assert not result.text.lstrip().startswith(("{", "[", "<tool_call>", "```")), result.text
    assert result.text.lstrip().startswith("the")  # an answer says something before it may end
    untooled = run_search(Q, [], policy=tiny_policy, config=config)  # no tools at all: nothing to keep apart
    assert untooled.text.lstrip().startswith("{")

def test_sample_many_pads_prefixes_of_different_lengths(lm):
    """Rows of different lengths and roots, decoded together, match each one decoded alone."""
    short = lm.prefix("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    long_root = lm.prefix("<|im_start|>system\nYou answer in one word.<|im_end|>\n<|im_start|>user\nhello there"
                          "<|im_end|>\n<|im_start|>assistant\n")
    longer = PrefixCache(lm, long_root, Usage()).get('{"name": "multiply", "arguments": {"a": ')
    draws = [Draw(short, 2, 6), Draw(longer, 1, 4), Draw(long_root, 1, 3)]
    together = lm.sample_many(draws, temperature=0.0)
    assert [len(samples) for samples in together] == [2, 1, 1]
    for draw, samples in zip(draws, together, strict=True):
        (alone,) = lm.sample(draw.base, 1, temperature=0.0, max_new_tokens=draw.max_new_tokens)
        for sample in samples:
            assert sample.token_ids == alone.token_ids
            assert sample.logprob == pytest.approx(alone.logprob, abs=1e-3)
            assert len(sample.token_ids) <= draw.max_new_tokens


def test_sample_many_keeps_each_draws_random_source(lm):
    """Draws with their own generators, sampled together, draw what each draws alone with the same seed."""
    first = lm.prefix("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    second = lm.prefix("<|im_start|>user\nwhat is 12 times 7?<|im_end|>\n<|im_start|>assistant\n")

    def draws():
        return [Draw(first, 3, 8, generator=torch.Generator().manual_seed(1)),
                Draw(second, 2, 12, generator=torch.Generator().manual_seed(2))]

    together = lm.sample_many(draws(), temperature=1.5)
    alone = [lm.sample_many([draw], temperature=1.5)[0] for draw in draws()]
    assert [[s.token_ids for s in samples] for samples in together] == \
        [[s.token_ids for s in samples] for samples in alone]


def test_greedy_rows_ride_in_a_sampling_batch_without_changing_its_draws(lm):
    """A greedy draw decoded with sampled ones is the temperature-0 decode, and the samples are unchanged."""
    base = lm.prefix("<|im_start|>user\nwhat is 12 times 7?<|im_end|>\n<|im_start|>assistant\n")

    def sampled():
        return Draw(base, 3, 10, generator=torch.Generator().manual_seed(3))

    together = lm.sample_many([Draw(base, 1, 10, greedy=True), sampled()], temperature=1.5)
    (mode,) = lm.sample(base, 1, temperature=0.0, max_new_tokens=10)
    assert together[0][0].token_ids == mode.token_ids
    assert [s.token_ids for s in together[1]] == [s.token_ids for s in lm.sample_many([sampled()], temperature=1.5)[0]]


@pytest.mark.parametrize("strategy", ["beam", "greedy", "unconstrained", "best_of_n", "majority"])
def test_every_strategy_runs_on_a_real_model(tiny_policy, strategy):
    config = SearchConfig(strategy=strategy, num_beams=2, beam_width=3, num_samples=3, max_new_tokens=24,
                          max_value_tokens=12)
    result = run_search(Q, TOOLS, policy=tiny_policy, prm=RulePRM(), config=config, tool_choice="required"
                        if strategy in ("beam", "greedy") else None)
    assert result.strategy == strategy
    assert result.cost.policy_tokens > 0 and result.cost.wall_seconds > 0
    specs = {s.name: s for s in to_tool_specs(TOOLS)}
    if strategy in ("beam", "greedy") and result.finished:
        assert result.calls, "tool_choice='required' must yield a call"
        for call in result.calls:
            assert specs[call["name"]].argument_errors(call["arguments"]) == []
        assert {StepTag.FUNC_NAME, StepTag.TOTAL_FINISH} <= result.trace.tags()


def test_seeded_search_is_reproducible(tiny_policy):
    config = SearchConfig(num_beams=2, beam_width=3, max_value_tokens=8, seed=7)
    a = run_search(Q, TOOLS, policy=tiny_policy, prm=RulePRM(), config=config, tool_choice="get_weather")
    b = run_search(Q, TOOLS, policy=tiny_policy, prm=RulePRM(), config=config, tool_choice="get_weather")
    assert a.calls == b.calls


def test_a_prm_never_asked_reads_nothing(lm):
    """The PRM's context is encoded at its first judgement: a turn that leaves every decision to the policy
    (here `answer` 0, with no call asked for) costs the PRM no token."""
    from langchain_toolprm.grammar import Action, Grammar
    from langchain_toolprm.search.config import Guidance

    prm, specs = GenerativePRM(lm), to_tool_specs(TOOLS)
    session = prm.session([{"role": "user", "content": Q}], specs)
    assert session.usage.tokens == 0
    session.score_many([((), Grammar(specs).initial(), [Action(StepTag.FUNC_NAME, name="get_weather")])])
    assert session.usage.tokens > 0
    config = SearchConfig(num_beams=2, beam_width=2, max_value_tokens=8, guidance=Guidance(answer=0.0))
    result = run_search(Q, TOOLS, policy=TransformersPolicy(lm), prm=prm, config=config)
    assert result.cost.prm_tokens == 0 and result.cost.prm_candidates == 0


def test_generative_prm_scores_in_unit_interval(tiny_model_dir):
    lm = CausalLM.from_pretrained(str(tiny_model_dir))
    if lm.single_token_id(" +") is None or lm.single_token_id(" -") is None:
        with pytest.raises(ValueError, match=r"single|one token"):
            GenerativePRM(lm)
        return
    prm = GenerativePRM(lm)
    policy = TransformersPolicy(lm)
    result = run_search(Q, TOOLS, policy=policy, prm=prm, tool_choice="required",
                        config=SearchConfig(num_beams=1, beam_width=2, max_value_tokens=8))
    scores = [n.score for n in result.trace.walk() if n.score is not None]
    assert scores and all(0.0 <= s <= 1.0 for s in scores)
    assert result.cost.prm_forwards > 0 and result.cost.prm_candidates >= len(scores)


def test_template_without_tools_gets_a_tool_system_prompt(tmp_path):
    folder = save_tiny_model(tmp_path / "no-template", chat_template=None)
    policy = TransformersPolicy.from_pretrained(str(folder))
    specs = to_tool_specs(TOOLS)
    prompt = policy.render_prompt([{"role": "user", "content": Q}], specs)
    assert '"get_weather"' in prompt and '"multiply"' in prompt and Q in prompt


def test_opening_mass_counts_every_token_that_opens_a_call(lm):
    """P(call) at the answer's start sums every token that starts an opening, not one spelling of it."""
    root = lm.prefix("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    probs = torch.softmax(lm._logits(root.last_hidden[None])[0], -1)
    texts = [lm.decode([i]).lstrip() for i in range(len(lm.tokenizer))]
    braces = [i for i, t in enumerate(texts) if t.startswith("{")]
    assert len(braces) > 1  # "{" and longer tokens such as '{"' exist in the tiny vocabulary
    assert math.exp(lm.opening_logprob(root, ["{"])) == pytest.approx(float(probs[braces].sum()), rel=1e-4)
    every = math.exp(lm.opening_logprob(root, ["<tool_call>", "```json", "{", "["]))
    single = math.exp(lm.token_logprobs(root, ["<tool_call>"])[0][0])
    assert single < every <= 1.0


def test_a_prompt_longer_than_the_context_is_refused(tiny_policy):
    from langchain_toolprm.lm import ContextLengthError

    tools = [{"name": f"tool_{i}", "description": "does things " * 10, "parameters": {"type": "object", "properties": {
        "x": {"type": "string", "description": "a value"}}}} for i in range(100)]
    assert tiny_policy.lm.max_context == 2048
    with pytest.raises(ContextLengthError, match=r"The prompt is [\d,]+ tokens, but .* reads at most 2,048"):
        run_search("hello", tools, policy=tiny_policy, config=SearchConfig(strategy="greedy"))


VALUE_SCHEMAS = {
    "string": {"type": "string", "minLength": 1},
    "integer": {"type": "integer"},
    "bounded number": {"type": "number", "minimum": 0, "maximum": 10},
    "array": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
    "closed object": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"enum": ["a", "b"]}},
                      "required": ["x"], "additionalProperties": False},
    "union": {"anyOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "string"}}]},
}


@pytest.mark.parametrize("kind", sorted(VALUE_SCHEMAS))
def test_values_are_decoded_under_their_schema(tiny_policy, kind):
    """A random model finishes every required value: its tokens are masked to the value's schema as they are drawn."""
    from jsonschema import Draft202012Validator

    schema = VALUE_SCHEMAS[kind]
    tool = {"name": "f", "parameters": {"type": "object", "properties": {"p": schema}, "required": ["p"]}}
    for strategy in ("greedy", "beam"):
        for seed in range(3):
            config = SearchConfig(strategy=strategy, seed=seed, max_value_tokens=32)
            result = run_search("call f", [tool], policy=tiny_policy, tool_choice="required", config=config)
            assert result.finished, (strategy, seed, result.partial)
            assert Draft202012Validator(schema).is_valid(result.calls[0]["arguments"]["p"])


def test_constrained_samples_are_valid_json_of_the_schema(lm):
    from jsonschema import Draft202012Validator

    from langchain_toolprm.search.values import value_end

    schema = VALUE_SCHEMAS["closed object"]
    grammar = lm.value_grammar(schema)
    assert grammar is not None
    base = lm.prefix('<|im_start|>assistant\n<tool_call>\n{"name": "f", "arguments": {"p":')
    samples = lm.sample_many([Draw(base, 6, 64, value_end, grammar=grammar)], temperature=1.0,
                             generator=torch.Generator().manual_seed(0))[0]
    finished = [s for s in samples if s.finished]
    assert finished
    for sample in finished:
        assert sample.text.startswith(" ")  # the space the formats write after "name":
        assert Draft202012Validator(schema).is_valid(json.loads(sample.text))


def test_value_grammar_lets_a_number_end_where_the_model_writes_on(lm):
    """A real model ends ``10`` by writing ``,`` or ``}``: the grammar must allow that, or it writes digits forever."""

    def accepts(schema, text):
        matcher = lm.value_grammar(schema).matcher()
        return all(matcher.consume_token(t) for t in lm.encode(text)) and not matcher.is_error()

    integer = {"type": "integer"}
    assert accepts(integer, " 10") and accepts(integer, ' 10, "b": 2}}') and accepts(integer, " 10}}")
    assert not accepts(integer, " 10x") and not accepts(integer, ' "10"') and not accepts(integer, "10")
    closed = VALUE_SCHEMAS["closed object"]
    assert accepts(closed, ' {"x": 1, "y": "a"}') and not accepts(closed, ' {"x": 1, "z": 2}')


@pytest.mark.parametrize("schema", [
    {"type": "string", "minLength": 3},
    {"type": "array", "items": {"type": "object", "properties": {"強aī𦶮": {"type": "integer", "minimum": 9,
                                                                          "maximum": 12}},
                                "required": ["強aī𦶮"]}, "minItems": 2},
    {"type": "object", "properties": {"ćŊ翶Í坿0": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                                      "b": {"type": "boolean"}}, "required": ["ćŊ翶Í坿0", "b"]},
], ids=["string", "array of objects", "unicode keys"])
def test_a_value_the_token_limit_cuts_is_closed_by_its_grammar(lm, schema):
    """Two chosen tokens cannot write these values; forced keys are free and the grammar closes the rest."""
    from jsonschema import Draft202012Validator

    from langchain_toolprm.search.values import value_end

    base = lm.prefix('<|im_start|>assistant\n<tool_call>\n{"name": "f", "arguments": {"p":')
    samples = lm.sample_many([Draw(base, 4, 2, value_end, grammar=lm.value_grammar(schema))], temperature=1.0,
                             generator=torch.Generator().manual_seed(0))[0]
    for sample in samples:
        assert sample.finished, sample.text
        assert Draft202012Validator(schema).is_valid(json.loads(sample.text)), sample.text
