"""ingest() of Parquet files: round trip, streaming by row group, bad files refused whole."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vectorload.storage import parquet as parquet_module
from vectorload.storage.api import DYNAMIC_FIELD, CollectionSchema, FieldSchema, StorageError
from vectorload.storage.cli import ingest_main
from vectorload.storage.columns import read_column, read_jsonl
from vectorload.storage.hnsw import open_index
from vectorload.storage.ingest import ingest
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.schema_json import schema_to_dict
from vectorload.storage.writer import STAGING_DIR, CollectionWriter

MakeSchema = Callable[..., CollectionSchema]
ROWS = 160
GROUP = 50  # rows per row group: groups 0..3, the last one of 10 rows


def _columns(n: int = ROWS, first_pk: int = 1000, seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "book_id": np.arange(first_pk, first_pk + n, dtype=np.int64),
        "title": [f"tïtle {i}" for i in range(n)],
        "word_count": rng.integers(0, 10_000, size=n),
        "rating": rng.uniform(1, 5, size=n).astype(np.float32),
        "in_print": rng.random(n) < 0.5,
        "intro": rng.normal(size=(n, 8)).astype(np.float32),
        "cover": rng.normal(size=(n, 4)),  # float64: stored as float32
        "genre": [("poem" if i % 3 == 0 else None) for i in range(n)],
        "award": [({"name": "x", "year": 2000 + i} if i % 7 == 0 else None) for i in range(n)],
    }


def _table(cols: dict[str, Any], cover_as_list: bool = True) -> pa.Table:
    arrays: dict[str, Any] = {}
    for name, value in cols.items():
        if isinstance(value, pa.Array):
            arrays[name] = value
        elif name == "intro":  # fixed_size_list<float32>[8]
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(value.ravel()), value.shape[1])
        elif name == "cover" and cover_as_list:  # variable list<double>
            arrays[name] = pa.array([list(map(float, row)) for row in value], type=pa.list_(pa.float64()))
        elif isinstance(value, np.ndarray) and value.ndim == 2:
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(value.ravel()), value.shape[1])
        else:
            arrays[name] = pa.array(value)
    return pa.table(arrays)


def _write(path: Path, table: pa.Table, group: int = GROUP) -> Path:
    pq.write_table(table, path, row_group_size=group)
    return path


def _run(root: Path, files: list[Path], **kwargs: Any) -> list[Any]:
    args: dict[str, Any] = {
        "partition": "novel",
        "parquet": files,
        "segment_rows": 60,
        "progress": False,
        "num_threads": 1,
    }
    args |= kwargs
    return ingest(root, "book", **args)


def _nothing_visible(root: Path) -> None:
    assert not root.exists() or FilesystemReader(root).list_collections() == []
    assert not (root / "book" / STAGING_DIR).exists() or list((root / "book" / STAGING_DIR).iterdir()) == []
    assert not (root / "book").exists()  # the directories the failed ingest created are gone too


def _read_back(root: Path, manifests: list[Any]) -> dict[str, Any]:
    reader = FilesystemReader(root)
    schema = reader.schema("book")
    out: dict[str, Any] = {"book_id": [], "title": [], "word_count": [], "rating": [], "in_print": []}
    out |= {"intro": [], "cover": [], DYNAMIC_FIELD: []}
    for m in manifests:
        for name in ("book_id", "title", "word_count", "rating", "in_print"):
            field = schema.field(name)
            assert field is not None
            out[name] += list(read_column(reader.segment_file_path(m, name), field))
        for name in ("intro", "cover"):
            field = schema.field(name)
            assert field is not None
            index = open_index(reader.segment_file_path(m, name), field)
            out[name].append(np.asarray(index.get_items(np.arange(m.rows)), dtype=np.float32))
        out[DYNAMIC_FIELD] += read_jsonl(reader.segment_file_path(m, DYNAMIC_FIELD))
    out["intro"] = np.concatenate(out["intro"])
    out["cover"] = np.concatenate(out["cover"])
    return out


def test_parquet_round_trip(tmp_path: Path, root: Path, make_schema: MakeSchema) -> None:
    """Two files (fixed-size and variable lists, unknown columns into $meta, several row groups)
    → ingest → every value read back equals the input."""
    first, second = _columns(ROWS), _columns(40, first_pk=5000, seed=2)
    files = [_write(tmp_path / "a.parquet", _table(first)), _write(tmp_path / "b.parquet", _table(second))]
    stream = io.StringIO()
    manifests = _run(root, files, schema=make_schema(), progress=True, stream=stream, M=8, ef_construction=40)
    assert [m.rows for m in manifests] == [60, 60, 60, 20]  # segments cross row groups and files
    assert "ingest book/novel" in stream.getvalue() and "100.0%" in stream.getvalue()
    assert FilesystemReader(root).segments("book", "novel") == manifests
    back = _read_back(root, manifests)
    both = {k: list(first[k]) + list(second[k]) for k in first}
    for name in ("book_id", "title", "word_count", "in_print"):
        assert back[name] == both[name], name
    assert np.array_equal(np.asarray(back["rating"]), np.asarray(both["rating"], dtype=np.float32))
    assert np.array_equal(back["intro"], np.concatenate([first["intro"], second["intro"]]))
    cover = np.concatenate([first["cover"], second["cover"]]).astype(np.float32)
    unit = cover / np.linalg.norm(cover, axis=1, keepdims=True)  # cosine: hnswlib stores unit vectors
    assert np.allclose(back["cover"], unit, atol=1e-6)
    expected_meta = [
        {k: v for k, v in (("genre", g), ("award", a)) if v is not None}
        for g, a in zip(both["genre"], both["award"], strict=True)
    ]
    assert back[DYNAMIC_FIELD] == expected_meta


def test_meta_json_column_and_varchar_primary_key(tmp_path: Path, root: Path) -> None:
    schema = CollectionSchema(
        "book",
        (
            FieldSchema("key", "varchar", is_primary=True, max_length=8),
            FieldSchema("v", "float_vector", dim=4, metric="ip"),
        ),
        dynamic_field=True,
    )
    n = 30
    vectors = np.random.default_rng(3).normal(size=(n, 4)).astype(np.float32)
    table = pa.table(
        {
            "key": [f"k{i}" for i in range(n)],
            "v": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 4),
            DYNAMIC_FIELD: [json.dumps({"a": i}) if i % 2 else None for i in range(n)],
            "tag": ["t"] * n,
        }
    )
    (m,) = _run(root, [_write(tmp_path / "k.parquet", table, group=7)], schema=schema, segment_rows=None)
    reader = FilesystemReader(root)
    assert list(read_column(reader.segment_file_path(m, "key"), schema.primary_key)) == [
        f"k{i}" for i in range(n)
    ]
    meta = read_jsonl(reader.segment_file_path(m, DYNAMIC_FIELD))
    assert meta[0] == {"tag": "t"} and meta[1] == {"a": 1, "tag": "t"}


def test_default_and_byte_sized_segments(tmp_path: Path, root: Path, make_schema: MakeSchema) -> None:
    path = _write(tmp_path / "a.parquet", _table(_columns()))
    (one,) = _run(root, [path], schema=make_schema(), segment_rows=None)  # default: far above 160 rows
    assert one.rows == ROWS
    per_row = one.total_bytes / ROWS
    sized = _run(
        root, [path], schema=make_schema(), partition="p2", segment_rows=None, segment_bytes=int(50 * per_row)
    )
    assert [m.rows for m in sized][:3] == [sized[0].rows] * 3 and 40 <= sized[0].rows <= 60
    assert all(m.total_bytes <= 1.2 * 50 * per_row for m in sized)


def test_streams_one_row_group_at_a_time(
    tmp_path: Path, root: Path, make_schema: MakeSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments are built while the file is still being read; batches never exceed BATCH_ROWS."""
    monkeypatch.setattr(parquet_module, "BATCH_ROWS", 20)
    events: list[tuple[str, int]] = []
    real_convert = parquet_module.ParquetInput._convert
    real_stage = CollectionWriter.stage_columns

    def convert(self: Any, where: str, first: int, rb: Any, extra: list[str]) -> Any:
        assert rb.num_rows <= 20
        events.append(("read", int(where.rsplit(" ", 1)[1])))
        return real_convert(self, where, first, rb, extra)

    def stage(self: Any, *args: Any, **kwargs: Any) -> Any:
        events.append(("stage", 0))
        return real_stage(self, *args, **kwargs)

    monkeypatch.setattr(parquet_module.ParquetInput, "_convert", convert)
    monkeypatch.setattr(CollectionWriter, "stage_columns", stage)
    manifests = _run(root, [_write(tmp_path / "a.parquet", _table(_columns()))], schema=make_schema())
    assert sum(m.rows for m in manifests) == ROWS
    assert events.index(("stage", 0)) < events.index(("read", 3))  # first segment before the last group
    assert [g for kind, g in events if kind == "read"] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]


Change = Callable[[dict[str, Any]], None]


def _set(name: str, row: int, value: Any) -> Change:
    def change(cols: dict[str, Any]) -> None:
        values = list(cols[name]) if not isinstance(cols[name], np.ndarray) else cols[name].astype(object)
        values[row] = value
        cols[name] = values

    return change


def _retype(name: str, values: Callable[[int], Any]) -> Change:
    return lambda cols: cols.__setitem__(name, values(len(cols["book_id"])))


def _drop(name: str) -> Change:
    return lambda cols: cols.pop(name)


def _vectors(name: str, rows: list[Any], type_: Any) -> Change:
    return lambda cols: cols.__setitem__(name, pa.array(rows + [[0.5] * 4] * (ROWS - len(rows)), type=type_))


def _nan(row: int) -> Change:
    def change(cols: dict[str, Any]) -> None:
        cols["intro"] = cols["intro"].copy()
        cols["intro"][row, 2] = np.nan

    return change


# (name, change to the columns, strings the message must contain)
BAD: list[tuple[str, Change, tuple[str, ...]]] = [
    ("missing column", _drop("rating"), ("a.parquet", "'rating'", "missing")),
    ("wrong scalar type", _retype("rating", lambda n: ["high"] * n), ("'rating'", "expected float")),
    ("wrong pk type", _retype("book_id", lambda n: [1.5] * n), ("'book_id'", "expected int64")),
    ("bool from ints", _retype("in_print", lambda n: [1] * n), ("'in_print'", "expected bool")),
    ("null scalar", _set("title", 137, None), ("row group 2", "'title'", "row 37 is null")),
    ("null pk", _set("book_id", 3, None), ("row group 0", "'book_id'", "row 3 is null")),
    ("title too long", _set("title", 151, "x" * 40), ("row group 3", "'title'", "row 1", "maxLength")),
    ("nan in vector", _nan(149), ("row group 2", "'intro'", "row 49", "NaN")),
    (
        "duplicate pk across row groups",
        _set("book_id", 155, 1000),
        ("row group 3", "'book_id'", "row 5", "1000"),
    ),
    (
        "uint64 beyond int64",
        _retype("word_count", lambda n: pa.array([7] * 60 + [2**63] * (n - 60), pa.uint64())),
        ("row group 1", "'word_count'", "row 10", "out of int64 range"),
    ),
    (
        "short variable vector",
        _vectors("cover", [[0.5] * 4] * 60 + [[1.0, 2.0]], pa.list_(pa.float64())),
        ("row group 1", "'cover'", "row 10", "2 values, expected 4"),
    ),
    (
        "null component",
        _vectors("cover", [[0.5] * 4] * 120 + [[1.0, None, 2.0, 3.0]], pa.list_(pa.float64())),
        ("row group 2", "'cover'", "row 20", "null component"),
    ),
    (
        "vector of strings",
        _retype("cover", lambda n: pa.array([["a"] * 4] * n, pa.list_(pa.string()))),
        ("'cover'", "list of float", "string"),
    ),
    (
        "wrong fixed size",
        lambda c: c.__setitem__(
            "intro", pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(ROWS * 4, np.float32)), 4)
        ),
        ("'intro'", "expected 8 values", "fixed size 4"),
    ),
    (
        "dynamic column JSON cannot hold",
        _retype("seen", lambda n: pa.array([0] * n, pa.timestamp("ms"))),
        ("'seen'", "timestamp", DYNAMIC_FIELD),
    ),
    (
        "nan in dynamic column",
        _retype("score", lambda n: [0.5] * (n - 1) + [float("nan")]),
        ("'score'", "row 9"),
    ),
    (
        "meta column not text",
        _retype(DYNAMIC_FIELD, lambda n: [1] * n),
        (f"'{DYNAMIC_FIELD}'", "JSON objects"),
    ),
    (
        "meta not an object",
        _retype(DYNAMIC_FIELD, lambda n: ["[1]"] * n),
        ("row group 0", "row 0", "JSON object"),
    ),
    (
        "bad meta json",
        _retype(DYNAMIC_FIELD, lambda n: ["{}"] * 70 + ["{"] * (n - 70)),
        ("row group 1", "row 20", "invalid JSON"),
    ),
    (
        "meta key twice",
        _retype(DYNAMIC_FIELD, lambda n: [json.dumps({"genre": "x"})] * n),
        ("'genre'", "row 0", "also in"),
    ),
    (
        "meta key is a schema field",
        _retype(DYNAMIC_FIELD, lambda n: [json.dumps({"rating": 1})] * n),
        ("row group 0", "'rating' is a schema field"),
    ),
]


@pytest.mark.parametrize(("change", "named"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_parquet_writes_nothing(
    tmp_path: Path, root: Path, make_schema: MakeSchema, change: Change, named: tuple[str, ...]
) -> None:
    cols = _columns()
    change(cols)
    path = _write(tmp_path / "a.parquet", _table(cols))
    with pytest.raises(StorageError) as err:
        _run(root, [path], schema=make_schema())
    assert err.value.reason == "InvalidArgument"
    for text in named:
        assert text in err.value.message, (text, err.value.message)
    _nothing_visible(root)


def test_unknown_column_without_dynamic_field(tmp_path: Path, root: Path, make_schema: MakeSchema) -> None:
    path = _write(tmp_path / "a.parquet", _table(_columns()))
    with pytest.raises(StorageError) as err:
        _run(root, [path], schema=make_schema(dynamic=False))
    assert err.value.reason == "InvalidArgument"
    assert (
        "'genre'" in err.value.message
        and "no dynamic field" in err.value.message
        and "a.parquet" in err.value.message
    )
    _nothing_visible(root)


def test_duplicate_key_across_files_and_bad_files(
    tmp_path: Path, root: Path, make_schema: MakeSchema
) -> None:
    a = _write(tmp_path / "a.parquet", _table(_columns()))
    b = _write(tmp_path / "b.parquet", _table(_columns(30, first_pk=1100)))  # 1100..1129 repeat a's keys
    with pytest.raises(StorageError) as err:
        _run(root, [a, b], schema=make_schema())
    assert "b.parquet row group 0" in err.value.message and "duplicate primary key 1100" in err.value.message
    _nothing_visible(root)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(StorageError) as err:
        _run(root, [a, tmp_path / "junk.parquet"], schema=make_schema())
    assert "junk.parquet" in err.value.message and "cannot read as Parquet" in err.value.message
    with pytest.raises(StorageError) as err:
        _run(root, [tmp_path / "nope.parquet"], schema=make_schema())
    assert "nope.parquet" in err.value.message
    with pytest.raises(StorageError) as err:
        _run(root, [a], schema=make_schema(), vectors={"intro": a})
    assert "not both" in err.value.message
    empty = _write(tmp_path / "empty.parquet", _table(_columns()).slice(0, 0))
    with pytest.raises(StorageError) as err:
        _run(root, [empty], schema=make_schema())
    assert "0 rows" in err.value.message
    _nothing_visible(root)


def test_failure_after_segments_were_staged_publishes_none(
    tmp_path: Path, root: Path, make_schema: MakeSchema, writer: Any
) -> None:
    """Into an existing collection: three segments are staged before row group 3 turns out bad;
    nothing appears, the existing collection is untouched and staging is empty."""
    cols = _columns()
    cols["rating"] = list(cols["rating"][:155]) + [float("inf")] * 5
    with pytest.raises(StorageError) as err:
        _run(root, [_write(tmp_path / "a.parquet", _table(cols))], segment_rows=40)
    assert "row group 3" in err.value.message and "'rating'" in err.value.message
    reader = FilesystemReader(root)
    assert reader.partitions("book") == ["_default"]  # the partition was never created
    assert list((root / "book" / STAGING_DIR).iterdir()) == []


def test_schema_mismatch_is_found_before_any_work(
    tmp_path: Path, root: Path, make_schema: MakeSchema, writer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_reading(*args: Any) -> None:
        raise AssertionError("data read although the schema differs")

    monkeypatch.setattr(parquet_module.ParquetInput, "batches", no_reading)
    path = _write(
        tmp_path / "a.parquet", _table({k: v for k, v in _columns().items() if k not in ("genre", "award")})
    )
    with pytest.raises(StorageError) as err:
        _run(root, [path], schema=make_schema(dynamic=False))
    assert err.value.reason == "SchemaMismatch"


def test_ingest_cli_parquet(
    tmp_path: Path, make_schema: MakeSchema, capsys: pytest.CaptureFixture[str]
) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(schema_to_dict(make_schema())))
    path = _write(tmp_path / "a.parquet", _table(_columns()))
    root = tmp_path / "root"
    args = ["--root", str(root), "--collection", "book", "--schema", str(schema_file), "--threads", "1"]
    assert ingest_main([*args, "--parquet", str(path), "--segment-rows", "100"]) == 0
    out, err = capsys.readouterr()
    assert "ingested 160 rows into book/_default: 2 segments" in out and "ingest book/_default" in err
    assert ingest_main([*args, "--parquet", str(path), "--segment-bytes", "64Ki", "--partition", "p"]) == 0
    assert "segments" in capsys.readouterr().out
    bad = _columns()
    bad["title"][5] = None
    _write(tmp_path / "bad.parquet", _table(bad))
    assert ingest_main([*args, "--parquet", str(tmp_path / "bad.parquet"), "--partition", "q"]) == 2
    err = capsys.readouterr().err
    assert "InvalidArgument" in err and "bad.parquet row group 0" in err and "'title'" in err
    assert "Traceback" not in err and FilesystemReader(root).partitions("book") == ["_default", "p"]
    assert ingest_main([*args, "--parquet", str(path), "--segment-bytes", "lots"]) == 2
    assert "--segment-bytes" in capsys.readouterr().err


def test_missing_pyarrow_is_a_clear_error(
    tmp_path: Path, root: Path, make_schema: MakeSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    with pytest.raises(StorageError) as err:
        _run(root, [tmp_path / "a.parquet"], schema=make_schema())
    assert err.value.reason == "MissingDependency" and "vectorload[parquet]" in err.value.message
