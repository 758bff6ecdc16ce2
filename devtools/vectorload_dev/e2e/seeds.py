"""The collections the seed documents' client code talks about, small and deterministic.

The seeds name two collections: `my_collection` (fields `my_id` and `my_vector`, loaded whole,
with `load_fields=["my_id", "my_vector"]` and `skip_load_dynamic_field`) and `book` (partitions
`novel` and `poetry`, released partition by partition). The SDK tests (`tests/sdk`), the pymilvus
scenarios (`tests/e2e/test_proxy_system.py`) and the runs against a real Milvus all use exactly
these rows, so one expected output fits every backend: a search for row `MY_QUERY_ID`'s vector
finds that row first, and one for `BOOK_QUERY_ID`'s (a `poetry` row) finds it first in `poetry`.

`write_storage(root)` writes them as a vectorload storage root (what the chart's querynodes and
proxy read); `arrays()` gives the same rows to whoever fills a real Milvus with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import DEFAULT_PARTITION, CollectionSchema, FieldSchema
from vectorload.storage.writer import CollectionWriter

MY_COLLECTION = "my_collection"
MY_DIM = 8
MY_ROWS = 100
MY_QUERY_ID = 7
BOOK = "book"
BOOK_DIM = 64
BOOK_PARTITIONS = (DEFAULT_PARTITION, "novel", "poetry")
BOOK_ROWS_PER_PARTITION = 100
BOOK_QUERY_ID = 250  # in `poetry`: ids 200..299
COLORS = ("red", "blue")
SEED = 7


@dataclass(frozen=True)
class SeedArrays:
    my_vectors: npt.NDArray[np.float32]  # MY_ROWS x MY_DIM, row i has my_id i
    book_vectors: npt.NDArray[np.float32]  # 300 x BOOK_DIM, row i has book_id i

    def my_varchar(self, i: int) -> str:
        return f"v{i}"

    def color(self, i: int) -> str:
        return COLORS[i % len(COLORS)]

    def book_partition(self, i: int) -> str:
        return BOOK_PARTITIONS[i // BOOK_ROWS_PER_PARTITION]

    @property
    def my_query(self) -> list[float]:
        return [float(x) for x in self.my_vectors[MY_QUERY_ID]]

    @property
    def book_query(self) -> list[float]:
        return [float(x) for x in self.book_vectors[BOOK_QUERY_ID]]


def arrays() -> SeedArrays:
    rng = np.random.default_rng(SEED)
    my_vectors = rng.normal(size=(MY_ROWS, MY_DIM)).astype(np.float32)
    book_vectors = rng.normal(size=(len(BOOK_PARTITIONS) * BOOK_ROWS_PER_PARTITION, BOOK_DIM))
    return SeedArrays(my_vectors, book_vectors.astype(np.float32))


def my_collection_schema() -> CollectionSchema:
    return CollectionSchema(
        name=MY_COLLECTION,
        fields=(
            FieldSchema("my_id", "int64", is_primary=True),
            FieldSchema("my_vector", "float_vector", dim=MY_DIM, metric="l2"),
            FieldSchema("my_varchar", "varchar", max_length=64),
        ),
        dynamic_field=True,
    )


def book_schema() -> CollectionSchema:
    return CollectionSchema(
        name=BOOK,
        fields=(
            FieldSchema("book_id", "int64", is_primary=True),
            FieldSchema("word_count", "int64"),
            FieldSchema("book_intro", "float_vector", dim=BOOK_DIM, metric="l2"),
        ),
        dynamic_field=False,
    )


def write_storage(root: Path, num_threads: int = 1) -> SeedArrays:
    """Both collections into the storage root `root` (which must not hold them yet)."""
    data = arrays()
    writer = CollectionWriter(root)
    writer.create_collection(my_collection_schema())
    ids = np.arange(MY_ROWS, dtype=np.int64)
    writer.write_segment(
        MY_COLLECTION,
        DEFAULT_PARTITION,
        None,
        vectors={"my_vector": data.my_vectors},
        primary_keys=ids,
        scalars={"my_varchar": [data.my_varchar(i) for i in range(MY_ROWS)]},
        dynamic=[{"color": data.color(i)} for i in range(MY_ROWS)],
        num_threads=num_threads,
    )
    writer.create_collection(book_schema())
    for k, partition in enumerate(BOOK_PARTITIONS):
        if partition != DEFAULT_PARTITION:
            writer.create_partition(BOOK, partition)
        rows = slice(k * BOOK_ROWS_PER_PARTITION, (k + 1) * BOOK_ROWS_PER_PARTITION)
        book_ids = np.arange(rows.start, rows.stop, dtype=np.int64)
        writer.write_segment(
            BOOK,
            partition,
            None,
            vectors={"book_intro": data.book_vectors[rows]},
            primary_keys=book_ids,
            scalars={"word_count": book_ids * 10},
            num_threads=num_threads,
        )
    return data


def save_npz(path: Path) -> Path:
    """The rows as one .npz for `tests/sdk/milvus_setup.py` (which fills a real Milvus)."""
    data = arrays()
    np.savez(
        path,
        my_vectors=data.my_vectors,
        book_vectors=data.book_vectors,
        colors=np.array([data.color(i) for i in range(MY_ROWS)]),
        book_partitions=np.array(BOOK_PARTITIONS),
    )
    return path
