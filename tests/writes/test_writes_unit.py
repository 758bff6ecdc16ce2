"""The write path's pure parts without processes: the log format (CRC, torn tails, checkpoint,
group commit), row checks, delete expressions, index definitions, storage properties."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.properties import (
    CollectionProperties,
    IndexDefinition,
    effective_schema,
    properties_from_dict,
    properties_to_dict,
    read_properties,
    write_properties,
)
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.writer import CollectionWriter
from vectorload_proxy import wal
from vectorload_proxy.errors import MilvusError
from vectorload_proxy.rows import arrow_fields_only, batch_from_arrow, batch_from_rows
from vectorload_proxy.writes import INLINE_ROWS, index_definition, parse_pk_list, to_batch

SCHEMA = CollectionSchema(
    "c",
    (
        FieldSchema("id", "int64", is_primary=True),
        FieldSchema("t", "varchar", max_length=4),
        FieldSchema("v", "float_vector", dim=2, metric="l2"),
    ),
    dynamic_field=True,
)


def _record(i: int) -> wal.Record:
    return wal.Record(
        op="insert", collection="c", ts=i, pks=[i], vectors={"v": np.zeros(2, np.float32).tobytes()}
    )


def test_log_records_round_trip_and_a_torn_or_corrupt_tail_ends_the_log(tmp_path: Path) -> None:
    path = tmp_path / "0000000000000001.log"
    data = b"".join(wal.encode(i, _record(i)) for i in range(1, 6))
    path.write_bytes(data)
    assert [s for s, _ in wal.read_records(path)] == [1, 2, 3, 4, 5]
    path.write_bytes(data[:-3])  # a crash mid-append: the last record is torn
    assert [s for s, _ in wal.read_records(path)] == [1, 2, 3, 4]
    broken = bytearray(data)
    third = len(wal.encode(1, _record(1))) * 2 + wal.HEADER.size + 1
    broken[third] ^= 0xFF  # a flipped bit in record 3's payload: the CRC ends the log there
    path.write_bytes(bytes(broken))
    assert [s for s, _ in wal.read_records(path)] == [1, 2]
    wal.write_checkpoint(tmp_path, 1)
    path.write_bytes(data)
    assert [s for s, _ in wal.replay(tmp_path)] == [2, 3, 4, 5]


def test_concurrent_appends_share_fsyncs_and_arrive_in_timestamp_order(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    log = wal.WriteAheadLog(tmp_path, lambda seq, r: seen.append((seq, r.ts)))
    counter = iter(range(1, 10_000))
    lock = threading.Lock()

    def stamp() -> int:
        with lock:
            return next(counter)

    futures = []

    def worker() -> None:
        for _ in range(50):
            futures.append(log.append(_record(0), stamp=stamp))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [f.result(10) for f in futures]
    log.close()
    assert len(results) == 400 and log.appended == 400
    assert log.fsyncs < 400  # group commit
    assert [ts for _, ts in sorted(seen)] == sorted(ts for _, ts in seen)  # log order = ts order
    assert [s for s, _ in wal.replay(log.directory)] == list(range(1, 401))
    # the owner holds the flock; once closed, another process could adopt it
    fd = wal.try_lock(log.directory)
    assert fd is not None


def test_row_checks_refuse_the_whole_batch_with_milvus_texts() -> None:
    ids = iter(range(100, 1000))

    def alloc(n: int) -> list[int]:
        return [next(ids) for _ in range(n)]

    ok = batch_from_rows(SCHEMA, False, [{"id": 1, "t": "ab", "v": [1, 2], "x": 3}], alloc, upsert=False)
    assert ok.pks == [1] and ok.dynamic == [{"x": 3}] and ok.vectors["v"].dtype == np.float32
    cases = [
        ([{"id": 1, "t": "ab", "v": [1]}], "the dim (1) of field data(v) is not equal to schema dim (2)"),
        ([{"id": 1, "t": "ab", "v": [1, float("nan")]}], "value 'NaN' is not a number or infinity"),
        ([{"id": 1, "t": "ab", "v": [1, 1e300]}], "value '+Inf' is not a number or infinity"),
        (
            [{"id": 1, "t": "abcde", "v": [1, 2]}],
            "length of varchar field t exceeds max length, row number: 0",
        ),
        ([{"id": 1, "v": [1, 2]}], "Insert missed an field `t`"),
        ([{"id": 1, "t": 5, "v": [1, 2]}], "is not a VarChar"),
        ([{"id": 2**63, "t": "a", "v": [1, 2]}], "out of the Int64 range"),
        ([{"id": True, "t": "a", "v": [1, 2]}], "is not an Int64"),
        ([{"id": 1, "t": "a", "v": [1, 2]}, {"id": 1, "t": "b", "v": [1, 2]}], "duplicate primary keys"),
    ]
    for rows, text in cases:
        with pytest.raises(MilvusError) as info:
            batch_from_rows(SCHEMA, False, rows, alloc, upsert=False)
        assert info.value.code == 1100 and text in info.value.message, (rows, info.value.message)
    strict = CollectionSchema("c", SCHEMA.fields, dynamic_field=False)
    with pytest.raises(MilvusError, match="unexpected field `x`"):
        batch_from_rows(strict, False, [{"id": 1, "t": "a", "v": [1, 2], "x": 1}], alloc, upsert=False)
    generated = batch_from_rows(SCHEMA, True, [{"t": "a", "v": [1, 2]}] * 3, alloc, upsert=False)
    assert generated.pks == [100, 101, 102]
    with pytest.raises(MilvusError, match="can not assign primary field data when auto id enabled"):
        batch_from_rows(SCHEMA, True, [{"id": 5, "t": "a", "v": [1, 2]}], alloc, upsert=False)


def test_parquet_columns_are_checked_as_rows_are_with_the_same_texts() -> None:
    def table(columns: dict[str, Any], types: dict[str, Any] | None = None) -> Any:
        types = types or {}
        return pa.RecordBatch.from_pydict({k: pa.array(v, types.get(k)) for k, v in columns.items()})

    def both(columns: dict[str, Any], auto_id: bool = False, types: dict[str, Any] | None = None) -> Any:
        """The columnar batch and the one batch_from_rows makes of the same rows (or both errors)."""
        rb = table(columns, types)
        ids = lambda n: list(range(100, 100 + n))  # noqa: E731
        outcomes = []
        for convert in (
            lambda: batch_from_arrow(SCHEMA, auto_id, rb, ids),
            lambda: batch_from_rows(SCHEMA, auto_id, rb.to_pylist(), ids, False),
        ):
            try:
                outcomes.append(convert())
            except MilvusError as exc:
                outcomes.append(exc.message)
        return outcomes

    vec = pa.list_(pa.float32())
    columnar, rows = both({"id": [1, 2], "t": ["ab", "c"], "v": [[1.0, 2.0], [3.0, 4.5]]}, types={"v": vec})
    assert (columnar.pks, columnar.scalars, columnar.dynamic) == (rows.pks, rows.scalars, rows.dynamic)
    assert columnar.vectors["v"].dtype == np.float32 and (columnar.vectors["v"] == rows.vectors["v"]).all()
    fixed, _ = both({"id": [1], "t": ["a"], "v": [[1.0, 2.0]]}, types={"v": pa.list_(pa.float64(), 2)})
    assert fixed.vectors["v"].tolist() == [[1.0, 2.0]]
    generated, _ = both({"t": ["a", "b"], "v": [[1.0, 2.0]] * 2}, auto_id=True)
    assert generated.pks == [100, 101]
    cases = [
        ({"id": [1, 2], "t": ["a", "b"], "v": [[1.0, 2.0], [1.0]]}, "the dim (1) of field data(v)"),
        ({"id": [1], "t": ["a"], "v": [[1.0, float("nan")]]}, "value 'NaN' is not a number or infinity"),
        ({"id": [1], "t": ["a"], "v": [[1.0, 1e300]]}, "value '+Inf' is not a number or infinity"),
        ({"id": [1], "t": ["abcde"], "v": [[1.0, 2.0]]}, "length of varchar field t exceeds max length"),
        ({"id": [1], "v": [[1.0, 2.0]]}, "Insert missed an field `t`"),
        ({"id": [1], "t": [5], "v": [[1.0, 2.0]]}, "is not a VarChar"),
        ({"id": [1, 1], "t": ["a", "b"], "v": [[1.0, 2.0]] * 2}, "duplicate primary keys"),
        ({"id": [1], "t": ["a"], "v": [["x", "y"]]}, "a vector must be a list of numbers"),
    ]
    for columns, text in cases:
        columnar_error, rows_error = both(columns)
        assert isinstance(columnar_error, str) and text in columnar_error, (columns, columnar_error)
        assert columnar_error == rows_error, columns
    assert "a vector must be a list of numbers" in both({"id": [1], "t": ["a"], "v": [None]})[0]
    assert "a vector must be a list of numbers" in both({"id": [1], "t": ["a"], "v": [[1.0, None]]})[0]
    auto_given = both({"id": [5], "t": ["a"], "v": [[1.0, 2.0]]}, auto_id=True)
    assert auto_given[0] == auto_given[1] and "can not assign primary field data" in auto_given[0]
    assert arrow_fields_only(SCHEMA, ["id", "t", "v"]) and not arrow_fields_only(SCHEMA, ["id", "x"])


async def test_large_requests_are_checked_off_the_event_loop_small_ones_inline() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def convert(n: int) -> Any:
        seen.append(threading.get_ident())
        rows = [{"id": i, "t": "a", "v": [0.0, 1.0]} for i in range(n)]
        return batch_from_rows(SCHEMA, False, rows, lambda k: list(range(k)), False)

    small = await to_batch(INLINE_ROWS, lambda: convert(INLINE_ROWS))
    large = await to_batch(INLINE_ROWS + 1, lambda: convert(INLINE_ROWS + 1))
    assert (small.rows, large.rows) == (INLINE_ROWS, INLINE_ROWS + 1)
    assert seen[0] == loop_thread and seen[1] != loop_thread
    with pytest.raises(MilvusError, match="dim"):  # a refusal crosses the thread hop unchanged
        await to_batch(
            1000,
            lambda: batch_from_rows(SCHEMA, False, [{"id": 1, "t": "a", "v": [1.0]}] * 1000, list, False),
        )


def test_delete_expressions_by_key_are_read_directly_and_others_left_to_the_querynodes() -> None:
    assert parse_pk_list("id in [1, 2, -3]", "id", "int64") == [1, 2, -3]
    assert parse_pk_list("id == 7", "id", "int64") == [7]
    assert parse_pk_list("id in []", "id", "int64") == []
    assert parse_pk_list("k in [\"a\", 'b']", "k", "varchar") == ["a", "b"]
    assert parse_pk_list("id in [1, 2] or id > 5", "id", "int64") is None
    assert parse_pk_list("count > 3", "id", "int64") is None
    assert parse_pk_list('k in ["a\\"b"]', "k", "varchar") is None  # escapes: the querynodes parse it


def test_index_definitions_and_what_storage_cannot_build() -> None:
    d = index_definition(
        "v", "v", {"index_type": "HNSW", "metric_type": "IP", "params": '{"M": 8, "efConstruction": 64}'}
    )
    assert (d.metric, d.M, d.ef_construction, d.index_type) == ("ip", 8, 64, "HNSW")
    auto = index_definition("v", "idx", {"index_type": "AUTOINDEX"})
    assert (auto.metric, auto.M, auto.ef_construction) == ("cosine", 16, 200)
    for params, text in (
        ({"index_type": "IVF_FLAT", "metric_type": "L2"}, "invalid index type: IVF_FLAT"),
        ({"index_type": "HNSW", "metric_type": "JACCARD"}, "metric type JACCARD not found or not supported"),
        ({"index_type": "HNSW", "metric_type": "L2", "M": "1"}, "param 'M' (1) should be in range [2, 2048]"),
        (
            {"index_type": "HNSW", "metric_type": "L2", "efConstruction": "x"},
            "efConstruction x is not an integer",
        ),
    ):
        with pytest.raises(
            MilvusError, match=text.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
        ):
            index_definition("v", "v", params)


def test_properties_decide_the_metric_and_are_replaced_atomically(tmp_path: Path) -> None:
    CollectionWriter(tmp_path).create_collection(SCHEMA)
    reader = FilesystemReader(tmp_path)
    assert read_properties(reader.backend, "c") == CollectionProperties()
    generation = reader.generation("c")
    props = CollectionProperties(auto_id=True).with_index(IndexDefinition("v", "v", "cosine", 8, 50))
    write_properties(tmp_path, "c", props)
    assert reader.generation("c") > generation  # every catalog cache sees it
    assert read_properties(reader.backend, "c") == props
    field = reader.schema("c").field("v")
    assert field is not None and field.metric == "cosine"
    assert properties_from_dict(properties_to_dict(props), "x") == props
    assert effective_schema(SCHEMA, props.without_index("v")) == SCHEMA
    assert not list(tmp_path.joinpath("c").glob("*.tmp"))
