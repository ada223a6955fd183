"""The served policy and PRM against a fake completions server backed by the tiny model."""

from __future__ import annotations

import math

import httpx
import pytest

from langchain_toolprm import SearchConfig, ToolPRMChatModel, run_search
from langchain_toolprm.components import load_policy
from langchain_toolprm.grammar import Grammar
from langchain_toolprm.policy.served import ServedPolicy
from langchain_toolprm.prm.generative import GenerativePRM
from langchain_toolprm.prm.served import ServedPRM
from langchain_toolprm.served import CompletionsClient, ServedLM, ServedModelError, ServerSettings
from langchain_toolprm.tools import to_tool_specs
from unit_tests.served_fakes import FakeCompletionsServer

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}
MULTIPLY = {"type": "function", "function": {
    "name": "multiply", "description": "Multiply two integers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"]}}}
QUESTION = [{"role": "user", "content": "what is 12 times 7?"}]


@pytest.fixture(scope="module")
def server(tiny_policy):  # type: ignore[no-untyped-def]
    return FakeCompletionsServer(tiny_policy.lm.model)


def served_lm(tiny_policy, server, model="tiny", **options):  # type: ignore[no-untyped-def]
    settings = ServerSettings(base_url="http://fake/v1", model=model, backoff=0.0, **options)
    return ServedLM(settings, tokenizer=tiny_policy.lm.tokenizer,
                    client=CompletionsClient(settings, transport=server.transport()))


def test_reference_parsing():
    s = ServerSettings.parse("openai+http://127.0.0.1:8000/v1/?tokenizer=qwen2.5-0.5b&max_concurrency=4#prm")
    assert (s.base_url, s.model, s.tokenizer, s.max_concurrency) == ("http://127.0.0.1:8000/v1", "prm",
                                                                      "qwen2.5-0.5b", 4)
    with pytest.raises(ValueError, match="names no model"):
        ServerSettings.parse("openai+http://127.0.0.1:8000/v1")
    with pytest.raises(ValueError, match="unknown option"):
        ServerSettings.parse("openai+http://127.0.0.1:8000/v1?temperature=2#m")
    with pytest.raises(ValueError, match="expected"):
        ServerSettings.parse("openai+ftp://host/v1#m")


def test_trie_logprobs_match_the_in_process_model(tiny_policy, server):
    lm = served_lm(tiny_policy, server)
    local = tiny_policy.lm
    root_text = "<|im_start|>user\nweather in paris<|im_end|>\n<|im_start|>assistant\n"
    items = [("", '<tool_call>\n{"name": "get_weather"'), ("", '<tool_call>\n{"name": "multiply"'),
             ('<tool_call>\n{"name": ', '"multiply"'), ("abc", "d")]
    before = len(server.requests)
    got = lm.client.run(lm.tree_logprobs(local.encode(root_text), items))
    want = local.tree_logprobs(local.prefix(root_text), items)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4)
    # One request per distinct context: the two calls share their opening tokens.
    contexts = {tuple(r["prompt"]) for r in server.requests[before:]}
    assert len(contexts) == len(server.requests) - before
    assert all(r["max_tokens"] == 1 and "echo" not in r and "prompt_logprobs" not in r
               for r in server.requests[before:])


def test_opening_logprob_sums_the_same_tokens_as_the_in_process_model(tiny_policy, server, monkeypatch):
    from langchain_toolprm.served import lm as served_module

    monkeypatch.setattr(served_module, "LOGPROB_IDS_PER_REQUEST", 3)  # several requests, as vLLM's 128 limit makes
    lm = served_lm(tiny_policy, server)
    local = tiny_policy.lm
    root_text = "<|im_start|>user\nweather in paris<|im_end|>\n<|im_start|>assistant\n"
    openings = ["<tool_call>", "{", "```json"]
    before = len(server.requests)
    got = lm.client.run(lm.opening_logprob(local.encode(root_text), openings))
    assert got == pytest.approx(local.opening_logprob(local.prefix(root_text), openings), abs=1e-4)
    assert len(server.requests) - before == -(-len(local.opening_token_ids(openings)) // 3)


def test_served_greedy_search_equals_in_process(tiny_policy, server, monkeypatch):
    from langchain_toolprm.constrained import ValueGrammars

    # The fake server runs no value grammars (the real one does: integration_tests/test_served.py), nor here.
    monkeypatch.setattr(ValueGrammars, "available", classmethod(lambda cls: False))
    policy = ServedPolicy(served_lm(tiny_policy, server))
    config = SearchConfig(strategy="greedy", max_value_tokens=12)
    for tools, messages in (([WEATHER, MULTIPLY], QUESTION),
                            ([WEATHER], [{"role": "user", "content": "weather in paris?"}])):
        served = run_search(messages, tools, policy=policy, config=config, tool_choice="any")
        local = run_search(messages, tools, policy=tiny_policy, config=config, tool_choice="any")
        assert served.calls and served.calls == local.calls
        assert served.logprob == pytest.approx(local.logprob, abs=1e-3)
        assert served.cost.policy_forwards > 0


def test_served_beam_gives_schema_valid_calls(tiny_policy, server, scripted_prm):
    policy = ServedPolicy(served_lm(tiny_policy, server))
    result = run_search(QUESTION, [WEATHER, MULTIPLY], policy=policy, prm=scripted_prm(prefer="multiply"),
                        config=SearchConfig(strategy="beam", num_beams=2, beam_width=2, max_value_tokens=8,
                                            max_calls=1))
    specs = {s.name: s for s in to_tool_specs([WEATHER, MULTIPLY])}
    assert result.finished
    for call in result.calls:
        assert specs[call["name"]].argument_errors(call["arguments"]) == []


def test_samples_are_cut_by_the_stop_function_and_seeded(tiny_policy, server):
    lm = served_lm(tiny_policy, server)
    root = lm.encode("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")

    def first_two_chars(text: str) -> int | None:
        return 2 if len(text) >= 2 else None

    samples = lm.client.run(lm.sample(root, 3, temperature=1.0, max_new_tokens=6, stop=first_two_chars, seed=5))
    again = lm.client.run(lm.sample(root, 3, temperature=1.0, max_new_tokens=6, stop=first_two_chars, seed=5))
    assert [s.token_ids for s in samples] == [s.token_ids for s in again]
    for sample in samples:
        if sample.finished:
            assert len(sample.text) == 2
        assert sample.logprob <= 0
    greedy = lm.client.run(lm.sample(root, 2, temperature=0.0, max_new_tokens=4))
    assert len(greedy) == 2 and greedy[0] == greedy[1]
    assert server.requests[-1]["n"] == 1  # greedy rows are asked for once


def test_served_prm_matches_the_in_process_prm(tiny_policy, server):
    served = ServedPRM(served_lm(tiny_policy, server, model="prm"))
    local = GenerativePRM(tiny_policy.lm)
    policy = ServedPolicy(served_lm(tiny_policy, server))
    result = run_search(QUESTION, [MULTIPLY], policy=policy, config=SearchConfig(strategy="greedy",
                                                                                  max_value_tokens=8))
    specs = to_tool_specs([MULTIPLY])
    grammar = Grammar(specs)
    actions = grammar.actions_for_calls(result.calls) or []
    steps = tuple(zip(grammar.walk(actions), actions, strict=False))
    got = served.session(QUESTION, specs).score_path(steps)
    want = local.session(QUESTION, specs).score_path(steps)
    assert got == pytest.approx(want, abs=1e-4)
    assert all(0 < p < 1 for p in got) and not any(math.isnan(p) for p in got)
    assert {r["model"] for r in server.requests[-len(steps):]} == {"prm"}
    # A search round's states all at once (`score_many`): the same scores, one request per candidate.
    requests = [(steps[:i], state, [action]) for i, (state, action) in enumerate(steps)]
    sent = len(server.requests)
    together = served.session(QUESTION, specs).score_many(requests)
    assert [row[0] for row in together] == pytest.approx(want, abs=1e-4)
    assert len(server.requests) - sent == len(steps)


def test_tokenizer_defaults_to_the_lora_parent(tiny_policy, server, monkeypatch):
    from langchain_toolprm.served import lm as served_module

    asked = []
    monkeypatch.setattr(served_module, "load_tokenizer", lambda ref: asked.append(ref) or tiny_policy.lm.tokenizer)
    settings = ServerSettings(base_url="http://fake/v1", model="prm")
    ServedLM(settings, client=CompletionsClient(settings, transport=server.transport()))
    assert asked == ["tiny"]
    missing = ServerSettings(base_url="http://fake/v1", model="nope")
    with pytest.raises(ServedModelError, match="does not serve 'nope'"):
        ServedLM(missing, client=CompletionsClient(missing, transport=server.transport()))


def test_transient_failures_are_retried(tiny_policy, server):
    lm = served_lm(tiny_policy, server, retries=2)
    server.failures[:] = [httpx.ConnectError("refused"), 503]
    found = lm.client.run(lm.next_logprobs(lm.encode("hello"), [1, 2]))
    assert set(found) == {1, 2} and not server.failures


def test_errors_name_the_server_and_are_not_retried_when_permanent(tiny_policy, server):
    lm = served_lm(tiny_policy, server, retries=3)
    server.failures[:] = [httpx.ConnectError("refused")] * 4
    with pytest.raises(ServedModelError, match=r"http://fake/v1 is unreachable .* after 4 attempt"):
        lm.client.run(lm.next_logprobs(lm.encode("hello"), [1]))
    server.failures[:] = [400, None]
    with pytest.raises(ServedModelError, match="answered 400"):
        lm.client.run(lm.next_logprobs(lm.encode("hello"), [1]))
    assert server.failures == [None]  # a bad request is not sent again
    server.failures.clear()


def test_a_server_that_goes_away_mid_search_raises_and_returns_no_calls(tiny_policy, server):
    """Requests succeed, then the server is gone: the search raises; nothing half-built comes back."""
    model = ToolPRMChatModel(policy=ServedPolicy(served_lm(tiny_policy, server, retries=1)),
                             search=SearchConfig(strategy="greedy", max_value_tokens=8)).bind_tools([MULTIPLY])
    server.failures[:] = [None] * 3 + [httpx.ConnectError("gone")] * 50
    with pytest.raises(ServedModelError, match="unreachable"):
        model.invoke("what is 12 times 7?")
    server.failures.clear()


def test_closed_port_gives_a_clear_error():
    settings = ServerSettings(base_url="http://127.0.0.1:9/v1", model="m", retries=1, backoff=0.0,
                              connect_timeout=1.0)
    client = CompletionsClient(settings)
    with pytest.raises(ServedModelError, match=r"127\.0\.0\.1:9/v1 is unreachable .* is the server running"):
        client.run(client.complete({"prompt": [1], "max_tokens": 1}))
    client.close()


def test_references_load_served_models(tiny_model_dir, server, monkeypatch):
    from langchain_toolprm import components
    from langchain_toolprm.served import client as client_module

    real = client_module.CompletionsClient.__init__

    def with_fake(self, settings, transport=None):  # type: ignore[no-untyped-def]
        real(self, settings, transport=server.transport())

    monkeypatch.setattr(client_module.CompletionsClient, "__init__", with_fake)
    ref = f"openai+http://fake/v1?tokenizer={tiny_model_dir}#tiny"
    policy = load_policy(ref)
    assert isinstance(policy, ServedPolicy) and policy.name == "tiny"
    prm = components.load_prm(f"openai+http://fake/v1?tokenizer={tiny_model_dir}#prm")
    assert isinstance(prm, ServedPRM)
    components._policy.cache_clear()
    components._prm.cache_clear()


def test_values_are_constrained_on_the_server_by_the_in_process_grammar(tiny_policy, server):
    from langchain_toolprm.constrained import value_grammar_text

    schema = {"type": "integer"}
    for options, sent in (({}, {"grammar": value_grammar_text(schema)}), ({"structured_outputs": False}, None)):
        lm = served_lm(tiny_policy, server, **options)
        server.requests.clear()
        lm.client.run(lm.sample(lm.encode("a = "), 2, temperature=1.0, max_new_tokens=3, seed=1, schema=schema))
        lm.client.run(lm.sample(lm.encode("a = "), 1, temperature=1.0, max_new_tokens=3, seed=1))
        assert [r.get("structured_outputs") for r in server.requests] == [sent, None]
    assert ServerSettings.parse("openai+http://h:1/v1?structured_outputs=false#m").structured_outputs is False


def test_a_server_that_refuses_the_grammar_samples_freely_with_a_warning(tiny_policy, server):
    lm = served_lm(tiny_policy, server)
    schema = {"type": "integer", "minimum": 3}
    server.requests.clear()
    server.failures[:] = [400]
    with pytest.warns(RuntimeWarning, match="refused to constrain values"):
        found = lm.client.run(lm.sample(lm.encode("a = "), 1, temperature=1.0, max_new_tokens=3, seed=1,
                                        schema=schema))
    assert len(found) == 1 and not server.failures
    lm.client.run(lm.sample(lm.encode("a = "), 1, temperature=1.0, max_new_tokens=3, seed=1, schema=schema))
    # The refused request was answered 400 before the fake logged it: two unconstrained requests follow.
    assert [r.get("structured_outputs") for r in server.requests] == [None, None]
    server.failures[:] = [500] * 5  # a server error is no refusal: it is retried, then raised
    with pytest.raises(ServedModelError, match="answered 500"):
        lm.client.run(lm.sample(lm.encode("a = "), 1, temperature=1.0, max_new_tokens=3, schema={"type": "number"}))
    server.failures.clear()


def test_a_stream_cut_halfway_is_retried_whole(tiny_policy, server):
    """The connection drops after the first chunks: the attempt is thrown away and the request sent again."""

    class Cut(httpx.AsyncByteStream):
        def __init__(self, body: bytes) -> None:
            self.lines = body.split(b"\n\n")

        async def __aiter__(self):  # type: ignore[no-untyped-def]
            for line in self.lines[:2]:
                yield line + b"\n\n"
            raise httpx.ReadError("connection reset")

    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        response = server.handle(request)
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(200, stream=Cut(response.content), headers=response.headers)
        return response

    settings = ServerSettings(base_url="http://fake/v1", model="tiny", backoff=0.0)
    lm = ServedLM(settings, tokenizer=tiny_policy.lm.tokenizer,
                  client=CompletionsClient(settings, transport=httpx.MockTransport(handle)))
    whole = served_lm(tiny_policy, server)
    prompt = lm.encode("a = ")
    got = lm.client.run(lm.sample(prompt, 2, temperature=1.0, max_new_tokens=4, seed=5))
    assert len(calls) == 2
    assert got == whole.client.run(whole.sample(prompt, 2, temperature=1.0, max_new_tokens=4, seed=5))
