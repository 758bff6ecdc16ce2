"""Interpret a bound filter AST over one segment's columns, vectorised with numpy.

Dynamic-field (`$meta`) values follow SQL-null semantics: a missing key, or a value of another
type than the literal it is compared with, makes the comparison false.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from functools import reduce
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .filter_expr import And, Compare, Const, Expr, InList, Like, Name, Not, Or, Scalar, Truthy

BoolArray = npt.NDArray[np.bool_]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class ColumnSource(Protocol):
    """What the evaluator reads: typed scalar columns and `$meta` key columns of one segment."""

    @property
    def rows(self) -> int: ...

    def column(self, name: str) -> npt.NDArray[Any]: ...

    def meta_values(self, key: str) -> npt.NDArray[np.object_]:
        """One Python value (or None when the key is missing) per row."""
        ...


def evaluate(expr: Expr, source: ColumnSource) -> BoolArray:
    """A boolean mask with one entry per row of the segment."""
    if isinstance(expr, And):
        return reduce(np.logical_and, (evaluate(e, source) for e in expr.items))
    if isinstance(expr, Or):
        return reduce(np.logical_or, (evaluate(e, source) for e in expr.items))
    if isinstance(expr, Not):
        return np.logical_not(evaluate(expr.item, source))
    if isinstance(expr, Compare):
        return _compare(expr, source)
    if isinstance(expr, InList):
        mask = _in_list(expr, source)
        return np.logical_not(mask) if expr.negate else mask
    if isinstance(expr, Like):
        mask = _like(expr, source)
        return np.logical_not(mask) if expr.negate else mask
    return _truthy(expr, source)


def _is_meta(operand: Name | Const) -> bool:
    return isinstance(operand, Name) and operand.key is not None


def _values(operand: Name | Const, source: ColumnSource) -> Any:
    if isinstance(operand, Const):
        value = operand.value
        if isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _INT64_MAX:
            return float(value)
        return value
    if operand.key is not None:
        return source.meta_values(operand.key)
    return source.column(operand.name)


def _tag(value: Any) -> tuple[str, Any] | None:
    """A type-aware key so that True never equals 1 and 1 equals 1.0."""
    if isinstance(value, bool | np.bool_):
        return ("b", bool(value))
    if isinstance(value, int | float | np.integer | np.floating):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    return None


def _py_compare(op: str, left: Any, right: Any) -> bool:
    lt, rt = _tag(left), _tag(right)
    if lt is None or rt is None or lt[0] != rt[0]:
        return False
    if lt[0] == "b" and op not in {"==", "!="}:
        return False
    if lt[0] == "n":
        return bool(_OPS[op](left, right))
    return bool(_OPS[op](lt[1], rt[1]))


def _compare(expr: Compare, source: ColumnSource) -> BoolArray:
    left, right = _values(expr.left, source), _values(expr.right, source)
    n = source.rows
    if _is_meta(expr.left) or _is_meta(expr.right):
        lefts = left if isinstance(left, np.ndarray) else [left] * n
        rights = right if isinstance(right, np.ndarray) else [right] * n
        return np.fromiter(
            (_py_compare(expr.op, a, b) for a, b in zip(lefts, rights, strict=True)), dtype=bool, count=n
        )
    result = _OPS[expr.op](left, right)
    return np.broadcast_to(np.asarray(result, dtype=bool), (n,)).copy()


def _in_list(expr: InList, source: ColumnSource) -> BoolArray:
    values = _values(expr.operand, source)
    n = source.rows
    wanted = {_tag(v) for v in expr.values}
    if isinstance(values, np.ndarray) and values.dtype != np.object_:
        literals: list[Scalar] = list(expr.values)
        if not literals:
            return np.zeros(n, dtype=bool)
        return np.isin(values, np.asarray(literals, dtype=values.dtype if values.dtype == np.bool_ else None))
    return np.fromiter((_tag(v) in wanted for v in values), dtype=bool, count=n)


def like_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE: `%` is any run of characters, `_` one character, everything else literal."""
    parts = []
    for ch in pattern:
        if ch == "%":
            parts.append(".*")
        elif ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def _like(expr: Like, source: ColumnSource) -> BoolArray:
    values = _values(expr.operand, source)
    n = source.rows
    body = expr.pattern[:-1]
    if expr.pattern.endswith("%") and "%" not in body and "_" not in body:
        return np.fromiter((isinstance(v, str) and v.startswith(body) for v in values), dtype=bool, count=n)
    regex = like_regex(expr.pattern)
    return np.fromiter(
        (isinstance(v, str) and regex.fullmatch(v) is not None for v in values), dtype=bool, count=n
    )


def _truthy(expr: Truthy, source: ColumnSource) -> BoolArray:
    values = _values(expr.operand, source)
    n = source.rows
    if isinstance(values, np.ndarray) and values.dtype == np.bool_:
        return values.astype(bool, copy=True)
    if isinstance(values, np.ndarray):
        return np.fromiter((v is True for v in values), dtype=bool, count=n)
    return np.full(n, bool(values) if isinstance(values, bool) else False, dtype=bool)
