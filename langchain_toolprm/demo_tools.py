"""The ``toolprm demo`` agent's tools: a calculator, a unit converter and date arithmetic, all safe to run.

Real tools with small, exact answers, so a demo run shows whether the search picked the right call and
values, not whether a tool was lucky; the calculator evaluates arithmetic only, never arbitrary code.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
from collections.abc import Callable
from typing import Any, Literal

from langchain_core.tools import BaseTool, tool

__all__ = ["DEMO_TOOLS", "add_days", "calculator", "convert_units", "days_between"]

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"sqrt": math.sqrt, "round": round, "abs": abs, "min": min, "max": max}


def _evaluate(node: ast.AST) -> Any:
    """Arithmetic only: numbers, + - * / // % **, parentheses and a few functions; nothing else runs."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        return _FUNCTIONS[node.func.id](*[_evaluate(a) for a in node.args])
    raise ValueError(f"unsupported expression element: {ast.dump(node)[:60]}")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as "(12 + 30) * 1.5" or "sqrt(2) / 4"."""
    try:
        value = _evaluate(ast.parse(expression, mode="eval"))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError) as error:
        return f"Error: cannot evaluate {expression!r}: {error}"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


Unit = Literal["kilometer", "mile", "meter", "foot", "kilogram", "pound", "celsius", "fahrenheit", "liter",
               "gallon"]
_TO_BASE: dict[str, tuple[str, float]] = {  # unit -> (dimension, size in the dimension's base unit)
    "kilometer": ("length", 1000.0), "mile": ("length", 1609.344), "meter": ("length", 1.0),
    "foot": ("length", 0.3048), "kilogram": ("mass", 1.0), "pound": ("mass", 0.45359237),
    "liter": ("volume", 1.0), "gallon": ("volume", 3.785411784),
}


@tool
def convert_units(value: float, from_unit: Unit, to_unit: Unit) -> str:
    """Convert a quantity between units of length, mass, volume or temperature."""
    if from_unit == to_unit:
        return f"{value:g} {to_unit}"
    temperatures = {"celsius", "fahrenheit"}
    if {from_unit, to_unit} <= temperatures:
        result = value * 9 / 5 + 32 if from_unit == "celsius" else (value - 32) * 5 / 9
        return f"{value:g} {from_unit} = {result:.4g} {to_unit}"
    if from_unit in temperatures or to_unit in temperatures or _TO_BASE[from_unit][0] != _TO_BASE[to_unit][0]:
        return f"Error: cannot convert {from_unit} to {to_unit} (different kinds of quantity)."
    result = value * _TO_BASE[from_unit][1] / _TO_BASE[to_unit][1]
    return f"{value:g} {from_unit} = {result:.6g} {to_unit}"


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text.strip())


@tool
def add_days(date: str, days: int) -> str:
    """Add a number of days (negative to go back) to a date written as YYYY-MM-DD; gives the new date and weekday."""
    try:
        result = _date(date) + dt.timedelta(days=days)
    except (ValueError, OverflowError) as error:
        return f"Error: {error}"
    return f"{result.isoformat()} ({result.strftime('%A')})"


@tool
def days_between(start: str, end: str) -> str:
    """Count the days from one date to another, both written as YYYY-MM-DD."""
    try:
        return f"{(_date(end) - _date(start)).days} days"
    except ValueError as error:
        return f"Error: {error}"


DEMO_TOOLS: list[BaseTool] = [calculator, convert_units, add_days, days_between]
