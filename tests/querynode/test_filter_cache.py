"""The `$meta` key cache is bounded (issue 13: every distinct unknown name in a filter was cached
forever, ~81 KB each, +84 MB from 1,200 names): unknown keys cost nothing after a segment's first
pass, known keys live in a node-wide LRU bounded in entries and bytes, a freed segment's columns
leave it. Checked in-process on `MetaColumn` and on a real querynode process's RSS."""

from __future__ import annotations

import gc
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing.querynode_harness import QuerynodeFactory, QuerynodeProcess, load_all
from vectorload_querynode.filter_eval import KeyValues, evaluate
from vectorload_querynode.filter_expr import bind
from vectorload_querynode.memory import resident_bytes
from vectorload_querynode.segment import MetaCacheLimits, MetaColumn, MetaKeyCache

ROWS = 5_000
KNOWN_KEYS = 300


def text_of(i: int) -> str:
    return "a" * 40 + str(i)  # what pathological patterns of `%a` chew on


def meta_rows(rows: int = ROWS) -> list[dict[str, Any]]:
    """`genre`, `year` and a distinct `note` everywhere, `award` on some rows, and one of 300
    keys `k0..k299`."""
    out: list[dict[str, Any]] = []
    for i in range(rows):
        row: dict[str, Any] = {"genre": ["sf", "poetry", "crime"][i % 3], "year": 1900 + i % 120}
        row["note"] = text_of(i)
        if i % 7 == 0:
            row["award"] = "Hugo"
        row[f"k{i % KNOWN_KEYS}"] = i
        out.append(row)
    return out


def blob_of(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def column(cache: MetaKeyCache, rows: list[dict[str, Any]] | None = None) -> MetaColumn:
    rows = meta_rows() if rows is None else rows
    return MetaColumn(blob_of(rows), len(rows), "test", cache=cache)


def decoded(values: KeyValues) -> list[Any]:
    return list(values.objects())


def test_values_are_right_and_dictionary_encoded() -> None:
    rows = meta_rows()
    meta = column(MetaKeyCache())
    genre = meta.values("genre")
    assert decoded(genre) == [r["genre"] for r in rows]
    assert len(genre.values) == 3 and genre.codes.dtype == np.int32
    assert decoded(meta.values("award")) == [r.get("award") for r in rows]
    assert decoded(meta.values("k5")) == [r.get("k5") for r in rows]
    assert meta.values("genre") is genre  # from the cache


def test_values_keep_types_apart() -> None:
    rows: list[dict[str, Any]] = [{"x": 1}, {"x": True}, {"x": 1.0}, {"x": "1"}, {"x": [1]}, {"x": {"a": 1}}]
    rows += [{}, {"x": None}]
    values = column(MetaKeyCache(), rows).values("x")
    assert [type(v) for v in values.values] == [int, bool, float, str]
    assert decoded(values) == [1, True, 1.0, "1", None, None, None, None]


def test_distinct_unknown_keys_cost_nothing() -> None:
    cache = MetaKeyCache()
    meta = column(cache)
    assert meta.has_key("genre") is None  # nothing known before the first pass
    meta.values("genre")
    assert meta.has_key("genre") and meta.has_key("k299") and meta.has_key("nope") is False
    entries, nbytes = cache.stats()
    for i in range(2_000):
        values = meta.values(f"unknown_{i}")
        assert values.codes.base is not None and values.nbytes < 200  # a broadcast -1, no rows
        assert not values.map(lambda v: True).any()
    assert cache.stats() == (entries, nbytes) == (1, meta.values("genre").nbytes)


def test_an_unknown_key_first_is_not_kept_either() -> None:
    cache = MetaKeyCache()
    meta = column(cache)
    assert not meta.values("typo").map(lambda v: True).any()
    assert cache.stats() == (0, 0) and meta.has_key("genre")


def test_known_keys_are_evicted_least_recently_used_first() -> None:
    cache = MetaKeyCache(MetaCacheLimits(max_entries=2))
    meta = column(cache)
    a, b = meta.values("k1"), meta.values("k2")
    assert meta.values("k1") is a  # touch k1: k2 is now the oldest
    meta.values("k3")
    assert cache.stats()[0] == 2
    assert meta.values("k1") is a and meta.values("k2") is not b  # k2 was evicted and re-read
    assert decoded(meta.values("k2")) == decoded(b)


def test_byte_bound_holds_for_every_known_key() -> None:
    one = column(MetaKeyCache()).values("k1").nbytes
    cache = MetaKeyCache(MetaCacheLimits(max_bytes=10 * one))
    meta = column(cache)
    for i in range(40):
        meta.values(f"k{i}")
        entries, nbytes = cache.stats()
        assert nbytes <= 10 * one and entries <= 10
    assert cache.stats()[0] == 10


def test_a_column_bigger_than_the_cache_is_answered_not_kept() -> None:
    cache = MetaKeyCache(MetaCacheLimits(max_bytes=1000))
    meta = column(cache)
    assert len(meta.values("genre").values) == 3
    assert cache.stats() == (0, 0)


def test_resize_evicts_at_once() -> None:
    cache = MetaKeyCache()
    meta = column(cache)
    for i in range(20):
        meta.values(f"k{i}")
    assert cache.stats()[0] == 20
    cache.resize(MetaCacheLimits(max_entries=5))
    assert cache.stats()[0] == 5


def test_a_freed_segment_leaves_the_cache() -> None:
    cache = MetaKeyCache()
    kept, freed = column(cache), column(cache)
    kept.values("genre")
    for key in ("genre", "year", "k1"):
        freed.values(key)
    assert cache.stats()[0] == 4
    del freed
    gc.collect()
    assert cache.stats() == (1, kept.values("genre").nbytes)


def test_too_many_distinct_keys_give_up_the_key_set_not_correctness() -> None:
    rows = [{f"unique_{i}": i} for i in range(300)]
    cache = MetaKeyCache(MetaCacheLimits(max_indexed_keys=100))
    meta = column(cache, rows)
    assert decoded(meta.values("unique_7"))[7] == 7
    assert meta.has_key("nope") is None  # unknown: every key not cached is a pass
    assert not meta.values("nope").map(lambda v: True).any()
    assert decoded(meta.values("unique_250"))[250] == 250


def test_rows_that_cannot_be_parsed_have_no_keys() -> None:
    blob = b'{"a": 1}\n{"a": ' + b"9" * 5000 + b'}\n[1, 2]\n{"a": 3}\n'  # beyond int()'s digit limit
    meta = MetaColumn(blob, 4, "test", cache=MetaKeyCache())
    assert decoded(meta.values("a")) == [1, None, None, 3]


def test_concurrent_readers_keep_the_bounds() -> None:
    cache = MetaKeyCache(MetaCacheLimits(max_entries=8))
    meta = column(cache)
    rows = meta_rows()
    errors: list[BaseException] = []

    def reader(offset: int) -> None:
        try:
            for i in range(40):
                key = f"k{(offset * 40 + i) % 60}" if i % 2 else f"nope{offset}_{i}"
                values = meta.values(key)
                assert decoded(values) == [r.get(key) for r in rows]
                assert cache.stats()[0] <= 8
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ------------------------------------------------------------------------------- through a filter

SCHEMA = CollectionSchema(
    name="m",
    fields=(
        FieldSchema("id", "int64", is_primary=True),
        FieldSchema("title", "varchar", max_length=64),
        FieldSchema("v", "float_vector", dim=2, metric="l2"),
    ),
    dynamic_field=True,
)


class Segment:
    def __init__(self, meta: MetaColumn) -> None:
        self.meta = meta

    @property
    def rows(self) -> int:
        return self.meta.rows

    def column(self, name: str) -> Any:
        raise KeyError(name)

    def meta_values(self, key: str) -> KeyValues:
        return self.meta.values(key)


def test_filters_with_many_unknown_names_stay_bounded() -> None:
    cache = MetaKeyCache()
    segment = Segment(column(cache))
    rows = meta_rows()
    mask = evaluate(bind("genre == 'sf' and award == 'Hugo'", SCHEMA).expr, segment)
    assert mask.tolist() == [r["genre"] == "sf" and r.get("award") == "Hugo" for r in rows]
    held = cache.stats()
    for i in range(2_000):
        text = f"name_{i} == 1 or $meta['other {i}'] like 'x%' or not (more_{i} in [1, 'a'])"
        assert evaluate(bind(text, SCHEMA).expr, segment).all()  # `not` of a null comparison
    assert cache.stats() == held


# ------------------------------------------------------------------------- a real querynode process

PROCESS_ROWS = 20_000  # a key column of all rows: 80 KB as int32 codes (160 KB as pointers before)


@pytest.fixture(scope="module")
def meta_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("meta")
    writer = CollectionWriter(root)
    writer.create_collection(SCHEMA)
    rng = np.random.default_rng(3)
    writer.write_segment(
        "m",
        "_default",
        "seg-0",
        {"v": rng.random((PROCESS_ROWS, 2), dtype=np.float32)},
        np.arange(PROCESS_ROWS, dtype=np.int64),
        {"title": [text_of(i) for i in range(PROCESS_ROWS)]},
        meta_rows(PROCESS_ROWS),
        M=4,
        ef_construction=8,
        num_threads=1,
    )
    return root


def query(qn: QuerynodeProcess, text: str) -> tuple[int, Any]:
    return qn.request("POST", "/v1/query", {"collection": "m", "filter": text, "limit": 5})


@pytest.mark.slow
def test_querynode_rss_stays_flat_under_2000_unknown_keys(
    querynode_factory: QuerynodeFactory, meta_root: Path
) -> None:
    qn = querynode_factory(meta_root)
    load_all(qn, meta_root, "m")
    status, body = query(qn, "genre == 'sf' and award == 'Hugo'")
    assert status == 200 and len(body["rows"]) == 5, body
    for _ in range(3):  # settle allocator pools with a few answers first
        query(qn, "nope_warmup == 1")
    before = resident_bytes(qn.pid)
    started = time.monotonic()
    for i in range(2_000):
        status, body = query(qn, f"unknown_key_{i} == {i} or other_key_{i} like 'x%'")
        assert status == 200 and body["rows"] == [], body
        if i % 250 == 249:  # fail early, before a regression eats the machine's memory
            growth = resident_bytes(qn.pid) - before
            assert growth < 16 * 2**20, f"RSS grew {growth} bytes after {i + 1} filters"
    growth = resident_bytes(qn.pid) - before
    elapsed = time.monotonic() - started
    # 4,000 distinct names: before, each kept 160 KB on this segment (~640 MB)
    assert growth < 16 * 2**20, f"RSS grew {growth} bytes over 2000 filters ({elapsed:.1f}s)"
    status, body = query(qn, "award == 'Hugo'")
    assert status == 200 and len(body["rows"]) == 5


@pytest.mark.slow
def test_querynode_answers_a_pathological_like_quickly(
    querynode_factory: QuerynodeFactory, meta_root: Path
) -> None:
    """The issue's freeze: 19 characters of `%a` took minutes and the node ignored /healthz."""
    qn = querynode_factory(meta_root)
    load_all(qn, meta_root, "m")
    stop = threading.Event()
    probes: list[tuple[int, float]] = []

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            status, _ = qn.request("GET", "/healthz", timeout=30.0)
            probes.append((status, time.monotonic() - started))
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for pattern in ["%a" * 40 + "%b", "%a" * 40 + "%", "%" + "a_" * 20 + "b%", "%a_a%" * 10 + "1"]:
            for field in ("title", "note"):  # 20,000 rows of a varchar column, 20,000 distinct values
                started = time.monotonic()
                status, body = query(qn, f"{field} like '{pattern}'")
                assert status == 200, body
                assert time.monotonic() - started < 10.0, (field, pattern)  # ~5 ms when quiet
    finally:
        stop.set()
        prober.join()
    assert probes and all(status == 200 for status, _ in probes)
    worst = max(seconds for _, seconds in probes)
    assert worst < 3.0, f"/healthz took {worst:.2f}s while filtering"
