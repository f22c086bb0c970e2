"""Values written in model files: numbers, Brian2 quantities (``-60*mV``) and expressions of a model's
constants (``n_excitatory + n_inhibitory``), evaluated without Python's ``eval`` on untrusted text.

An expression is parsed with :mod:`ast` and only arithmetic, comparisons, names and calls of a few
NumPy functions are walked; names are the model's constants, Brian2's units and, where given, arrays
such as ``i`` (an input's index) for per-element expressions.
"""

from __future__ import annotations

import ast
import functools
import operator
from typing import Any, Mapping

import numpy as np

__all__ = ["evaluate", "ExpressionError", "units_namespace", "names_in"]


class ExpressionError(ValueError):
    """An expression that cannot be evaluated; the message says why."""


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUNCTIONS = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs, "sin": np.sin, "cos": np.cos,
              "floor": np.floor, "ceil": np.ceil, "int": lambda v: np.asarray(v).astype(int),
              "clip": np.clip, "minimum": np.minimum, "maximum": np.maximum}


@functools.lru_cache(maxsize=1)
def units_namespace() -> dict[str, Any]:
    """Brian2's units by name (``mV``, ``ms``, ``Hz``, ``nS``...)."""
    from brian2.units import allunits
    from brian2.units.fundamentalunits import Unit

    # By display name (Hz, mV) and by the module's names (hertz, metre, msecond): repr() gives the latter.
    namespace = {str(unit): unit for unit in allunits.all_units}
    namespace.update({name: unit for name, unit in vars(allunits).items() if isinstance(unit, Unit)})
    namespace.update({"second": namespace["s"], "pi": np.pi, "True": True, "False": False})
    return namespace


def names_in(text: str) -> set[str]:
    """The names an expression uses."""
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not an expression: {text!r} ({exc.msg})") from None
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def evaluate(text: Any, names: Mapping[str, Any]) -> Any:
    """The value of ``text`` (a number passes through) with ``names`` and Brian2's units in scope."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return text
    if not isinstance(text, str):
        raise ExpressionError(f"expected a number or an expression, got {text!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not an expression: {text!r} ({exc.msg})") from None
    scope = {**units_namespace(), **names}
    try:
        with np.errstate(all="ignore"):
            return _walk(tree.body, scope)
    except ExpressionError:
        raise
    except Exception as exc:  # Brian2's DimensionMismatchError, ZeroDivisionError, ...
        raise ExpressionError(f"{text!r}: {exc}") from None


def _walk(node: ast.AST, scope: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in scope:
            raise ExpressionError(f"unknown name {node.id!r}")
        return scope[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_walk(node.left, scope), _walk(node.right, scope))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand, scope))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return np.logical_not(_walk(node.operand, scope))
    if isinstance(node, ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        values = [_walk(v, scope) for v in node.values]
        out = values[0]
        for value in values[1:]:
            out = combine(out, value)
        return out
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left, out = _walk(node.left, scope), True
        for op, right_node in zip(node.ops, node.comparators):
            right = _walk(right_node, scope)
            out = np.logical_and(out, _COMPARE[type(op)](left, right))
            left = right
        return out
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and not node.keywords):
        return _FUNCTIONS[node.func.id](*(_walk(a, scope) for a in node.args))
    raise ExpressionError(f"{ast.unparse(node)!r} is not allowed here (numbers, names, units, arithmetic, "
                          f"comparisons and {', '.join(_FUNCTIONS)})")
