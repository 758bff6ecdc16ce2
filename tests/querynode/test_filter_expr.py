"""Filter expressions: parsing, type checks, vectorised evaluation, hostile input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload_querynode.filter_eval import KeyValues, compile_like, evaluate
from vectorload_querynode.filter_expr import MAX_DEPTH, FilterError, bind, parse, parse_like, tokenize

SCHEMA = CollectionSchema(
    name="book",
    fields=(
        FieldSchema("book_id", "int64", is_primary=True),
        FieldSchema("title", "varchar", max_length=64),
        FieldSchema("word_count", "int64"),
        FieldSchema("rating", "float"),
        FieldSchema("in_print", "bool"),
        FieldSchema("book_intro", "float_vector", dim=4, metric="l2"),
    ),
    dynamic_field=True,
)

ROWS: list[dict[str, Any]] = [
    {"book_id": 1, "title": "Silent River", "word_count": 100, "rating": 4.5, "in_print": True,
     "meta": {"genre": "mystery", "year": 1999}},
    {"book_id": 2, "title": "Golden Garden", "word_count": 5000, "rating": 2.0, "in_print": False,
     "meta": {"genre": "fantasy", "year": 2005, "award": "Hugo"}},
    {"book_id": 3, "title": "Silent Empire", "word_count": 20000, "rating": 3.25, "in_print": True,
     "meta": {"genre": "mystery"}},
    {"book_id": 4, "title": "it's 100%", "word_count": 7, "rating": 1.0, "in_print": False,
     "meta": {"genre": 5, "year": "1999", "flag": True}},
]  # fmt: skip


class Source:
    """A ColumnSource over ROWS."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._rows = rows
        title = np.empty(len(rows), dtype=object)
        title[:] = [r["title"] for r in rows]
        self.columns: dict[str, npt.NDArray[Any]] = {
            "book_id": np.array([r["book_id"] for r in rows], dtype=np.int64),
            "title": title,
            "word_count": np.array([r["word_count"] for r in rows], dtype=np.int64),
            "rating": np.array([r["rating"] for r in rows], dtype=np.float32),
            "in_print": np.array([r["in_print"] for r in rows], dtype=bool),
        }

    @property
    def rows(self) -> int:
        return len(self._rows)

    def column(self, name: str) -> npt.NDArray[Any]:
        return self.columns[name]

    def meta_values(self, key: str) -> KeyValues:
        return KeyValues.encode((r["meta"].get(key) for r in self._rows), len(self._rows))


def ids(text: str) -> list[int]:
    mask = evaluate(bind(text, SCHEMA).expr, Source(ROWS))
    return [r["book_id"] for r, keep in zip(ROWS, mask, strict=True) if keep]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("book_id == 2", [2]),
        ("book_id != 2", [1, 3, 4]),
        ("word_count >= 5000", [2, 3]),
        ("word_count < 5000 and rating > 1.5", [1]),
        ("rating <= 2 or in_print", [1, 2, 3, 4]),
        ("in_print", [1, 3]),
        ("not in_print", [2, 4]),
        ("!in_print && book_id > 2", [4]),
        ("in_print == false", [2, 4]),
        ("book_id in [1, 3, 99]", [1, 3]),
        ("book_id not in [1, 3]", [2, 4]),
        ("book_id in []", []),
        ("title == 'Silent River'", [1]),
        ('title like "Silent%"', [1, 3]),
        ("title like '%Garden'", [2]),
        ("title like '%en%'", [1, 2, 3]),
        ("title not like 'Silent%'", [2, 4]),
        ("title like 'it\\'s 100%'", [4]),
        ("title > 'H'", [1, 3, 4]),
        ("(book_id == 1 or book_id == 2) and not (rating < 3)", [1]),
        ("NOT (book_id == 1) AND in_print", [3]),
        ("5000 < word_count", [3]),
        ("word_count == -7 or word_count == 7", [4]),
        ("rating == 3.25", [3]),
        ("rating > 1e0", [1, 2, 3]),
        # dynamic field: bare names that are not schema fields are $meta keys
        ("genre == 'mystery'", [1, 3]),
        ('$meta["genre"] == "fantasy"', [2]),
        ("year > 2000", [2]),  # "1999" (a string) never compares with a number
        ("year == '1999'", [4]),
        ("genre in ['fantasy', 5]", [2, 4]),
        ("genre like 'my%'", [1, 3]),
        ("award == 'Hugo'", [2]),
        ("award != 'Hugo'", []),  # a missing key is null: every comparison is false
        ("not (award == 'Hugo')", [1, 3, 4]),
        ("flag", [4]),
        ("flag == 1", []),  # true is not 1
        ("year in [1999]", [1]),
    ],
)
def test_evaluate(text: str, expected: list[int]) -> None:
    assert ids(text) == expected


def test_operator_precedence_and_binds_tighter_than_or() -> None:
    assert ids("book_id == 1 or book_id == 2 and in_print") == [1]
    assert ids("(book_id == 1 or book_id == 2) and in_print") == [1]


def test_bound_filter_reports_fields_and_meta_keys() -> None:
    bound = bind("word_count > 1 and genre == 'x' or $meta['year'] < 3", SCHEMA)
    assert bound.fields == {"word_count"}
    assert bound.meta_keys == {"genre", "year"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("book_id = 1", "'=='"),
        ("book_id ==", "end of filter"),
        ("book_id == 1 and", "end of filter"),
        ("(book_id == 1", "')'"),
        ("book_id == 1)", "unexpected ')'"),
        ("title == 'abc", "unterminated"),
        ("title == 'a\\qb'", "unknown escape"),
        ("book_id in 1", "'['"),
        ("book_id in [1, ]", "literal"),
        ("book_id not 1", "'in' or 'like'"),
        ("title like 5", "quoted pattern"),
        ("word_count == 'x'", "cannot compare a number with a string"),
        ("in_print > true", "only support == and !="),
        ("word_count like 'a%'", "needs a string field"),
        ("word_count", "not a boolean"),
        ("1 == 1", "at least one field"),
        ("book_intro == 1", "vector field"),
        ("book_id in [1, 'a']", "cannot compare"),
        ("title['x'] == 1", "only $meta"),
        ("$other == 1", "must be indexed"),
        ("book_id == 1 # comment", "unexpected character"),
        ("book_id == 1; drop", "unexpected character"),
    ],
)
def test_errors_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(FilterError) as info:
        bind(text, SCHEMA)
    assert fragment in info.value.message


def test_unknown_field_without_dynamic_field_is_field_not_found() -> None:
    schema = CollectionSchema(name="c", fields=SCHEMA.fields, dynamic_field=False)
    with pytest.raises(FilterError) as info:
        bind("genre == 'x'", schema)
    assert info.value.reason == "FieldNotFound"
    assert "genre" in info.value.message


@pytest.mark.parametrize(
    "template",
    [
        "__import__('os').system('touch {sentinel}')",
        "exec(\"open('{sentinel}', 'w')\")",
        "eval(\"open('{sentinel}', 'w')\")",
        "open('{sentinel}', 'w')",
        "book_id.__class__ == 1",
        "lambda: open('{sentinel}', 'w')",
        "[open('{sentinel}', 'w') for x in (1,)]",
        "book_id == __import__",
        "{{}}.__class__",
        "book_id == 1 if True else 2",
        "`touch {sentinel}`",
        "title == '{sentinel}' or title == \"{sentinel}\"",
        "book_id == 0x10",
    ],
)
def test_python_code_is_never_executed(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentinel = tmp_path / "pwned"
    text = template.format(sentinel=sentinel)
    calls: list[Any] = []
    monkeypatch.setattr("builtins.eval", lambda *a, **k: calls.append(a))
    monkeypatch.setattr("builtins.exec", lambda *a, **k: calls.append(a))
    try:
        bound = bind(text, SCHEMA)
    except FilterError:
        pass
    else:  # it parsed as a comparison over data; evaluating it must not run code either
        assert not evaluate(bound.expr, Source(ROWS)).any()
    assert calls == []
    assert not sentinel.exists()


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    for text in ("(" * 100_000 + "in_print" + ")" * 100_000, "not " * 100_000 + "in_print"):
        with pytest.raises(FilterError) as info:
            parse(text[:60_000])
        assert str(MAX_DEPTH) in info.value.message or "characters" in info.value.message
    nested = "(" * (MAX_DEPTH - 1) + "in_print" + ")" * (MAX_DEPTH - 1)
    assert ids(nested) == [1, 3]


def test_huge_filter_is_refused() -> None:
    with pytest.raises(FilterError, match="limit"):
        tokenize("book_id == 1 or " * 10_000)


def test_like_treats_everything_but_wildcards_literally() -> None:
    matches = compile_like(parse_like("a.b*%_"))
    assert matches("a.b*xyzQ")
    assert not matches("aXb*xyzQ")
    assert not matches("a.b*")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("()[]!=<>'\" ,-.%_$abinotdlkerugf0123456789")), max_size=60))
def test_garbage_only_ever_raises_filter_error(text: str) -> None:
    try:
        bound = bind(text, SCHEMA)
    except FilterError:
        return
    mask = evaluate(bound.expr, Source(ROWS))
    assert mask.dtype == np.bool_ and mask.shape == (len(ROWS),)
