"""Writer -> reader round trips, catalog discovery and reader errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload.storage.api import DYNAMIC_FIELD, CollectionSchema, StorageError
from vectorload.storage.columns import read_column, read_jsonl
from vectorload.storage.hnsw import open_index
from vectorload.storage.reader import FilesystemReader, segment_file_rel_path, verify_file
from vectorload.storage.writer import CollectionWriter

MakeSchema = Callable[..., CollectionSchema]
MakeInputs = Callable[..., dict[str, Any]]


def test_segment_round_trip(writer: CollectionWriter, root: Path, make_inputs: MakeInputs) -> None:
    inputs = make_inputs(rows=60)
    manifest = writer.write_segment(
        "book", "_default", "seg-1", **inputs, M=8, ef_construction=50, num_threads=1
    )
    reader = FilesystemReader(root)
    assert reader.segments("book", "_default") == [manifest]
    assert reader.segment("book", "_default", "seg-1") == manifest
    assert manifest.rows == 60
    assert set(manifest.files) == {
        "book_id",
        "title",
        "word_count",
        "rating",
        "in_print",
        "intro",
        "cover",
        DYNAMIC_FIELD,
    }
    assert manifest.index_params == {
        "intro": {"M": 8, "ef_construction": 50},
        "cover": {"M": 8, "ef_construction": 50},
    }
    for name, entry in manifest.files.items():
        verify_file(reader.backend, segment_file_rel_path(manifest, name), entry)
        assert reader.segment_file_path(manifest, name).stat().st_size == entry.bytes
    schema = reader.schema("book")
    for name in ("book_id", "word_count", "in_print"):
        column = read_column(reader.segment_file_path(manifest, name), schema.field(name))  # type: ignore[arg-type]
        expected = inputs["primary_keys"] if name == "book_id" else inputs["scalars"][name]
        assert np.array_equal(column, expected)
    rating = read_column(reader.segment_file_path(manifest, "rating"), schema.field("rating"))  # type: ignore[arg-type]
    assert np.asarray(rating).dtype == np.float32 and np.allclose(rating, inputs["scalars"]["rating"])
    title_field = schema.field("title")
    assert title_field is not None
    assert read_column(reader.segment_file_path(manifest, "title"), title_field) == inputs["scalars"]["title"]
    assert read_jsonl(reader.segment_file_path(manifest, DYNAMIC_FIELD)) == inputs["dynamic"]


@pytest.mark.parametrize("field_name", ["intro", "cover"])
def test_index_labels_are_row_positions(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs, field_name: str
) -> None:
    inputs = make_inputs(rows=80)
    manifest = writer.write_segment("book", "_default", None, **inputs, num_threads=1)
    reader = FilesystemReader(root)
    field = reader.schema("book").field(field_name)
    assert field is not None
    index = open_index(reader.segment_file_path(manifest, field_name), field, ef=100)
    vectors = inputs["vectors"][field_name]
    labels, _ = index.knn_query(vectors, k=1)
    assert np.array_equal(labels[:, 0], np.arange(80))
    assert index.space == ("l2" if field_name == "intro" else "cosine")


def test_varchar_primary_keys(root: Path, make_schema: MakeSchema, make_inputs: MakeInputs) -> None:
    writer = CollectionWriter(root)
    schema = make_schema(pk_type="varchar")
    writer.create_collection(schema)
    inputs = make_inputs(rows=5)
    inputs["primary_keys"] = ["a", "b", "ç", "", "e"]
    manifest = writer.write_segment("book", "_default", "s", **inputs, num_threads=1)
    path = FilesystemReader(root).segment_file_path(manifest, "book_id")
    assert path.name == "book_id.vstr"
    assert read_column(path, schema.primary_key) == ["a", "b", "ç", "", "e"]


def test_no_dynamic_file_without_dynamic_field(
    root: Path, make_schema: MakeSchema, make_inputs: MakeInputs
) -> None:
    writer = CollectionWriter(root)
    writer.create_collection(make_schema(dynamic=False))
    inputs = make_inputs(rows=5)
    inputs["dynamic"] = None
    manifest = writer.write_segment("book", "_default", "s", **inputs, num_threads=1)
    assert DYNAMIC_FIELD not in manifest.files


def test_dynamic_none_writes_empty_objects(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    inputs = make_inputs(rows=3)
    inputs["dynamic"] = None
    manifest = writer.write_segment("book", "_default", "s", **inputs, num_threads=1)
    assert read_jsonl(FilesystemReader(root).segment_file_path(manifest, DYNAMIC_FIELD)) == [{}, {}, {}]


def test_catalog_listing(
    writer: CollectionWriter, root: Path, make_schema: MakeSchema, make_inputs: MakeInputs
) -> None:
    writer.create_partition("book", "novel")
    writer.create_partition("book", "novel")  # idempotent
    writer.create_collection(make_schema(name="other"))
    reader = FilesystemReader(root)
    assert reader.list_collections() == ["book", "other"]
    assert reader.partitions("book") == ["_default", "novel"]
    assert reader.segments("book", "novel") == []
    writer.write_segment("book", "novel", "b", **make_inputs(rows=4), num_threads=1)
    writer.write_segment("book", "novel", "a", **make_inputs(rows=4, first_pk=4), num_threads=1)
    assert [m.segment_id for m in reader.segments("book", "novel")] == ["a", "b"]


def test_reader_discovers_segments_written_after_creation(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    reader = FilesystemReader(root)
    assert reader.segments("book", "_default") == []
    writer.write_segment("book", "_default", "late", **make_inputs(rows=3), num_threads=1)
    assert [m.segment_id for m in reader.segments("book", "_default")] == ["late"]
    writer.create_partition("book", "poetry")
    assert "poetry" in reader.partitions("book")


def test_segment_without_manifest_is_invisible(writer: CollectionWriter, root: Path) -> None:
    half = root / "book" / "_default" / "half"
    half.mkdir()
    (half / "intro.hnsw").write_bytes(b"partial")
    reader = FilesystemReader(root)
    assert reader.segments("book", "_default") == []
    with pytest.raises(StorageError) as err:
        reader.segment("book", "_default", "half")
    assert err.value.reason == "SegmentNotFound" and "half" in err.value.message


def test_create_collection_idempotent_and_mismatch(root: Path, make_schema: MakeSchema) -> None:
    writer = CollectionWriter(root)
    writer.create_collection(make_schema())
    writer.create_collection(make_schema())
    with pytest.raises(StorageError) as err:
        writer.create_collection(make_schema(dynamic=False))
    assert err.value.reason == "SchemaMismatch" and "book" in err.value.message
    assert FilesystemReader(root).schema("book") == make_schema()


def test_segment_exists(writer: CollectionWriter, make_inputs: MakeInputs) -> None:
    writer.write_segment("book", "_default", "s1", **make_inputs(rows=3), num_threads=1)
    with pytest.raises(StorageError) as err:
        writer.write_segment("book", "_default", "s1", **make_inputs(rows=3), num_threads=1)
    assert err.value.reason == "SegmentExists" and "s1" in err.value.message


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda r: r.schema("nope"), "CollectionNotFound"),
        (lambda r: r.partitions("nope"), "CollectionNotFound"),
        (lambda r: r.segments("book", "nope"), "PartitionNotFound"),
        (lambda r: r.segment("book", "_default", "nope"), "SegmentNotFound"),
        (lambda r: r.schema("../etc"), "InvalidName"),
        (lambda r: r.segments("book", "a/b"), "InvalidName"),
        (lambda r: r.segment("book", "_default", "../x"), "InvalidName"),
    ],
)
def test_reader_errors(writer: CollectionWriter, root: Path, call: object, reason: str) -> None:
    reader = FilesystemReader(root)
    with pytest.raises(StorageError) as err:
        call(reader)  # type: ignore[operator]
    assert err.value.reason == reason


def test_corrupt_manifest_and_collection_file(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    manifest = writer.write_segment("book", "_default", "s", **make_inputs(rows=3), num_threads=1)
    reader = FilesystemReader(root)
    path = root / "book" / "_default" / "s" / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text("{not json")
    with pytest.raises(StorageError) as err:
        reader.segments("book", "_default")
    assert err.value.reason == "CorruptManifest" and "s/manifest.json" in err.value.message
    data["files"]["intro"]["path"] = "../../escape"
    path.write_text(json.dumps(data))
    with pytest.raises(StorageError) as err:
        reader.segment("book", "_default", "s")
    assert err.value.reason == "CorruptManifest" and "intro" in err.value.message
    data["files"]["intro"]["path"] = manifest.files["intro"].path
    data["segmentId"] = "other"
    path.write_text(json.dumps(data))
    with pytest.raises(StorageError) as err:
        reader.segment("book", "_default", "s")
    assert err.value.reason == "CorruptManifest" and "location" in err.value.message
    (root / "book" / "collection.json").write_text('{"name": "book"}')
    with pytest.raises(StorageError) as err:
        reader.schema("book")
    assert err.value.reason == "CorruptManifest" and "collection.json" in err.value.message


def test_segment_file_path_unknown_field(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    manifest = writer.write_segment("book", "_default", "s", **make_inputs(rows=3), num_threads=1)
    with pytest.raises(StorageError) as err:
        FilesystemReader(root).segment_file_path(manifest, "nope")
    assert err.value.reason == "FieldNotFound" and "nope" in err.value.message


def test_manifest_bytes_for(writer: CollectionWriter, make_inputs: MakeInputs) -> None:
    manifest = writer.write_segment("book", "_default", "s", **make_inputs(rows=10), num_threads=1)
    files = manifest.files
    assert manifest.bytes_for(None, include_dynamic=True) == manifest.total_bytes
    only = manifest.bytes_for(frozenset({"intro", "book_id"}), include_dynamic=False)
    assert only == files["intro"].bytes + files["book_id"].bytes


def test_reader_imports_neither_numpy_nor_hnswlib() -> None:
    """The operator reads catalogs through the reader; it must stay light."""
    import subprocess
    import sys

    code = (
        "import sys, vectorload.storage.reader, vectorload.storage.schema_json, vectorload.storage.fs;"
        "print(sorted(m for m in ('numpy', 'hnswlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
