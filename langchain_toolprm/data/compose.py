"""Training queries made from other queries, for the decisions small policies get wrong.

BFCL ``live_*`` holds few parallel cases and no conversation that goes on after a tool result, yet
"one more call, or finish?", "call, or answer in text?" and "after the result, answer or call
again?" are where a 0.5B policy fails (docs/benchmarks.md). Each function here makes one kind of
such query from single-turn sources, without touching the evaluation categories:

- `compose_parallel`: "do X. Also, do Y (and Z)", with every part's call as reference, so stopping
  early and calling once too often are both wrong at ``TOTAL_FINISH`` and ``FUNC_NAME``.
- `remove_reference_tools`: a relevant query whose called tools are taken away (the
  xlam-irrelevance recipe): the right answer is no call, while similar-looking tools remain.
- `follow_ups`: the conversation goes on after the reference calls and their tool results; the
  right next step is a text answer, or, for a composed query answered in part, the remaining calls.

Callers pass one split's examples, so a made query never mixes the train and test splits.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from langchain_toolprm.data.sources import Example, reference_calls
from langchain_toolprm.tools import to_tool_specs

__all__ = ["compose_parallel", "follow_ups", "remove_reference_tools"]

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


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def compose_parallel(examples: Sequence[Example], n: int, seed: int = 0, max_parts: int = 2) -> list[Example]:
    """Parallel-call queries made of 2 to ``max_parts`` single-call ones, all calls as reference.

    Parts whose tools share a name with a different definition are not combined (the composed tool
    list could not hold both); the composed example is its own split group.
    """
    rng = random.Random(seed)
    pool = [e for e in examples if _single_call_user_query(e)]
    out: list[Example] = []
    tries = 0
    while len(out) < n and len(pool) >= 2 and tries < 20 * n:
        tries += 1
        parts = rng.sample(pool, min(len(pool), rng.randint(2, max(2, max_parts))))
        tools: dict[str, dict[str, Any]] = {}
        clash = False
        for part in parts:
            for tool in part.tools:
                clash = clash or (tool["name"] in tools and tools[tool["name"]] != tool)
                tools.setdefault(tool["name"], tool)
        references = [json.dumps(p.reference, sort_keys=True) for p in parts]
        if clash or len(set(references)) < len(parts):
            continue
        text = parts[0].messages[-1]["content"].strip()
        for part in parts[1:]:
            text += rng.choice(_JOINERS) + _lower_first(part.messages[-1]["content"].strip())
        system = [m for m in parts[0].messages if m["role"] == "system"]
        calls = [p.reference[0] for p in parts]
        rng.shuffle(calls)
        cid = f"composed-{len(out)}:" + "+".join(p.id for p in parts)
        out.append(Example(cid, "composed", [*system, {"role": "user", "content": text}], list(tools.values()),
                           calls, meta={"parts": [p.id for p in parts]}))
    return out


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
