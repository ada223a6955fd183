"""The agent-loop check: `create_agent` with `ToolPRMChatModel` and the demo's tools on everyday questions.

Each question needs one or two calls; the agent must answer in text (a call written as text is no
answer), with no call repeated. Prints,
per question, the calls made, whether one repeated, the model turns, the tokens the models read
(policy and PRM, every turn), the answer and the seconds, and writes them as JSON:

    python benchmarks/agent_loop.py --prm default --output benchmarks/results/agent_loop.json

``--no-root-memory`` makes the models forget every prompt (`lm.RootMemory`): each turn encodes its
whole conversation and tools again, as before session 27.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage

from langchain_toolprm import ToolPRMChatModel
from langchain_toolprm.components import load_policy, load_prm
from langchain_toolprm.demo import DEMO_TOOLS
from langchain_toolprm.formats import parse_calls_lenient

TOOL_NAMES = {t.name for t in DEMO_TOOLS}

QUESTIONS = [
    "How many kilometers is a 26.2 mile marathon?",
    "What is 17.5% of 2,340?",
    "What date is 45 days after 2026-03-10?",
    "How many days are there between 2026-01-01 and 2026-07-04?",
    "Convert 72 fahrenheit to celsius, and 5 gallons to liters.",
]


def run_question(agent: Any, question: str) -> dict[str, Any]:
    started = time.perf_counter()
    result = agent.invoke({"messages": [("user", question)]})
    seconds = time.perf_counter() - started
    messages = result["messages"]
    calls = [(c["name"], json.dumps(c["args"], sort_keys=True)) for m in messages if isinstance(m, AIMessage)
             for c in m.tool_calls]
    last = messages[-1]
    return {
        "question": question,
        "calls": [f"{name}({args})" for name, args in calls],
        "repeated_call": len(calls) != len(set(calls)),
        "model_turns": sum(isinstance(m, AIMessage) for m in messages),
        "tokens": sum((m.usage_metadata or {}).get("total_tokens", 0) for m in messages if isinstance(m, AIMessage)),
        "tool_results": [str(m.content)[:80] for m in messages if isinstance(m, ToolMessage)],
        "answered_in_text": isinstance(last, AIMessage) and not last.tool_calls and bool(str(last.content).strip())
        and not any(c["name"] in TOOL_NAMES for c in parse_calls_lenient(str(last.content))),
        "answer": str(last.content)[:200],
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--prm", default="default")
    parser.add_argument("--aggregation", default=None, help="search aggregation (default: the package's)")
    parser.add_argument("--max-tool-turns", type=int, default=None, help="default: the package's")
    parser.add_argument("--no-root-memory", action="store_true", help="encode every turn's prompt whole")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    extra: dict[str, Any] = {"aggregation": args.aggregation} if args.aggregation else {}
    if args.max_tool_turns is not None:
        extra["max_tool_turns"] = args.max_tool_turns
    model = ToolPRMChatModel(policy=args.policy, prm=args.prm, max_tokens=96, **extra)
    agent = create_agent(model, tools=list(DEMO_TOOLS))
    if args.no_root_memory:  # the model loads these same (cached) objects
        policy = load_policy(args.policy)
        for lm in (getattr(policy, "lm", None), getattr(load_prm(args.prm, policy), "lm", None)):
            if lm is not None:
                lm.roots.size = 0
    rows = []
    for question in QUESTIONS:
        row = run_question(agent, question)
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    ok = sum(r["answered_in_text"] and not r["repeated_call"] and bool(r["calls"]) for r in rows)
    print(f"{ok}/{len(rows)} answered in text after their calls, no call repeated; "
          f"{sum(r['seconds'] for r in rows):.0f} s and {sum(r['tokens'] for r in rows):,} tokens in all")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"settings": vars(args) | {"output": str(args.output)}, "rows": rows},
                                          indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
