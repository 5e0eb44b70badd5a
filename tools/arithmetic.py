"""`calculate`: arithmetic on numbers, safely (no `eval` of arbitrary code)."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from agentkit.tool import tool

__all__ = ["calculate"]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_EXPONENT = 100
_MAX_DIGITS = 4300
"""Decimal digits a power may have (Python's own limit for turning an int into text).

Only a power can grow a number faster than its expression grows: without
this cap, `(((10**100)**100)**100)**100` asks for a number of 100 million
digits, which holds the event loop (`calculate` runs inline) for minutes.
"""


def _evaluate(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))  # type: ignore[no-any-return]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(node, left, right)
        return _BINARY[type(node.op)](left, right)  # type: ignore[no-any-return]
    raise ValueError(f"unsupported syntax: {ast.unparse(node)!r}; use numbers, + - * / // % ** and parentheses")


def _check_power(node: ast.BinOp, base: float | int, exponent: float | int) -> None:
    """Refuse a power whose exponent, or whose result's size, is over the caps (before computing it)."""
    if abs(exponent) > _MAX_EXPONENT:
        raise ValueError(f"exponent {exponent} is too large (at most {_MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        digits = math.ceil(abs(base).bit_length() * exponent * math.log10(2))
        if digits > _MAX_DIGITS:
            raise ValueError(
                f"{ast.unparse(node)} is too large: about {digits} digits (at most {_MAX_DIGITS}); "
                "calculate gives a float, up to about 1.8e308"
            )


@tool(inline=True, examples=[{"expression": "12 * (3 + 4)"}, {"expression": "2 ** 10 / 8"}])
def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression.

    Args:
        expression: Numbers with + - * / // % ** and parentheses, e.g. "12 * (3 + 4)".
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    value = float(_evaluate(tree))
    if not math.isfinite(value):
        raise ValueError(f"{expression!r} has no finite value")
    return value
