"""The search answer encoded straight from the merged columns (`convert.search_result_columns`)
is the very message the per-hit path (`convert.search_result` over `HitColumns.hits()`) builds:
random answers, int and varchar primary keys, every metric, offsets, rounding, output fields and
dynamic keys; and pymilvus reads it back the same."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus.client.search_result import SearchResult

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.wire.hits import HitColumns
from vectorload_proxy import convert

INT_SCHEMA = CollectionSchema(
    name="book",
    fields=(
        FieldSchema("book_id", "int64", is_primary=True),
        FieldSchema("title", "varchar", max_length=64),
        FieldSchema("rating", "float"),
        FieldSchema("intro", "float_vector", dim=4, metric="l2"),
    ),
    dynamic_field=True,
)
STR_SCHEMA = CollectionSchema(
    name="doc",
    fields=(
        FieldSchema("doc_id", "varchar", is_primary=True, max_length=32),
        FieldSchema("n", "int64"),
        FieldSchema("emb", "float_vector", dim=2, metric="ip"),
    ),
    dynamic_field=False,
)


def random_columns(rng: np.random.Generator, str_ids: bool, with_fields: bool, k: int) -> HitColumns:
    nq = int(rng.integers(1, 12))
    counts = rng.integers(0, k + 1, size=nq).astype(np.int64)
    total = int(counts.sum())
    distances = rng.standard_normal(total).astype(np.float32) * np.float32(3)
    if total:  # some ties, an infinity: the values the rule and the encoders must carry as they are
        distances[rng.integers(0, total, size=max(1, total // 5))] = np.float32(0.5)
        distances[int(rng.integers(0, total))] = np.float32(np.inf)
    raw_ids = rng.integers(-(2**62), 2**62, size=total)
    ids: np.ndarray
    if str_ids:
        ids = np.empty(total, dtype=object)
        ids[:] = [f"d-{v}" for v in raw_ids.tolist()]
    else:
        ids = raw_ids.astype(np.int64)
    fields = None
    if with_fields:
        fields = [
            {"title": f"t{i}", "rating": float(rng.standard_normal()), "n": i, "genre": ["x", None][i % 2]}
            for i in range(total)
        ]
    partitions = ("_default", "novel")
    return HitColumns(
        counts=counts,
        ids=ids,
        distances=distances,
        partitions=partitions,
        partition_index=rng.integers(0, 2, size=total).astype(np.int64),
        fields=fields,
    )


@pytest.mark.parametrize("seed", range(40))
def test_columns_encode_as_the_hit_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    str_ids = seed % 2 == 1
    schema = STR_SCHEMA if str_ids else INT_SCHEMA
    with_fields = seed % 3 != 0
    top_k = int(rng.integers(1, 8))
    offset = int(rng.integers(0, 4)) if seed % 4 else 0
    columns = random_columns(rng, str_ids, with_fields, top_k + offset)
    metric = ["l2", "ip", "cosine", None][seed % 4]
    round_decimal = [-1, 0, 2, 6][(seed // 4) % 4]
    if str_ids:
        outputs: tuple[str, ...] = [(), ("n",), ("doc_id", "n")][seed % 3]
    else:
        outputs = [(), ("title", "rating"), ("book_id", "title", "genre"), ("$meta", "rating")][seed % 4]
    expected = convert.search_result(schema, columns.hits(), top_k, outputs, metric, round_decimal, offset)
    got = convert.search_result_columns(schema, columns, top_k, outputs, metric, round_decimal, offset)
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    assert SearchResult(got).__str__() == SearchResult(expected).__str__()


def test_columns_of_a_node_answer_keep_the_float32_distances() -> None:
    columns = HitColumns(
        counts=np.asarray([2, 1], dtype=np.int64),
        ids=np.asarray([7, 9, 3], dtype=np.int64),
        distances=np.asarray([0.1, 0.2, 0.3], dtype=np.float32),
        partitions=("p",),
        partition_index=np.zeros(3, dtype=np.int64),
    )
    data = convert.search_result_columns(INT_SCHEMA, columns, 2, (), "cosine")
    parsed = SearchResult(data)
    assert [[h["book_id"] for h in q] for q in parsed] == [[7, 9], [3]]
    assert list(data.scores) == pytest.approx([0.9, 0.8, 0.7])
    assert list(data.topks) == [2, 1] and data.num_queries == 2 and data.top_k == 2
    window = convert.search_result_columns(INT_SCHEMA, columns, 1, (), "l2", offset=1)
    assert list(window.ids.int_id.data) == [9] and list(window.topks) == [1, 0]


def test_an_empty_answer() -> None:
    columns = HitColumns(
        counts=np.zeros(3, dtype=np.int64),
        ids=np.zeros(0, dtype=np.int64),
        distances=np.zeros(0, dtype=np.float32),
        partitions=(),
        partition_index=np.zeros(0, dtype=np.int64),
    )
    got = convert.search_result_columns(INT_SCHEMA, columns, 5, ("title",), "l2", offset=2)
    expected = convert.search_result(INT_SCHEMA, columns.hits(), 5, ("title",), "l2", offset=2)
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    assert list(got.topks) == [0, 0, 0]
