"""The querynode's in-place reload marker survives `parse_distribution` and reaches the planner.

The distribution JSON comes from a real `QueryNode.distribution()` over a real segment registry
(no process, no files): two segments loaded with every field, one of them being reloaded with a
field subset while its old copy serves.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload.wire.querynode import CollectionCatalog, Distribution, convert, to_builtins
from vectorload_operator.core import (
    BackoffState,
    LoadTarget,
    PlannerSettings,
    Reloading,
    SegmentRef,
    TaskKind,
    build_target,
    plan,
)
from vectorload_operator.distribution import parse_distribution
from vectorload_querynode.admission import MemoryAccount
from vectorload_querynode.loader import LoadSpec
from vectorload_querynode.node import QueryNode
from vectorload_querynode.registry import Registry, SegmentKey
from vectorload_querynode.segment import LoadedSegment
from vectorload_querynode.settings import Settings

ALL = LoadSpec(frozenset({"id", "v", "s"}), False)
SLIM = LoadSpec(frozenset({"id", "v"}), False)
SIZES = {"id": 100, "v": 600, "s": 300}  # bytes per field of each segment
ALL_BYTES = sum(SIZES.values())  # 1000
SLIM_BYTES = SIZES["id"] + SIZES["v"]  # 700
CATALOG_DOC: dict[str, Any] = {
    "name": "c",
    "schema": {
        "name": "c",
        "enableDynamicField": False,
        "fields": [
            {"name": "id", "type": "int64", "isPrimary": True},
            {"name": "v", "type": "float_vector", "dim": 8, "metric": "l2"},
            {"name": "s", "type": "varchar", "maxLength": 16},
        ],
    },
    "partitions": [
        {
            "name": "_default",
            "segments": [
                {"id": sid, "rows": 1, "bytes": SIZES, "totalBytes": ALL_BYTES, "memoryBytes": SIZES}
                for sid in ("s0", "s1")
            ],
        }
    ],
}
CATALOG = convert(CATALOG_DOC, CollectionCatalog)


def _segment(sid: str, spec: LoadSpec, nbytes: int) -> LoadedSegment:
    return LoadedSegment(
        collection="c",
        partition="_default",
        segment_id=sid,
        rows=1,
        fields=spec.fields,
        dynamic=spec.dynamic,
        bytes=nbytes,
        pk_field="id",
        columns={"id": np.zeros(1, dtype=np.int64)},
        vectors={},
        meta=None,
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[QueryNode]:
    settings = Settings(
        root=tmp_path,
        host="127.0.0.1",
        port=0,
        node_name="qn-0",
        memory_limit=1 << 30,
        threshold=1.0,
        token="t",
        data_token=None,
        load_concurrency=1,
        search_workers=1,
        default_ef=64,
        load_step_delay=0.0,
    )
    qn = QueryNode(settings)
    # exact bookkeeping: room for both full copies, the reload of s0 and one more slim copy
    qn.account = MemoryAccount(2 * ALL_BYTES + 2 * SLIM_BYTES, 1.0)
    qn.registry = Registry(qn.account)
    for sid in ("s0", "s1"):
        _, job = qn.registry.request_load(SegmentKey("c", "_default", sid), ALL, ALL_BYTES)
        assert job is not None
        qn.registry.finish(job, _segment(sid, ALL, ALL_BYTES))
    decision, reload = qn.registry.request_load(SegmentKey("c", "_default", "s0"), SLIM, SLIM_BYTES)
    assert decision == "loading" and reload is not None  # s0 reloads in place, old copy serving
    yield qn
    qn.close()


def _slim_target() -> LoadTarget:
    t = build_target("ns/c", {"collection": "c", "loadFields": ["id", "v"]}, CATALOG)
    assert isinstance(t, LoadTarget), t
    return t


def test_parse_distribution_reads_the_reloading_marker(node: QueryNode) -> None:
    data = node.distribution()
    items = {item["segment"]: item for item in to_builtins(data)["segments"]}
    assert "reloading" in items["s0"] and "reloading" not in items["s1"]  # the shape this test relies on
    state = parse_distribution("qn-0", "http://127.0.0.1:1", data)
    s0 = state.segments[SegmentRef("c", "_default", "s0")]
    s1 = state.segments[SegmentRef("c", "_default", "s1")]
    assert s0.reloading == Reloading(fields=frozenset({"id", "v"}), dynamic=False)
    assert s0.fields == frozenset({"id", "v", "s"})  # the old copy still serves every field
    assert s1.reloading is None
    assert (state.used_bytes, state.reserved_bytes) == (2 * ALL_BYTES, SLIM_BYTES)


def test_planner_does_not_resend_a_reload_nor_charge_its_memory_twice(node: QueryNode) -> None:
    state = parse_distribution("qn-0", "http://127.0.0.1:1", node.distribution())
    assert state.budget == SLIM_BYTES  # the querynode already reserved s0's reload
    p = plan([_slim_target()], [state], {}, BackoffState(), 0.0, PlannerSettings())
    loads = [(t.node, t.segment, t.reason) for t in p.tasks if t.kind == TaskKind.LOAD]
    # s0 is under way: only s1 is reloaded, and it fits in what the node has left
    assert loads == [("qn-0", "s1", "FieldsChanged")]
    assert not p.problems.get("ns/c")


def test_reload_marker_absent_or_null_means_none() -> None:
    base = {
        "collection": "c",
        "partition": "_default",
        "segment": "s0",
        "state": "loaded",
        "reason": "",
        "message": "",
        "bytes": 100,
        "rows": 1,
        "fields": ["id"],
        "dynamicField": False,
    }
    capacity = {"memoryLimitBytes": 1, "usedBytes": 0, "reservedBytes": 0, "threshold": 0.9}
    for extra in ({}, {"reloading": None}):
        body = {"node": "qn-0", "bootId": "b", "capacity": capacity, "segments": [{**base, **extra}]}
        state = parse_distribution("qn-0", None, convert(body, Distribution))
        assert state.segments[SegmentRef("c", "_default", "s0")].reloading is None
