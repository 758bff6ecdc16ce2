"""Boolean filter expressions: a hand-written tokenizer and recursive-descent parser.

Grammar (keywords are case-insensitive; `&&`, `||`, `!` are accepted for and/or/not)::

    expr       := or
    or         := and (("or" | "||") and)*
    and        := unary (("and" | "&&") unary)*
    unary      := ("not" | "!") unary | "(" expr ")" | predicate
    predicate  := operand [ cmp operand | ["not"] "in" list | ["not"] "like" STRING ]
    operand    := NAME | NAME "[" STRING "]" | literal          (NAME["key"] only for $meta)
    list       := "[" [literal ("," literal)*] "]"
    literal    := ["-"] NUMBER | STRING | "true" | "false"
    cmp        := "==" | "!=" | "<" | "<=" | ">" | ">="

Nothing is ever evaluated as Python: the parser builds a small AST of dataclasses and
`filter_eval` interprets it over column arrays. Names that are not schema fields refer to keys of
the dynamic field `$meta` (as in Milvus) when the collection has one.

Filters arrive from anyone who can reach the data API, so everything here is bounded before any
work that depends on the data: the text length is checked before tokenizing, nesting depth and
list sizes while parsing (`FilterLimits`), and every literal is checked on the way in — an integer
outside int64 or a float that overflows to infinity is a `FilterError` (Milvus refuses both), and
an integer's digits are counted before `int()` sees them, so Python's int-digit limit
(`sys.set_int_max_str_digits`) is never reached. `like` patterns are parsed here into literal
pieces (`LikePattern`) that `filter_eval` matches without backtracking. Error messages echo at
most `ECHO_CHARS` characters of any piece of input.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal as TypingLiteral

from vectorload.storage.api import DYNAMIC_FIELD, CollectionSchema

MAX_EXPRESSION_CHARS = 65536
MAX_DEPTH = 64
MAX_LIST_ITEMS = 65536
# The parser, the binder and the evaluator recurse once or a few times per level of nesting, so the
# depth limit stays far enough below Python's recursion limit (1000) that no filter reaches it.
DEPTH_CEILING = 200
ECHO_CHARS = 200  # input echoed in an error message is cut to this many characters
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT64_DIGITS = len(str(2**63))  # 19: more significant digits than this cannot be an int64


@dataclass(frozen=True)
class FilterLimits:
    """What one filter may cost to parse; a refusal names the limit and its value.

    `max_chars` is checked before anything else, `max_depth` (levels of parentheses and `not`)
    and `max_list_items` (items of one `in [...]` list) while parsing.
    """

    max_chars: int = MAX_EXPRESSION_CHARS  # --filter-max-chars
    max_depth: int = MAX_DEPTH  # --filter-max-depth (at most DEPTH_CEILING)
    max_list_items: int = MAX_LIST_ITEMS  # --filter-max-list-items

    def __post_init__(self) -> None:
        for name in ("max_chars", "max_depth", "max_list_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"FilterLimits.{name} must be at least 1, not {getattr(self, name)}")
        if self.max_depth > DEPTH_CEILING:
            raise ValueError(
                f"FilterLimits.max_depth must be at most {DEPTH_CEILING} (parsing, binding and "
                f"evaluation recurse once per level), not {self.max_depth}"
            )


# the querynode flag of each limit, named in its refusal
LIMIT_FLAGS = {
    "max_chars": "--filter-max-chars",
    "max_depth": "--filter-max-depth",
    "max_list_items": "--filter-max-list-items",
}


DEFAULT_LIMITS = FilterLimits()

Scalar = int | float | str | bool
CompareOp = TypingLiteral["==", "!=", "<", "<=", ">", ">="]
Kind = TypingLiteral["number", "string", "bool", "any"]


class FilterError(Exception):
    """A filter that cannot be parsed or does not fit the schema; `reason` is the API reason."""

    def __init__(self, message: str, reason: str = "InvalidFilter") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """Input as echoed in a message: at most `limit` characters, an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


# ---------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    kind: str  # NAME NUMBER STRING OP LPAREN RPAREN LBRACK RBRACK COMMA MINUS KEYWORD END
    text: str
    pos: int
    value: Scalar | None = None


_KEYWORDS = {"and", "or", "not", "in", "like", "true", "false"}
_NUMBER = re.compile(r"(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*")
_TWO_CHAR = {"==": "OP", "!=": "OP", "<=": "OP", ">=": "OP", "&&": "KEYWORD", "||": "KEYWORD"}
_ONE_CHAR = {
    "<": "OP",
    ">": "OP",
    "(": "LPAREN",
    ")": "RPAREN",
    "[": "LBRACK",
    "]": "RBRACK",
    ",": "COMMA",
    "-": "MINUS",
    "!": "KEYWORD",
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}
_LIKE_ESCAPES = {"%", "_"}  # '\%' and '\_' stay as written for a like pattern to read


def tokenize(text: str, limits: FilterLimits = DEFAULT_LIMITS) -> list[Token]:
    if len(text) > limits.max_chars:
        raise FilterError(
            f"filter is {len(text)} characters long; the limit is {limits.max_chars} "
            f"({LIMIT_FLAGS['max_chars']})"
        )
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        two = text[i : i + 2]
        if two in _TWO_CHAR:
            kind = _TWO_CHAR[two]
            tokens.append(Token(kind, {"&&": "and", "||": "or"}.get(two, two), i))
            i += 2
            continue
        if ch == "=":
            raise FilterError(f"unexpected '=' at position {i} (use '==' to compare)")
        if ch in _ONE_CHAR:
            tokens.append(Token(_ONE_CHAR[ch], "not" if ch == "!" else ch, i))
            i += 1
            continue
        if ch in "'\"":
            value, end = _read_string(text, i)
            tokens.append(Token("STRING", value, i, value))
            i = end
            continue
        number = _NUMBER.match(text, i)
        if number is not None:
            raw = number.group(0)
            negative = bool(tokens) and tokens[-1].kind == "MINUS"
            tokens.append(Token("NUMBER", raw, i, _number(raw, i, negative)))
            i = number.end()
            continue
        name = _NAME.match(text, i)
        if name is not None:
            word = name.group(0)
            lowered = word.lower()
            if lowered in _KEYWORDS:
                if lowered in {"true", "false"}:
                    tokens.append(Token("BOOL", lowered, i, lowered == "true"))
                else:
                    tokens.append(Token("KEYWORD", lowered, i))
            else:
                tokens.append(Token("NAME", word, i))
            i = name.end()
            continue
        raise FilterError(f"unexpected character {ch!r} at position {i}")
    tokens.append(Token("END", "", n))
    return tokens


def _number(raw: str, pos: int, negative: bool) -> int | float:
    """The value of a NUMBER token (`negative`: a '-' precedes it, for messages). Integers may
    reach 2**63 here (the magnitude of int64's minimum, negated by the parser), which checks the
    signed range."""
    sign = "-" if negative else ""
    if any(c in raw for c in ".eE"):
        value = float(raw)  # float() has no digit limit; too large a value comes back as inf
        if math.isinf(value):
            shown, limit = sign + clip(raw), sys.float_info.max
            raise FilterError(f"number {shown} at position {pos} is beyond the float range (±{limit})")
        return value
    if len(raw.lstrip("0")) > _INT64_DIGITS:  # before int(): Python refuses > 4300 digits
        raise FilterError(_int64_message(sign + clip(raw), pos))
    value_int = int(raw)
    if value_int > -INT64_MIN:
        raise FilterError(_int64_message(sign + raw, pos))
    return value_int


def _int64_message(shown: str, pos: int) -> str:
    return (
        f"integer {shown} at position {pos} is beyond the int64 range [{INT64_MIN}, {INT64_MAX}] "
        "(write a float such as 1e20 to compare with a float)"
    )


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            if nxt in _LIKE_ESCAPES:  # kept with its backslash: it means something to `like`
                out.append(ch + nxt)
            elif nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            else:
                raise FilterError(f"unknown escape '\\{nxt}' in string at position {i}")
            i += 2
            continue
        if ch == quote:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise FilterError(f"unterminated string starting at position {start}")


# ------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Name:
    """A schema field, or a `$meta` key (`key` set) once bound."""

    name: str
    key: str | None = None

    def label(self) -> str:
        return f'{DYNAMIC_FIELD}["{self.key}"]' if self.key is not None else self.name


@dataclass(frozen=True)
class Const:
    value: Scalar


Operand = Name | Const


@dataclass(frozen=True)
class Compare:
    op: CompareOp
    left: Operand
    right: Operand


@dataclass(frozen=True)
class InList:
    operand: Operand
    values: tuple[Scalar, ...]
    negate: bool


@dataclass(frozen=True)
class LikePattern:
    """A `like` pattern split at its `%` into fixed-length pieces.

    Each piece is a tuple of literal runs with one `_` (any single character) between consecutive
    runs: `a_bc` is `("a", "bc")`, `_` alone is `("", "")`. A string matches if the pieces occur
    in order without overlapping, the first at position 0 when `anchored_start`, the last ending
    at the end when `anchored_end`; without any `%` (`exact`) the one piece must be the whole
    string. `%%` is the same as `%`. `\\%`, `\\_` and `\\\\` in the pattern are literal characters.
    """

    text: str
    pieces: tuple[tuple[str, ...], ...]
    anchored_start: bool
    anchored_end: bool
    exact: bool

    @property
    def min_length(self) -> int:
        return sum(piece_length(p) for p in self.pieces)


def piece_length(piece: tuple[str, ...]) -> int:
    return sum(len(run) for run in piece) + len(piece) - 1


def parse_like(pattern: str) -> LikePattern:
    """Split a like pattern into literal pieces (Milvus semantics: `%` any run of characters,
    `_` one character, a backslash makes the next character literal)."""
    pieces: list[tuple[str, ...]] = []
    runs: list[str] = []
    run: list[str] = []
    has_percent = False
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 == n:
                raise FilterError(f"like pattern {clip(pattern)!r} ends with a lone escape '\\'")
            run.append(pattern[i + 1])
            i += 2
            continue
        if ch == "_":
            runs.append("".join(run))
            run = []
        elif ch == "%":
            has_percent = True
            runs.append("".join(run))
            run = []
            if runs != [""]:  # an empty piece is two `%` in a row (or one at an end)
                pieces.append(tuple(runs))
            runs = []
        else:
            run.append(ch)
        i += 1
    runs.append("".join(run))
    if runs != [""] or not has_percent:
        pieces.append(tuple(runs))
    return LikePattern(
        text=pattern,
        pieces=tuple(pieces),
        anchored_start=not pattern.startswith("%"),
        anchored_end=not has_percent or not _ends_with_wildcard_percent(pattern),
        exact=not has_percent,
    )


def _ends_with_wildcard_percent(pattern: str) -> bool:
    """Whether the last character is an unescaped `%` (an odd run of backslashes escapes it)."""
    if not pattern.endswith("%"):
        return False
    backslashes = len(pattern) - 1 - len(pattern[:-1].rstrip("\\"))
    return backslashes % 2 == 0


@dataclass(frozen=True)
class Like:
    operand: Operand
    pattern: LikePattern
    negate: bool


@dataclass(frozen=True)
class Truthy:
    operand: Operand


@dataclass(frozen=True)
class Not:
    item: Expr


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


Expr = Compare | InList | Like | Truthy | Not | And | Or


# ---------------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, tokens: list[Token], limits: FilterLimits) -> None:
        self.tokens = tokens
        self.limits = limits
        self.pos = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def is_keyword(self, word: str) -> bool:
        return self.current.kind == "KEYWORD" and self.current.text == word

    def expect(self, kind: str, what: str) -> Token:
        if self.current.kind != kind:
            raise FilterError(f"expected {what} at position {self.current.pos}, found {self._describe()}")
        return self.advance()

    def _describe(self) -> str:
        token = self.current
        return "end of filter" if token.kind == "END" else repr(clip(token.text))

    def parse(self) -> Expr:
        if self.current.kind == "END":
            raise FilterError("filter is empty")
        expr = self.parse_or()
        if self.current.kind != "END":
            raise FilterError(f"unexpected {self._describe()} at position {self.current.pos}")
        return expr

    def parse_or(self) -> Expr:
        items = [self.parse_and()]
        while self.is_keyword("or"):
            self.advance()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Expr:
        items = [self.parse_unary()]
        while self.is_keyword("and"):
            self.advance()
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_unary(self) -> Expr:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise FilterError(
                f"filter nests deeper than {self.limits.max_depth} levels of parentheses and 'not' "
                f"at position {self.current.pos}; the limit is {self.limits.max_depth} "
                f"({LIMIT_FLAGS['max_depth']})"
            )
        try:
            if self.is_keyword("not"):
                self.advance()
                return Not(self.parse_unary())
            if self.current.kind == "LPAREN":
                self.advance()
                inner = self.parse_or()
                self.expect("RPAREN", "')'")
                return inner
            return self.parse_predicate()
        finally:
            self.depth -= 1

    def parse_predicate(self) -> Expr:
        left = self.parse_operand()
        token = self.current
        if token.kind == "OP":
            self.advance()
            right = self.parse_operand()
            return Compare(token.text, left, right)  # type: ignore[arg-type]
        negate = False
        if self.is_keyword("not"):
            nxt = self.tokens[self.pos + 1]
            if nxt.kind == "KEYWORD" and nxt.text in {"in", "like"}:
                self.advance()
                negate = True
            else:
                raise FilterError(f"expected 'in' or 'like' after 'not' at position {token.pos}")
        if self.is_keyword("in"):
            self.advance()
            return InList(left, self.parse_list(), negate)
        if self.is_keyword("like"):
            self.advance()
            pattern = self.expect("STRING", "a quoted pattern after 'like'")
            return Like(left, parse_like(str(pattern.value)), negate)
        return Truthy(left)

    def parse_operand(self) -> Operand:
        token = self.current
        if token.kind == "NAME":
            self.advance()
            if self.current.kind == "LBRACK":
                if token.text != DYNAMIC_FIELD:
                    raise FilterError(
                        f'only {DYNAMIC_FIELD} can be indexed with ["key"] (position {token.pos})'
                    )
                self.advance()
                key = self.expect("STRING", 'a quoted key in $meta["key"]')
                self.expect("RBRACK", "']'")
                return Name(DYNAMIC_FIELD, str(key.value))
            if token.text.startswith("$"):
                raise FilterError(f'{token.text} must be indexed like {DYNAMIC_FIELD}["key"]')
            return Name(token.text)
        return Const(self.parse_literal())

    def parse_literal(self) -> Scalar:
        token = self.current
        if token.kind == "MINUS":
            self.advance()
            number = self.expect("NUMBER", "a number after '-'")
            assert isinstance(number.value, int | float)
            return -number.value  # the tokenizer allows 2**63, whose negation is int64's minimum
        if token.kind in {"NUMBER", "STRING", "BOOL"}:
            self.advance()
            assert token.value is not None
            if isinstance(token.value, int) and not isinstance(token.value, bool) and token.value > INT64_MAX:
                raise FilterError(_int64_message(token.text, token.pos))
            return token.value
        raise FilterError(
            f"expected a field name or a literal at position {token.pos}, found {self._describe()}"
        )

    def parse_list(self) -> tuple[Scalar, ...]:
        start = self.expect("LBRACK", "'[' to start a list")
        values: list[Scalar] = []
        if self.current.kind != "RBRACK":
            values.append(self.parse_literal())
            while self.current.kind == "COMMA":
                if len(values) == self.limits.max_list_items:
                    raise FilterError(
                        f"list at position {start.pos} has more than {self.limits.max_list_items} "
                        f"items; the limit is {self.limits.max_list_items} ({LIMIT_FLAGS['max_list_items']})"
                    )
                self.advance()
                values.append(self.parse_literal())
        self.expect("RBRACK", "']' to close the list")
        return tuple(values)


def parse(text: str, limits: FilterLimits = DEFAULT_LIMITS) -> Expr:
    """Parse a filter into an unbound AST; raises FilterError with a position on bad input."""
    return _Parser(tokenize(text, limits), limits).parse()


# --------------------------------------------------------------------------------- schema binding


@dataclass(frozen=True)
class BoundFilter:
    expr: Expr
    fields: frozenset[str]  # schema fields read (never vector fields)
    meta_keys: frozenset[str]  # dynamic-field keys read

    @property
    def uses_dynamic(self) -> bool:
        return bool(self.meta_keys)


def literal_kind(value: Scalar) -> Kind:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string"


_SCHEMA_KINDS: dict[str, Kind] = {"int64": "number", "float": "number", "bool": "bool", "varchar": "string"}


class _Binder:
    def __init__(self, schema: CollectionSchema) -> None:
        self.schema = schema
        self.fields: set[str] = set()
        self.meta_keys: set[str] = set()

    def operand(self, operand: Operand) -> tuple[Operand, Kind]:
        if isinstance(operand, Const):
            return operand, literal_kind(operand.value)
        if operand.key is not None:
            if not self.schema.dynamic_field:
                raise FilterError(f"collection {self.schema.name} has no dynamic field", "FieldNotFound")
            self.meta_keys.add(operand.key)
            return operand, "any"
        field = self.schema.field(operand.name)
        if field is None:
            if not self.schema.dynamic_field:
                raise FilterError(
                    f"field {clip(operand.name)} is not in collection {self.schema.name}", "FieldNotFound"
                )
            self.meta_keys.add(operand.name)
            return Name(DYNAMIC_FIELD, operand.name), "any"
        if field.type == "float_vector":
            raise FilterError(f"vector field {field.name} cannot be used in a filter")
        self.fields.add(field.name)
        return operand, _SCHEMA_KINDS[field.type]

    def expr(self, expr: Expr) -> Expr:
        if isinstance(expr, And):
            return And(tuple(self.expr(e) for e in expr.items))
        if isinstance(expr, Or):
            return Or(tuple(self.expr(e) for e in expr.items))
        if isinstance(expr, Not):
            return Not(self.expr(expr.item))
        if isinstance(expr, Compare):
            left, lk = self.operand(expr.left)
            right, rk = self.operand(expr.right)
            if isinstance(left, Const) and isinstance(right, Const):
                raise FilterError("a comparison needs at least one field")
            _check_kinds(lk, rk, expr.op, lambda: f"{_label(left)} {expr.op} {_label(right)}")
            return Compare(expr.op, left, right)
        if isinstance(expr, InList):
            operand, kind = self.operand(expr.operand)
            if isinstance(operand, Const):
                raise FilterError("'in' needs a field on its left")
            for value in expr.values:
                _check_kinds(kind, literal_kind(value), "==", functools.partial(_in_text, operand, value))
            return InList(operand, expr.values, expr.negate)
        if isinstance(expr, Like):
            operand, kind = self.operand(expr.operand)
            if isinstance(operand, Const):
                raise FilterError("'like' needs a field on its left")
            if kind not in {"string", "any"}:
                raise FilterError(f"'like' needs a string field; {_label(operand)} is a {kind}")
            return Like(operand, expr.pattern, expr.negate)
        operand, kind = self.operand(expr.operand)
        if kind not in {"bool", "any"}:
            raise FilterError(f"{_label(operand)} is not a boolean; compare it with something")
        return Truthy(operand)


def _in_text(operand: Operand, value: Scalar) -> str:
    return f"{_label(operand)} in [... {clip(repr(value))} ...]"


def _label(operand: Operand) -> str:
    return clip(operand.label() if isinstance(operand, Name) else repr(operand.value))


def _check_kinds(left: Kind, right: Kind, op: str, text: Callable[[], str]) -> None:
    """Raise if the kinds cannot be compared with `op`; `text` describes the comparison (built only
    for the message, not once per item of a long list)."""
    if "any" in (left, right):
        return
    if left != right:
        raise FilterError(f"cannot compare a {left} with a {right}: {text()}")
    if left == "bool" and op not in {"==", "!="}:
        raise FilterError(f"booleans only support == and !=: {text()}")


def bind(text: str, schema: CollectionSchema, limits: FilterLimits = DEFAULT_LIMITS) -> BoundFilter:
    """Parse and type-check a filter against a collection schema."""
    binder = _Binder(schema)
    expr = binder.expr(parse(text, limits))
    return BoundFilter(expr, frozenset(binder.fields), frozenset(binder.meta_keys))
