"""Column file formats: varchar (.vstr) and JSONL round trips and corruption detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vectorload.storage.api import FieldSchema, StorageError
from vectorload.storage.columns import read_column, read_jsonl, read_varchar, write_jsonl, write_varchar
from vectorload.storage.validate import scalar_column

utf8_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(utf8_text, max_size=30))
def test_varchar_round_trip(tmp_path_factory: pytest.TempPathFactory, values: list[str]) -> None:
    path = tmp_path_factory.mktemp("vstr") / "c.vstr"
    write_varchar(path, values)
    assert read_varchar(path) == values


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.dictionaries(utf8_text, st.one_of(st.integers(), utf8_text, st.booleans(), st.none()), max_size=4),
        max_size=10,
    )
)
def test_jsonl_round_trip(tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, object]]) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "meta.jsonl"
    write_jsonl(path, rows)
    assert read_jsonl(path) == rows
    assert path.read_bytes().count(b"\n") == len(rows)


def test_corrupt_varchar_files_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "t.vstr"
    write_varchar(path, ["alpha", "beta"])
    good = path.read_bytes()
    for bad in (b"NOTVSTR!" + good[8:], good[:20], good[:-1], good[:-5] + b"\xff\xfe\xfd\xfc\xfb"):
        path.write_bytes(bad)
        with pytest.raises(StorageError) as err:
            read_varchar(path)
        assert err.value.reason == "CorruptFile" and "t.vstr" in err.value.message


def test_npy_column_not_numpy_or_wrong_dtype_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "rating.npy"
    path.write_bytes(b"not numpy")
    with pytest.raises(StorageError) as err:
        read_column(path, FieldSchema("rating", "float"))
    assert err.value.reason == "CorruptFile"
    path.unlink()
    np.save(path, np.arange(3, dtype=np.int64))
    with pytest.raises(StorageError) as err:
        read_column(path, FieldSchema("rating", "float"))
    assert err.value.reason == "CorruptFile" and "float" in err.value.message
    assert list(read_column(path, FieldSchema("rating", "int64"))) == [0, 1, 2]


def test_lone_surrogates_are_rejected_naming_the_field() -> None:
    with pytest.raises(StorageError) as err:
        scalar_column(FieldSchema("title", "varchar"), ["ok", "\ud800"], 2)
    assert err.value.reason == "InvalidArgument" and "'title'" in err.value.message
