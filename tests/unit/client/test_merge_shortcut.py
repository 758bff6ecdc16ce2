"""`merge_columns` with one node's answer returns it as it is only when the merge would give the
very same columns (`already_merged`): random answers, from ones the rule already produced to
ones with too many hits, ties, repeated keys, unsorted distances, NaN and string keys."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vectorload.client import merge_columns
from vectorload.client.merge import already_merged
from vectorload.wire.hits import HitColumns, merge


def columns_equal(a: HitColumns, b: HitColumns) -> bool:
    return (
        np.array_equal(a.counts, b.counts)
        and a.ids.dtype == b.ids.dtype
        and np.array_equal(a.ids, b.ids)
        and a.distances.dtype == b.distances.dtype
        and np.array_equal(a.distances, b.distances, equal_nan=True)
        and a.partitions == b.partitions
        and np.array_equal(a.partition_index, b.partition_index)
        and a.fields == b.fields
    )


def node_answer(rng: np.random.Generator, nq: int, k: int, kind: str) -> HitColumns:
    counts = rng.integers(0, k + 1, size=nq).astype(np.int64)
    counts[0] = k + 1 if kind == "too_many" else k  # the changes below are to query 0's hits
    total = int(counts.sum())
    distances = np.concatenate(
        [np.sort(rng.random(int(c)).astype(np.float32)) for c in counts] or [np.zeros(0, np.float32)]
    )
    ids: Any = rng.choice(10**9, size=total, replace=False).astype(np.int64)
    if total >= 2:
        if kind == "tie":
            distances[1] = distances[0]
        elif kind == "duplicate":
            ids[1] = ids[0]
        elif kind == "unsorted":
            distances[[0, 1]] = distances[[1, 0]]
        elif kind == "nan":
            distances[1] = np.nan
    if kind == "strings":
        ids = np.asarray([f"k{v}" for v in ids.tolist()], dtype=object)
    fields = [{"n": i} for i in range(total)] if kind == "fields" else None
    partitions = ("a", "a") if kind == "same_partition_twice" else ("a", "b")
    return HitColumns(
        counts=counts,
        ids=ids,
        distances=distances,
        partitions=partitions,
        partition_index=rng.integers(0, 2, size=total).astype(np.int64),
        fields=fields,
    )


KINDS = [
    "clean",
    "fields",
    "too_many",
    "tie",
    "duplicate",
    "unsorted",
    "nan",
    "strings",
    "same_partition_twice",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(8))
def test_one_answer_is_what_the_merge_gives(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    nq, k = int(rng.integers(1, 30)), int(rng.integers(2, 12))
    answer = node_answer(rng, nq, k, kind)
    if kind == "nan":
        assert not already_merged(answer, k)  # never short-cut: the merge decides what NaN does
        return
    merged = merge([answer], k)
    assert columns_equal(merge_columns([answer], nq, k), merged)
    if kind in ("clean", "fields"):
        assert already_merged(answer, k) and columns_equal(merged, answer)
    else:
        assert not already_merged(answer, k)
