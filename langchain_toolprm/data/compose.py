"""Training queries made from other queries, for the decisions small policies get wrong.

BFCL ``live_*`` holds few parallel cases and no conversation that goes on after a tool result, yet
"one more call, or finish?", "call, or answer in text?" and "after the result, answer or call
again?" are where a 0.5B policy fails (docs/benchmarks.md). Each function here makes one kind of
such query from single-turn sources, without touching the evaluation categories:

- `compose_parallel`: "do X. Also, do Y (and Z)", with every part's call as reference, so stopping
  early and calling once too often are both wrong at ``TOTAL_FINISH`` and ``FUNC_NAME``.
- `compose_repeated`: the same, with parts that call one function ("X for A. Also, X for B").
- `remove_reference_tools`: a relevant query whose called tools are taken away (the
  xlam-irrelevance recipe): the right answer is no call, while similar-looking tools remain.
- `follow_ups`: the conversation goes on after the reference calls and their tool results; the
  right next step is a text answer, or, for a composed query answered in part, the remaining calls.

Callers pass one split's examples, so a made query never mixes the train and test splits.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_toolprm.data.sources import Example, reference_calls
from langchain_toolprm.tools import to_tool_specs

__all__ = [
    "called_tool",
    "compose_parallel",
    "compose_repeated",
    "distinct_calls",
    "follow_ups",
    "join_requests",
    "merged_tools",
    "remove_reference_tools",
]

_JOINERS = (" Also, ", " And also: ", " Additionally, ", " After that, ", " On top of that, ")
_RESULTS = (
    lambda name, args: {"status": "success", "function": name, "result": f"{name} completed"},
    lambda name, args: {"result": {"request": args, "ok": True}},
    lambda name, args: f"{name} returned: done ({json.dumps(args, ensure_ascii=False)[:80]})",
)


def _single_call_user_query(example: Example) -> bool:
    return (
        len(example.reference) == 1
        and len(example.messages) >= 1
        and example.messages[-1]["role"] == "user"
        and all(m["role"] in ("user", "system") for m in example.messages)
    )


def join_requests(texts: Sequence[str], rng: random.Random) -> str:
    """Several requests as one message ("do X. Also, do Y"), joined as a user would write them."""
    text = texts[0].strip()
    for part in texts[1:]:
        part = part.strip()
        text += rng.choice(_JOINERS) + part[:1].lower() + part[1:]
    return text


def merged_tools(tool_lists: Iterable[Sequence[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    """Several requests' tools in one list, or None when two define one name differently.

    A composed tool list could not hold both definitions, so such parts are not combined.
    """
    tools: dict[str, dict[str, Any]] = {}
    for tool_list in tool_lists:
        for tool in tool_list:
            if tools.setdefault(tool["name"], tool) != tool:
                return None
    return list(tools.values())


def distinct_calls(calls: Sequence[Any]) -> bool:
    """No two of these reference calls are the same (a request asked twice is not a parallel one)."""
    return len({json.dumps(call, sort_keys=True) for call in calls}) == len(calls)


def called_tool(tools: Sequence[dict[str, Any]], call: dict[str, Any]) -> str:
    """The definition of the tool a reference call (BFCL form) calls, as a key that groups equal ones."""
    (name,) = call
    return json.dumps([t for t in tools if t["name"] == name], sort_keys=True)


def _joined(parts: Sequence[Example], rng: random.Random, cid: str, source: str) -> Example | None:
    """One query asking for every part's call, or None when the parts cannot share a tool list."""
    tools = merged_tools(p.tools for p in parts)
    calls = [p.reference[0] for p in parts]
    if tools is None or not distinct_calls(calls):
        return None
    text = join_requests([p.messages[-1]["content"] for p in parts], rng)
    system = [m for m in parts[0].messages if m["role"] == "system"]
    rng.shuffle(calls)
    return Example(cid + "+".join(p.id for p in parts), source, [*system, {"role": "user", "content": text}],
                   tools, calls, meta={"parts": [p.id for p in parts]})


def _draw(pools: Sequence[Sequence[Example]], n: int, rng: random.Random, max_parts: int, source: str
          ) -> list[Example]:
    """Up to ``n`` queries, each joining 2 to ``max_parts`` parts drawn from one of ``pools``."""
    pools = [pool for pool in pools if len(pool) >= 2]
    out: list[Example] = []
    for _ in range(20 * n):
        if len(out) == n or not pools:
            break
        # no draw for a lone pool: compose_parallel's queries stay those its earlier builds made
        pool = pools[0] if len(pools) == 1 else rng.choice(pools)
        parts = rng.sample(pool, min(len(pool), rng.randint(2, max(2, max_parts))))
        example = _joined(parts, rng, f"{source}-{len(out)}:", source)
        if example is not None:
            out.append(example)
    return out


def compose_parallel(examples: Sequence[Example], n: int, seed: int = 0, max_parts: int = 2) -> list[Example]:
    """Parallel-call queries made of 2 to ``max_parts`` single-call ones, all calls as reference.

    The parts are drawn at random, so they mostly call different functions (BFCL's
    ``parallel_multiple`` shape); the composed example is its own split group.
    """
    rng = random.Random(seed)
    return _draw([[e for e in examples if _single_call_user_query(e)]], n, rng, max_parts, "composed")


def compose_repeated(examples: Sequence[Example], n: int, seed: int = 0, max_parts: int = 2) -> list[Example]:
    """Parallel-call queries whose 2 to ``max_parts`` parts call the same function with other values.

    BFCL's ``parallel`` shape ("the weather in Paris, and in Rome"): after the first call the same
    function is right again, so the decision to go on cannot lean on a function not yet used. Parts
    come from single-call queries that call one and the same tool definition.
    """
    rng = random.Random(seed)
    groups: dict[str, list[Example]] = {}
    for example in examples:
        if _single_call_user_query(example):
            groups.setdefault(called_tool(example.tools, example.reference[0]), []).append(example)
    return _draw(list(groups.values()), n, rng, max_parts, "repeated")


def remove_reference_tools(examples: Sequence[Example], n: int, seed: int = 0) -> list[Example]:
    """Irrelevance queries: relevant requests with the tools they call removed.

    When no tool is left, tools of another query stand in, so the model still sees a tool list and
    must decide that none fits (a query with no tools at all teaches nothing).
    """
    rng = random.Random(seed)
    pool = [e for e in examples if e.reference]
    rng.shuffle(pool)
    out: list[Example] = []
    for example in pool[: n]:
        called = {name for call in example.reference for name in call}
        kept = [t for t in example.tools if t["name"] not in called]
        if not kept:
            donor = rng.choice(pool)
            kept = [t for t in donor.tools if t["name"] not in called][:3]
        if not kept:
            continue
        out.append(Example(f"removed:{example.id}", "removed-tool", list(example.messages), kept, [],
                           group=example.group, meta={"removed": sorted(called)}))
    return out


def _tool_turns(calls: Sequence[dict[str, Any]], rng: random.Random, prefix: str) -> list[dict[str, Any]]:
    """An assistant turn with ``calls`` and one tool result each, as a LangChain conversation holds them."""
    ids = [f"{prefix}{i}" for i in range(len(calls))]
    turn = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "id": i, "function": {"name": c["name"], "arguments": c["arguments"]}}
        for i, c in zip(ids, calls, strict=True)]}
    results = []
    for call_id, call in zip(ids, calls, strict=True):
        body = rng.choice(_RESULTS)(call["name"], call["arguments"])
        content = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        results.append({"role": "tool", "content": content, "tool_call_id": call_id, "name": call["name"]})
    return [turn, *results]


def follow_ups(examples: Sequence[Example], n: int, seed: int = 0) -> list[Example]:
    """Conversations that go on after tool results: what the assistant must do next.

    For a query whose reference calls were all made, the next step is the answer in text (reference
    "no call"). For a parallel query of which only some calls were made, the next step is the rest.
    Both come from the query's own reference, so the labels stay exact.
    """
    rng = random.Random(seed)
    pool = [e for e in examples if e.reference and e.messages and e.messages[-1]["role"] == "user"]
    rng.shuffle(pool)
    out: list[Example] = []
    for example in pool[: n]:
        calls = reference_calls(example.reference, to_tool_specs(example.tools))
        if len(calls) != len(example.reference):
            continue
        done = len(calls) if len(calls) == 1 or rng.random() < 0.5 else rng.randint(1, len(calls) - 1)
        order = list(range(len(calls)))
        rng.shuffle(order)
        made = [calls[i] for i in order[:done]]
        rest = [example.reference[i] for i in order[done:]]
        turns = _tool_turns(made, rng, prefix=f"call_{len(out)}_")
        out.append(Example(f"follow-up:{example.id}", "follow-up", [*example.messages, *turns], example.tools,
                           rest, group=example.group, meta={"made": len(made), "left": len(rest)}))
    return out
