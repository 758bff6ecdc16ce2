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
