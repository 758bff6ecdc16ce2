"""Hostile filters (issue 13): every limit is enforced before expensive work and named with its
value, literals beyond int64 / float range are FilterErrors naming the literal (never an
OverflowError or Python's int-digit ValueError, which became 500s), echoed input is capped."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vectorload.storage.api import CollectionSchema
from vectorload_querynode.filter_eval import evaluate
from vectorload_querynode.filter_expr import (
    ECHO_CHARS,
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    MAX_LIST_ITEMS,
    FilterError,
    FilterLimits,
    bind,
)

from .test_filter_expr import ROWS, SCHEMA, Source, ids

STRICT_SCHEMA = CollectionSchema(name="strict", fields=SCHEMA.fields, dynamic_field=False)


def refused(text: str, limits: FilterLimits | None = None, schema: CollectionSchema = SCHEMA) -> FilterError:
    with pytest.raises(FilterError) as info:
        bind(text, schema) if limits is None else bind(text, schema, limits)
    return info.value


# ---------------------------------------------------------------------------------------- limits


def test_length_limit_is_checked_before_tokenizing() -> None:
    text = "book_id == 1 or " * 1_000_000  # 16 million characters
    started = time.perf_counter()
    error = refused(text)
    assert time.perf_counter() - started < 0.05
    assert f"is {len(text)} characters long; the limit is {MAX_EXPRESSION_CHARS}" in error.message
    limits = FilterLimits(max_chars=40)
    error = refused("book_id == 1 or book_id == 22222222222222", limits)  # 41 characters
    assert "41 characters long; the limit is 40" in error.message
    assert bind("book_id == 1 or book_id == 2222222222222", SCHEMA, limits).expr  # 40: fine


def test_depth_limit_names_its_value() -> None:
    limits = FilterLimits(max_depth=5)
    error = refused("((((((in_print))))))", limits)
    assert "deeper than 5 levels" in error.message and "the limit is 5" in error.message
    assert "not" in refused("not not not not not not in_print", limits).message
    assert evaluate(bind("((((in_print))))", SCHEMA, limits).expr, Source(ROWS)).tolist() == [
        True, False, True, False
    ]  # fmt: skip
    assert f"the limit is {MAX_DEPTH}" in refused("(" * 70 + "in_print" + ")" * 70).message


def test_list_limit_names_its_value() -> None:
    limits = FilterLimits(max_list_items=3)
    error = refused("book_id in [1, 2, 3, 4]", limits)
    assert "more than 3 items" in error.message and "the limit is 3" in error.message
    assert "position 11" in error.message
    assert bind("book_id in [1, 2, 3]", SCHEMA, limits).expr
    assert (
        f"the limit is {MAX_LIST_ITEMS}"
        in refused(
            "book_id in [" + ",".join(["1"] * (MAX_LIST_ITEMS + 1)) + "]",
            FilterLimits(max_chars=4 * MAX_LIST_ITEMS),
        ).message
    )


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        FilterLimits(max_depth=0)


# -------------------------------------------------------------------------------------- literals

INT64_MAX = 2**63 - 1


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        (f"book_id == {INT64_MAX + 1}", str(INT64_MAX + 1)),
        (f"book_id == -{INT64_MAX + 2}", f"-{INT64_MAX + 2}"),
        ("book_id > 99999999999999999999999", "99999999999999999999999"),  # once evaluated as []
        (f"book_id in [1, {INT64_MAX + 1}]", str(INT64_MAX + 1)),
        (f"rating < {10**400}", "1" + "0" * 199),  # an integer beyond int64 even against a float
        (f"year == {10**30}", str(10**30)),  # a $meta key
        ("book_id == 1" + "0" * 5000, "1" + "0" * 199),  # beyond Python's 4300-digit int() limit
        ("rating > 1e999", "1e999"),
        ("rating > -1e999", "-1e999"),
        ("rating > 1" + "0" * 400 + ".5", "1" + "0" * 199),
        ("genre in ['a', 2e400]", "2e400"),
    ],
)
def test_out_of_range_literals_are_filter_errors_naming_them(text: str, literal: str) -> None:
    error = refused(text)
    assert literal in error.message
    assert "int64 range" in error.message or "float range" in error.message
    assert len(error.message) < ECHO_CHARS + 200


def test_int64_bounds_themselves_are_fine() -> None:
    assert ids(f"book_id < {INT64_MAX} and book_id > -{INT64_MAX + 1}") == [1, 2, 3, 4]
    assert ids("book_id == 0000000000000000000000000000000000002") == [2]  # leading zeros: no digits
    assert ids("rating > 1e-999") == [1, 2, 3, 4]  # underflow is 0.0, a fine number


@pytest.fixture
def low_digit_limit() -> Iterator[None]:
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)  # the smallest limit Python allows
    yield
    sys.set_int_max_str_digits(previous)


@pytest.mark.usefixtures("low_digit_limit")
@pytest.mark.parametrize("digits", [641, 4301, 60_000])
def test_python_int_digit_limit_never_escapes_the_tokenizer(digits: int) -> None:
    error = refused("book_id == " + "7" * digits)
    assert "int64 range" in error.message and f"({digits} characters)" in error.message


def test_float_field_against_numbers_beyond_float32_range() -> None:
    """rating is float32: 1e39 would overflow to inf in numpy with a RuntimeWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ids("rating < 1e39") == [1, 2, 3, 4]
        assert ids("rating > -1e39 and rating != 1e300") == [1, 2, 3, 4]
        assert ids("rating > 1e39 or rating == -1e39") == []
        assert ids("rating in [1e39, 4.5]") == [1]
        assert ids("1e39 > rating") == [1, 2, 3, 4]


def test_in_lists_compare_floats_as_equality_does() -> None:
    rows = [dict(r) for r in ROWS]
    rows[0]["rating"] = 0.1  # not exact in float32
    mask_eq = evaluate(bind("rating == 0.1", SCHEMA).expr, Source(rows))
    mask_in = evaluate(bind("rating in [0.1, 7]", SCHEMA).expr, Source(rows))
    assert mask_eq.tolist() == mask_in.tolist() == [True, False, False, False]


# -------------------------------------------------------------------------------- echoed input

LONG = "x" * 60_000


@pytest.mark.parametrize(
    ("text", "schema"),
    [
        (f"{LONG} == 1", STRICT_SCHEMA),  # an unknown field
        (f"book_id == 1 '{LONG}'", SCHEMA),  # an unexpected token
        (f"word_count == '{LONG}'", SCHEMA),  # a kind mismatch
        (f"word_count in [1, '{LONG}']", SCHEMA),
        (f"$meta['{LONG}'] like 5", SCHEMA),
        (f"title like '{LONG}\\\\'", SCHEMA),  # a pattern ending with a lone escape
        (f"in_print > '{LONG}'", SCHEMA),
        (f"{LONG}", STRICT_SCHEMA),
    ],
)
def test_echoed_input_is_capped(text: str, schema: CollectionSchema) -> None:
    error = refused(text, schema=schema)
    assert len(error.message) < 2 * ECHO_CHARS + 200, error.message[:300]
    assert "x" * 50 in error.message or "position" in error.message


# ----------------------------------------------------------------------------------------- fuzz

TOKENS = [
    "book_id", "title", "rating", "in_print", "genre", "$meta", "['genre']", "==", "!=", "<", ">=",
    "and", "or", "not", "in", "like", "(", ")", "[", "]", ",", "-", "true", "'a%_\\\\%'", '"x"',
    "0", "1.5", "1e309", "9223372036854775808", "9" * 30, "-9223372036854775808", "1e", ".5",
    "\\", "'", "é", "\x00", "&&", "||", "!", "=", "%", "_",
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=14), st.sampled_from([" ", ""]))
def test_token_soup_only_ever_raises_filter_error(tokens: list[str], sep: str) -> None:
    try:
        bound = bind(sep.join(tokens), SCHEMA)
    except FilterError:
        return
    mask = evaluate(bound.expr, Source(ROWS))
    assert mask.dtype == np.bool_ and mask.shape == (len(ROWS),)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_any_text_only_ever_raises_filter_error(text: str) -> None:
    try:
        bound = bind(text, SCHEMA)
    except FilterError:
        return
    evaluate(bound.expr, Source(ROWS))


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["book_id", "rating", "year", "word_count"]),
    st.sampled_from(["==", "<", ">=", "!="]),
    st.one_of(
        st.integers(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(alphabet="0123456789", min_size=1, max_size=5000),
    ),
)
def test_numbers_of_any_size(field: str, op: str, number: int | float | str) -> None:
    text = f"{field} {op} {number!r}" if not isinstance(number, str) else f"{field} {op} {number}"
    try:
        bound = bind(text, SCHEMA)
    except FilterError as exc:
        assert "range" in exc.message, exc.message
        return
    evaluate(bound.expr, Source(ROWS))
