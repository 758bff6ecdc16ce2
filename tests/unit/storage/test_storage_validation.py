"""Every `write_segment` validation error names the offending field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload.storage.api import CollectionSchema, StorageError
from vectorload.storage.writer import CollectionWriter

MakeInputs = Callable[..., dict[str, Any]]
Mutate = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Mutate:
    def mutate(inputs: dict[str, Any]) -> None:
        group, _, key = path.partition(".")
        if key:
            inputs[group][key] = value
        else:
            inputs[group] = value

    return mutate


def _drop(group: str, key: str) -> Mutate:
    return lambda inputs: inputs[group].pop(key)


CASES: list[tuple[str, Mutate, str]] = [
    ("vector dim", _set("vectors.intro", np.zeros((10, 7), np.float32)), "intro"),
    ("vector 1-D", _set("vectors.intro", np.zeros(10, np.float32)), "intro"),
    ("vector rows", _set("vectors.cover", np.ones((9, 4), np.float32)), "cover"),
    ("vector NaN", _set("vectors.intro", np.full((10, 8), np.nan, np.float32)), "intro"),
    ("vector strings", _set("vectors.intro", np.full((10, 8), "x")), "intro"),
    ("cosine zero vector", _set("vectors.cover", np.zeros((10, 4), np.float32)), "cover"),
    ("missing vector", _drop("vectors", "cover"), "cover"),
    ("unknown vector", _set("vectors.nope", np.zeros((10, 8))), "nope"),
    ("scalar as vector", _set("vectors.rating", np.zeros((10, 8))), "rating"),
    ("missing scalar", _drop("scalars", "word_count"), "word_count"),
    ("unknown scalar", _set("scalars.colour", ["red"] * 10), "colour"),
    ("vector as scalar", _set("scalars.intro", [1] * 10), "intro"),
    ("scalar rows", _set("scalars.rating", [1.0] * 9), "rating"),
    ("int64 from floats", _set("scalars.word_count", [1.5] * 10), "word_count"),
    ("int64 from bools", _set("scalars.word_count", [True] * 10), "word_count"),
    ("int64 overflow", _set("scalars.word_count", [2**63] * 10), "word_count"),
    ("float from strings", _set("scalars.rating", ["high"] * 10), "rating"),
    ("float inf", _set("scalars.rating", [float("inf")] * 10), "rating"),
    ("bool from ints", _set("scalars.in_print", [1] * 10), "in_print"),
    ("varchar from ints", _set("scalars.title", list(range(10))), "title"),
    ("varchar too long", _set("scalars.title", ["x" * 33] * 10), "title"),
    ("varchar a string", _set("scalars.title", "abcdefghij"), "title"),
    ("duplicate pk", _set("primary_keys", np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 1])), "book_id"),
    ("float pk", _set("primary_keys", np.arange(10, dtype=np.float64) + 0.5), "book_id"),
    ("2-D pk", _set("primary_keys", np.arange(10).reshape(5, 2)), "book_id"),
    ("no rows", _set("primary_keys", []), "book_id"),
    ("dynamic rows", _set("dynamic", [{}] * 9), "$meta"),
    ("dynamic not dict", _set("dynamic", [[1]] * 10), "$meta"),
    ("dynamic shadows field", _set("dynamic", [{"title": "x"}] * 10), "$meta"),
    ("dynamic not JSON", _set("dynamic", [{"x": object()}] * 10), "$meta"),
    ("dynamic NaN", _set("dynamic", [{"x": float("nan")}] * 10), "$meta"),
]


@pytest.mark.parametrize(("mutate", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_input_names_the_field(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs, mutate: Mutate, field: str
) -> None:
    inputs = make_inputs(rows=10)
    mutate(inputs)
    with pytest.raises(StorageError) as err:
        writer.write_segment("book", "_default", "s", **inputs, num_threads=1)
    assert err.value.reason == "InvalidArgument"
    assert repr(field) in err.value.message
    assert not (root / "book" / "_default" / "s").exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"collection": "bad-name"}, "bad-name"),
        ({"partition": "../x"}, "../x"),
        ({"segment_id": "a/b"}, "a/b"),
        ({"segment_id": "x" * 65}, "x" * 65),
        ({"M": 1}, "M"),
        ({"ef_construction": 0}, "ef_construction"),
    ],
)
def test_invalid_names_and_params(
    writer: CollectionWriter, make_inputs: MakeInputs, args: dict[str, Any], named: str
) -> None:
    call: dict[str, Any] = {"collection": "book", "partition": "_default", "segment_id": "s"}
    call |= args
    with pytest.raises(StorageError) as err:
        writer.write_segment(**call, **make_inputs(rows=3), num_threads=1)
    assert err.value.reason == "InvalidArgument"
    assert named in err.value.message


def test_missing_collection_and_partition(writer: CollectionWriter, make_inputs: MakeInputs) -> None:
    with pytest.raises(StorageError) as err:
        writer.write_segment("nope", "_default", "s", **make_inputs(rows=3))
    assert err.value.reason == "CollectionNotFound" and "nope" in err.value.message
    with pytest.raises(StorageError) as err:
        writer.write_segment("book", "novel", "s", **make_inputs(rows=3))
    assert err.value.reason == "PartitionNotFound" and "novel" in err.value.message


def test_dynamic_rows_need_a_dynamic_field(
    root: Path, make_schema: Callable[..., CollectionSchema], make_inputs: MakeInputs
) -> None:
    writer = CollectionWriter(root)
    writer.create_collection(make_schema(dynamic=False))
    with pytest.raises(StorageError) as err:
        writer.write_segment("book", "_default", "s", **make_inputs(rows=4))
    assert err.value.reason == "InvalidArgument" and "'$meta'" in err.value.message


def test_accepts_lists_and_converts_dtypes(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    inputs = make_inputs(rows=4)
    inputs["vectors"] = {k: v.astype(np.float64).tolist() for k, v in inputs["vectors"].items()}
    inputs["primary_keys"] = [10, 11, 12, 13]
    inputs["scalars"] = {
        "title": ("a", "b", "c", "d"),
        "word_count": [1, 2, 3, 4],
        "rating": [1, 2.5, 3, 4],
        "in_print": [True, False, True, False],
    }
    manifest = writer.write_segment("book", "_default", "s", **inputs, num_threads=1)
    assert manifest.rows == 4
    assert np.load(root / "book" / "_default" / "s" / "rating.npy").dtype == np.dtype("<f4")
    assert np.load(root / "book" / "_default" / "s" / "book_id.npy").tolist() == [10, 11, 12, 13]
