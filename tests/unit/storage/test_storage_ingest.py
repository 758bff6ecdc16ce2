"""ingest(): .npy vectors + JSONL rows (with dynamic keys) into sealed segments."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload.storage import ingest as ingest_module
from vectorload.storage import writer as writer_module
from vectorload.storage.api import DYNAMIC_FIELD, CollectionSchema, FieldSchema, StorageError
from vectorload.storage.columns import read_column, read_jsonl
from vectorload.storage.hnsw import open_index
from vectorload.storage.ingest import ingest
from vectorload.storage.reader import FilesystemReader

MakeSchema = Callable[..., CollectionSchema]
ROWS = 70


def _rows(n: int = ROWS) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        row: dict[str, Any] = {
            "book_id": 1000 + i,
            "title": f"t{i}",
            "word_count": i * 10,
            "rating": i / 10,
            "in_print": i % 2 == 0,
        }
        if i % 3 == 0:
            row["genre"] = "poem"
        if i % 7 == 0:
            row["award"] = {"name": "x", "year": 2000 + i}
        out.append(row)
    return out


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    paths = {
        "intro": tmp_path / "intro.npy",
        "cover": tmp_path / "cover.npy",
        "rows": tmp_path / "rows.jsonl",
    }
    np.save(paths["intro"], rng.normal(size=(ROWS, 8)).astype(np.float32))
    np.save(paths["cover"], rng.normal(size=(ROWS, 4)))  # float64 is accepted and converted
    _write_rows(paths["rows"], _rows())
    return paths


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")


def _run(root: Path, files: dict[str, Path], **kwargs: Any) -> list[Any]:
    args: dict[str, Any] = {
        "vectors": {"intro": files["intro"], "cover": files["cover"]},
        "rows_jsonl": files["rows"],
        "segment_rows": 30,
        "progress": False,
        "num_threads": 1,
    }
    args |= kwargs
    return ingest(root, "book", "novel", **args)


def test_ingest_round_trip(root: Path, files: dict[str, Path], make_schema: MakeSchema) -> None:
    stream = io.StringIO()
    manifests = _run(root, files, schema=make_schema(), progress=True, stream=stream, M=8, ef_construction=40)
    assert [m.rows for m in manifests] == [30, 30, 10]
    assert "ingest book/novel" in stream.getvalue() and "100.0%" in stream.getvalue()
    reader = FilesystemReader(root)
    assert reader.segments("book", "novel") == manifests
    assert manifests[0].index_params["intro"] == {"M": 8, "ef_construction": 40}
    schema = reader.schema("book")
    rows = _rows()
    keys: list[int] = []
    meta: list[dict[str, Any]] = []
    titles: list[str] = []
    for m in manifests:
        keys += list(read_column(reader.segment_file_path(m, "book_id"), schema.primary_key))
        titles += list(read_column(reader.segment_file_path(m, "title"), schema.field("title")))  # type: ignore[arg-type]
        meta += read_jsonl(reader.segment_file_path(m, DYNAMIC_FIELD))
    assert keys == [r["book_id"] for r in rows]
    assert titles == [r["title"] for r in rows]
    assert meta[0] == {"genre": "poem", "award": {"name": "x", "year": 2000}}
    assert meta[1] == {} and meta[3] == {"genre": "poem"}
    intro = np.load(files["intro"])
    field = schema.field("intro")
    assert field is not None
    index = open_index(reader.segment_file_path(manifests[1], "intro"), field, ef=50)
    labels, _ = index.knn_query(intro[30:60], k=1)
    assert np.array_equal(labels[:, 0], np.arange(30))


def test_ingest_into_existing_collection(writer: Any, root: Path, files: dict[str, Path]) -> None:
    manifests = _run(root, files, segment_rows=100)
    assert len(manifests) == 1 and manifests[0].rows == ROWS
    assert FilesystemReader(root).partitions("book") == ["_default", "novel"]


def test_vectors_only_collection_without_rows(root: Path, files: dict[str, Path]) -> None:
    schema = CollectionSchema(
        "vecs",
        (FieldSchema("id", "int64", is_primary=True), FieldSchema("v", "float_vector", dim=8, metric="ip")),
        dynamic_field=False,
    )
    (m,) = ingest(root, "vecs", vectors={"v": files["intro"]}, schema=schema, progress=False, num_threads=1)
    path = FilesystemReader(root).segment_file_path(m, "id")
    assert list(read_column(path, schema.primary_key)) == list(range(ROWS))
    assert m.partition == "_default" and DYNAMIC_FIELD not in m.files
    dynamic = CollectionSchema("dyn", schema.fields, dynamic_field=True)
    (d,) = ingest(root, "dyn", vectors={"v": files["intro"]}, schema=dynamic, progress=False, num_threads=1)
    assert read_jsonl(FilesystemReader(root).segment_file_path(d, DYNAMIC_FIELD)) == [{}] * ROWS


Prepare = Callable[[dict[str, Path]], dict[str, Any]]


def _edit(change: Callable[[list[dict[str, Any]]], object]) -> Prepare:
    def prepare(files: dict[str, Path]) -> dict[str, Any]:
        rows = _rows()
        change(rows)
        _write_rows(files["rows"], rows)
        return {}

    return prepare


def _text(text: str) -> Prepare:
    def prepare(files: dict[str, Path]) -> dict[str, Any]:
        files["rows"].write_text(text)
        return {}

    return prepare


def _npy(name: str, array: np.ndarray[Any, Any]) -> Prepare:
    def prepare(files: dict[str, Path]) -> dict[str, Any]:
        np.save(files[name], array)
        return {}

    return prepare


def _vectors(*names: str) -> Prepare:
    return lambda f: {"vectors": {n: f.get(n, f["cover"]) for n in names}}


ERRORS: list[tuple[str, Prepare, str]] = [
    ("missing scalar", _edit(lambda r: r[5].pop("rating")), "'rating'"),
    ("null scalar", _edit(lambda r: r[5].update(title=None)), "'title'"),
    ("missing pk", _edit(lambda r: r[2].pop("book_id")), "'book_id'"),
    ("duplicate pk across segments", _edit(lambda r: r[65].update(book_id=1000)), "'book_id'"),
    ("bad scalar type", _edit(lambda r: r[40].update(word_count="many")), "'word_count'"),
    ("vector key in row", _edit(lambda r: r[0].update(intro=[0.0])), "'intro'"),
    ("too few rows", _edit(lambda r: r.pop()), "69 rows"),
    ("bad json", _text('{"book_id": 1,\n'), "line 1"),
    ("not an object", _text("[1, 2]\n"), "line 1"),
    ("wrong dim", _npy("intro", np.zeros((ROWS, 5))), "'intro'"),
    ("nan vector", _npy("cover", np.full((ROWS, 4), np.nan)), "'cover'"),
    ("row counts differ", _npy("cover", np.ones((ROWS - 1, 4))), "row counts"),
    ("missing vector field", _vectors("intro"), "'cover'"),
    ("unknown vector field", _vectors("intro", "cover", "x"), "'x'"),
    ("unreadable npy", lambda f: {"vectors": {"intro": f["rows"], "cover": f["cover"]}}, "'intro'"),
    ("missing rows file", lambda f: {"rows_jsonl": f["rows"].with_name("nope.jsonl")}, "nope.jsonl"),
    ("no rows file", lambda f: {"rows_jsonl": None}, "rows file is required"),
    ("segment rows", lambda f: {"segment_rows": 0}, "segment_rows"),
    ("index M", lambda f: {"M": 1}, "M must be"),
    ("ef_construction", lambda f: {"ef_construction": 0}, "ef_construction"),
]


@pytest.mark.parametrize(("prepare", "named"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_writes_nothing(
    root: Path,
    files: dict[str, Path],
    make_schema: MakeSchema,
    prepare: Prepare,
    named: str,
) -> None:
    extra = prepare(files)
    with pytest.raises(StorageError) as err:
        _run(root, files, schema=make_schema(), **extra)
    assert err.value.reason == "InvalidArgument"
    assert named in err.value.message
    assert not root.exists() or FilesystemReader(root).list_collections() == []


def test_extra_keys_need_a_dynamic_field(root: Path, files: dict[str, Path], make_schema: MakeSchema) -> None:
    with pytest.raises(StorageError) as err:
        _run(root, files, schema=make_schema(dynamic=False))
    assert err.value.reason == "InvalidArgument"
    assert "'award'" in err.value.message and "line 1" in err.value.message


def test_collection_must_exist_or_schema_given(root: Path, files: dict[str, Path]) -> None:
    with pytest.raises(StorageError) as err:
        _run(root, files)
    assert err.value.reason == "CollectionNotFound" and "'book'" in err.value.message


def test_schema_must_match_existing(
    writer: Any, root: Path, files: dict[str, Path], make_schema: MakeSchema
) -> None:
    with pytest.raises(StorageError) as err:
        _run(root, files, schema=make_schema(dynamic=False), rows_jsonl=None, vectors={})
    assert err.value.reason == "InvalidArgument"  # input checked before the schema is compared
    _write_rows(files["rows"], [{k: v for k, v in r.items() if k not in ("genre", "award")} for r in _rows()])
    with pytest.raises(StorageError) as err:
        _run(root, files, schema=make_schema(dynamic=False))
    assert err.value.reason == "SchemaMismatch"


def test_default_segments_are_split_evenly(
    root: Path, files: dict[str, Path], make_schema: MakeSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a size the input is split into floor(rows / minimum) even segments (the minimum is
    `segsize.default_segment_rows`, made small here), so no short tail segment is left."""
    monkeypatch.setattr(ingest_module, "default_segment_rows", lambda schema, M: 25)
    manifests = _run(root, files, schema=make_schema(), segment_rows=None)
    assert [m.rows for m in manifests] == [35, 35]


def test_segment_bytes_target(root: Path, files: dict[str, Path], make_schema: MakeSchema) -> None:
    (whole,) = _run(root, files, schema=make_schema(), segment_rows=None)
    per_row = whole.total_bytes / ROWS
    target = int(20 * per_row)
    manifests = _run(root, files, schema=make_schema(), segment_rows=None, segment_bytes=target)
    assert len(manifests) in (3, 4, 5) and sum(m.rows for m in manifests) == ROWS
    assert all(abs(m.total_bytes - target) <= 0.2 * target for m in manifests[:-1])
    both = _run(root, files, schema=make_schema(), segment_rows=10, segment_bytes=target)
    assert [m.rows for m in both] == [10] * 7  # the smaller cap wins


def test_failure_after_staging_leaves_nothing(
    root: Path, files: dict[str, Path], make_schema: MakeSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two segments are built in staging, the third fails: no collection, no staging left."""
    real_build = writer_module.build_index
    calls: list[int] = []

    def build(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 5:  # two vector fields per segment: the third segment's first index
            raise OSError("disk full")
        real_build(*args, **kwargs)

    monkeypatch.setattr(writer_module, "build_index", build)
    with pytest.raises(OSError, match="disk full"):
        _run(root, files, schema=make_schema())
    assert len(calls) == 5
    assert not root.exists() or FilesystemReader(root).list_collections() == []
    assert not (root / "book").exists()


def test_publish_happens_only_after_every_segment_is_built(
    writer: Any, root: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    visible_while_building: list[int] = []
    real_build = writer_module.build_index

    def build(*args: Any, **kwargs: Any) -> None:
        visible_while_building.append(len(FilesystemReader(root).segments("book", "_default")))
        real_build(*args, **kwargs)

    monkeypatch.setattr(writer_module, "build_index", build)
    manifests = ingest(
        root,
        "book",
        vectors={"intro": files["intro"], "cover": files["cover"]},
        rows_jsonl=files["rows"],
        segment_rows=30,
        progress=False,
        num_threads=1,
    )
    assert len(manifests) == 3 and visible_while_building == [0] * 6
    assert FilesystemReader(root).segments("book", "_default") == manifests
