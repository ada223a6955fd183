"""What the policy answers after a right tool result, with the tool list in its prompt and without.

`run_search` writes a text answer on the conversation without the tools (`search.run._text_answer`);
before, the tools stayed in the prompt and the call openings were masked. This prints both answers
for the agent check's one-call questions, each given its right call and tool result:

    python benchmarks/text_answers.py --output benchmarks/results/session16/text_answers.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from langchain_toolprm import load_policy
from langchain_toolprm.demo import DEMO_TOOLS
from langchain_toolprm.messages import to_chat_messages
from langchain_toolprm.tools import to_tool_specs

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("How many kilometers is a 26.2 mile marathon?", "convert_units",
     {"value": 26.2, "from_unit": "mile", "to_unit": "kilometer"}, "26.2 mile = 42.16 kilometer"),
    ("What is 17.5% of 2,340?", "calculator", {"expression": "0.175*2340"}, "409.5"),
    ("What date is 45 days after 2026-03-10?", "add_days", {"date": "2026-03-10", "days": 45}, "2026-04-24 (Friday)"),
    ("How many days are there between 2026-01-01 and 2026-07-04?", "days_between",
     {"start": "2026-01-01", "end": "2026-07-04"}, "184 days"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    policy = load_policy(args.policy)
    specs = to_tool_specs(list(DEMO_TOOLS))
    rows = []
    for question, name, arguments, result in CASES:
        chat = to_chat_messages([HumanMessage(question),
                                 AIMessage("", tool_calls=[{"name": name, "args": arguments, "id": "c1"}]),
                                 ToolMessage(result, tool_call_id="c1")])
        row: dict[str, Any] = {"question": question, "tool_result": result}
        for label, bound in (("with_tools", specs), ("without_tools", [])):
            session = policy.session(chat, bound, seed=0)
            row[label] = session.sample_answer(args.max_new_tokens, session.format.openings()).text
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
