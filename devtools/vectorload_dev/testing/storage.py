"""Helpers of the storage tests (`tests/unit/storage/`): a small schema covering every field
kind, segment inputs that match it, a writer with the collection created. A module, not conftest
code, so that a child process of a test (the killed-writer test) imports it like the tests do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.writer import CollectionWriter

DIM = 8


def small_schema(name: str = "book", dynamic: bool = True, pk_type: str = "int64") -> CollectionSchema:
    return CollectionSchema(
        name=name,
        fields=(
            FieldSchema("book_id", pk_type, is_primary=True),  # type: ignore[arg-type]
            FieldSchema("title", "varchar", max_length=32),
            FieldSchema("word_count", "int64"),
            FieldSchema("rating", "float"),
            FieldSchema("in_print", "bool"),
            FieldSchema("intro", "float_vector", dim=DIM, metric="l2"),
            FieldSchema("cover", "float_vector", dim=4, metric="cosine"),
        ),
        dynamic_field=dynamic,
    )


def segment_inputs(rows: int = 50, seed: int = 0, first_pk: int = 0) -> dict[str, Any]:
    """Keyword arguments for `CollectionWriter.write_segment` matching `small_schema()`."""
    rng = np.random.default_rng(seed)
    return {
        "vectors": {
            "intro": rng.normal(size=(rows, DIM)).astype(np.float32),
            "cover": rng.normal(size=(rows, 4)).astype(np.float32),
        },
        "primary_keys": np.arange(first_pk, first_pk + rows, dtype=np.int64),
        "scalars": {
            "title": [f"title ünïcode {i}" for i in range(rows)],
            "word_count": rng.integers(0, 10_000, size=rows),
            "rating": rng.uniform(1, 5, size=rows).astype(np.float32),
            "in_print": rng.random(rows) < 0.5,
        },
        "dynamic": [{"genre": "poem", "year": 1900 + i} if i % 2 else {} for i in range(rows)],
    }


def writer_with_collection(root: Path, dynamic: bool = True, pk_type: str = "int64") -> CollectionWriter:
    writer = CollectionWriter(root)
    writer.create_collection(small_schema(dynamic=dynamic, pk_type=pk_type))
    return writer


def visible_rows(root: Path, collection: str = "book") -> dict[tuple[str, Any], tuple[int, str]]:
    """What a reader of the whole collection sees, computed the plain way (not with the code under
    test): (partition, primary key) -> (`$ts`, title) of the newest row among the live segments
    (equal timestamps: the larger segment id), minus rows a delete hides (a delete of the key in
    the row's partition or in every partition, at a timestamp newer than the row's)."""
    from vectorload.storage.api import TS_FIELD
    from vectorload.storage.columns import read_column, read_npy, read_varchar
    from vectorload.storage.reader import FilesystemReader

    reader = FilesystemReader(root)
    schema = reader.schema(collection)
    pk = schema.primary_key
    title = schema.field("title")
    best: dict[tuple[str, Any], tuple[int, str, str]] = {}
    for partition in reader.partitions(collection):
        for m in reader.segments(collection, partition):
            keys = list(read_column(reader.segment_file_path(m, pk.name), pk))
            titles = (
                list(read_column(reader.segment_file_path(m, "title"), title))
                if title is not None
                else [""] * m.rows
            )
            ts = (
                [int(t) for t in read_npy(reader.segment_file_path(m, TS_FIELD))]
                if TS_FIELD in m.files
                else [0] * m.rows
            )
            for key, t, text in zip(keys, ts, titles, strict=True):
                k = (partition, key.item() if hasattr(key, "item") else key)
                if k not in best or (t, m.segment_id) > best[k][:2]:
                    best[k] = (t, m.segment_id, text)
    deleted: dict[tuple[str | None, Any], int] = {}
    for delta in reader.deltas(collection):
        base = f"{collection}/.deltas/{delta.delta_id}"
        key_file = root / base / delta.files[pk.name].path
        keys = read_varchar(key_file) if pk.type == "varchar" else [int(v) for v in read_npy(key_file)]
        stamps = [int(v) for v in read_npy(root / base / delta.files[TS_FIELD].path)]
        for key, t in zip(keys, stamps, strict=True):
            deleted[(delta.partition, key)] = max(deleted.get((delta.partition, key), 0), t)
    out: dict[tuple[str, Any], tuple[int, str]] = {}
    for (partition, key), (t, _, text) in best.items():
        newest_delete = max(deleted.get((None, key), 0), deleted.get((partition, key), 0))
        if newest_delete <= t:
            out[(partition, key)] = (t, text)
    return out
