"""An agent with a few real Python tools (calculator, unit conversion, date arithmetic), end to end.

    python examples/agent_with_tools.py

`create_toolprm_agent` builds the LangGraph tool loop; each model turn is a PRM-guided beam search over
the tools' schemas, so every call is well-formed for the tool that runs it.
"""

from __future__ import annotations

import ast
import datetime as dt
import operator
import time
from typing import Literal

from langchain_core.tools import tool

from langchain_toolprm import create_toolprm_agent

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    raise ValueError("only numbers and + - * / ** are allowed")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. "17 * 23" or "(120 - 35) / 5"."""
    try:
        return f"{_eval(ast.parse(expression, mode='eval').body):g}"
    except (SyntaxError, ValueError, ZeroDivisionError) as error:
        return f"Error: {error}"


_METERS = {"kilometer": 1000.0, "mile": 1609.344, "meter": 1.0, "foot": 0.3048}
_KILOGRAMS = {"kilogram": 1.0, "pound": 0.45359237}


@tool
def convert_units(value: float, from_unit: Literal["kilometer", "mile", "meter", "foot", "kilogram", "pound"],
                  to_unit: Literal["kilometer", "mile", "meter", "foot", "kilogram", "pound"]) -> str:
    """Convert a length or a mass from one unit to another."""
    for table in (_METERS, _KILOGRAMS):
        if from_unit in table and to_unit in table:
            return f"{value:g} {from_unit} = {value * table[from_unit] / table[to_unit]:.4g} {to_unit}"
    return f"Error: cannot convert {from_unit} to {to_unit}"


@tool
def add_days(date: str, days: int) -> str:
    """The date (YYYY-MM-DD) a number of days after another date, with its weekday."""
    try:
        result = dt.date.fromisoformat(date) + dt.timedelta(days=days)
    except ValueError as error:
        return f"Error: {error}"
    return f"{result.isoformat()}, a {result.strftime('%A')}"


agent = create_toolprm_agent(
    "qwen2.5-coder-0.5b-instruct",
    [calculator, convert_units, add_days],
    prm="rules",
    system_prompt="Use the tools for arithmetic, unit conversions and dates, then answer in one sentence.",
    max_tool_turns=1,  # after the tool result, answer in text
    num_beams=2,
    beam_width=4,
    max_tokens=64,
)

QUESTIONS = [
    "What is 17 times 23?",
    "How many pounds is 5 kilograms?",
    "What date is 90 days after 2025-03-01?",
]

for question in QUESTIONS:
    started = time.perf_counter()
    result = agent.invoke({"messages": [("user", question)]})
    print(f"\nQ: {question}")
    for message in result["messages"][1:]:
        if message.type == "ai" and message.tool_calls:
            for call in message.tool_calls:
                score = message.response_metadata["toolprm"]["score"]
                print(f"   call   {call['name']}({call['args']})  prm {score}")
        elif message.type == "tool":
            print(f"   result {message.content}")
    print(f"A: {result['messages'][-1].content}   ({time.perf_counter() - started:.1f} s)")
