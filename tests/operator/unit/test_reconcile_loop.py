"""The executor's per-node bound and its no-duplicate rule, and the reconcile loop's idle skip,
wake-ups and backoff timers — with an in-memory querynode behind `QuerynodeClient`'s interface
(no process, no cluster) and an injected clock (the pure pacing policy: tests/unit/core)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Sequence
from typing import Any

import pytest

from vectorload.client import QuerynodeClient, QuerynodeError
from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.schema_json import schema_to_dict
from vectorload.wire.querynode import CollectionCatalog, Distribution, LoadResult, convert
from vectorload_operator.catalog import CatalogCache
from vectorload_operator.clock import Clock
from vectorload_operator.core import (
    HeldSegment,
    NodeState,
    Pacing,
    SegmentRef,
    SegmentState,
    Task,
    TaskKind,
)
from vectorload_operator.distribution import DistributionPuller, NodeView
from vectorload_operator.events import Events
from vectorload_operator.executor import Executor, Refusal
from vectorload_operator.metrics import OperatorMetrics
from vectorload_operator.pods import QuerynodePod
from vectorload_operator.publish import Publisher
from vectorload_operator.reconciler import Reconciler
from vectorload_operator.registry import Registry
from vectorload_operator.status import StatusWriter

URL = "http://127.0.0.7:19530"
POD = QuerynodePod("ns", "qn-0", "127.0.0.7", 19530, True, {"app.kubernetes.io/component": "querynode"})
SEGMENTS = [f"s{i}" for i in range(4)]


SCHEMA = schema_to_dict(
    CollectionSchema(
        name="c",
        fields=(
            FieldSchema("id", "int64", is_primary=True),
            FieldSchema("v", "float_vector", dim=8, metric="l2"),
        ),
        dynamic_field=False,
    )
)


def _catalog(segments: Sequence[str]) -> dict[str, Any]:
    """`GET /v1/catalog/c`: one partition of 1000-byte segments."""
    sizes = {"id": 80, "v": 920}
    summaries = [
        {"id": s, "rows": 10, "bytes": sizes, "totalBytes": 1000, "memoryBytes": sizes} for s in segments
    ]
    return {"name": "c", "schema": SCHEMA, "partitions": [{"name": "_default", "segments": summaries}]}


class FakeQuerynode(QuerynodeClient):
    """A querynode in memory: loads are queued as `loading` until `finish()`; a segment in
    `failing` ends `failed`. Every call is counted."""

    def __init__(self) -> None:
        super().__init__(URL, token="t")
        self.segments: dict[str, dict[str, Any]] = {}
        self.catalog_body = _catalog(SEGMENTS)
        self.failing: set[str] = set()
        self.loads: list[str] = []
        self.calls = {"distribution": 0, "catalog": 0}

    def finish(self) -> None:
        for sid, item in self.segments.items():
            if item["state"] == "loading":
                item["state"] = "failed" if sid in self.failing else "loaded"
                item["reason"] = "SegmentCorrupt" if sid in self.failing else ""

    async def distribution(self) -> Distribution:
        self.calls["distribution"] += 1
        used = sum(1000 for s in self.segments.values() if s["state"] == "loaded")
        return convert(
            {
                "node": "qn-0",
                "bootId": "b",
                "capacity": {
                    "memoryLimitBytes": 1 << 30,
                    "usedBytes": used,
                    "reservedBytes": 0,
                    "threshold": 0.9,
                },
                "segments": copy.deepcopy(list(self.segments.values())),
            },
            Distribution,
        )

    async def catalog(self, collection: str) -> CollectionCatalog:
        self.calls["catalog"] += 1
        if collection != "c":
            raise QuerynodeError(404, "CollectionNotFound", collection)
        return convert(self.catalog_body, CollectionCatalog)

    def _tag(self) -> str:
        return f'"{hash(json.dumps(self.catalog_body, sort_keys=True))}"'

    async def catalog_if_changed(
        self, collection: str, etag: str | None
    ) -> tuple[CollectionCatalog | None, str | None]:
        """The querynode's validator: a tag of the body; 304 (None) when it matches."""
        current = self._tag()
        if etag == current:
            self.calls["catalog"] += 1
            return None, current
        return await self.catalog(collection), current

    async def catalog_tokens(self, collections: Sequence[str]) -> dict[str, str]:
        self.calls["catalog"] += 1
        return {c: self._tag() for c in collections if c == "c"}

    async def load(
        self, collection: str, partition: str, segments: Sequence[str], *args: Any, **kwargs: Any
    ) -> tuple[LoadResult, ...]:
        out: list[LoadResult] = []
        for sid in segments:
            self.loads.append(sid)
            self.segments[sid] = {
                "collection": collection,
                "partition": partition,
                "segment": sid,
                "state": "loading",
                "reason": "",
                "message": "",
                "bytes": 1000,
                "rows": 10,
                "fields": ["id", "v"],
                "dynamicField": False,
            }
            out.append(LoadResult(segment=sid, state="loading", reason="", message=""))
        return tuple(out)

    async def release(self, collection: str, segments: Sequence[tuple[str, str]] | None = None) -> int:
        gone = [s for _, s in segments or []]
        for sid in gone:
            self.segments.pop(sid, None)
        return len(gone)


# ----------------------------------------------------------------------------------- executor


def _view(node: FakeQuerynode, pulled_at: float, loading: Sequence[str] = ()) -> dict[str, NodeView]:
    held = {SegmentRef("c", "_default", s): HeldSegment(SegmentState.LOADING) for s in loading}
    state = NodeState(name=POD.key, ready=True, address=URL, segments=held)
    return {POD.key: NodeView(POD, state, pulled_at)}


def _load(sid: str) -> Task:
    return Task(TaskKind.LOAD, POD.key, "c", "_default", sid)


async def test_executor_keeps_the_queue_full_up_to_the_bound_and_never_resends_before_a_newer_pull() -> None:
    node = FakeQuerynode()
    clock = [10.0]
    finished: list[int] = []
    ex = Executor(
        lambda url: node,
        max_per_node=16,
        metrics=OperatorMetrics(),
        on_refusal=lambda r: None,
        clock=lambda: clock[0],
        on_finished=lambda: finished.append(1),
    )
    tasks = [_load(f"s{i}") for i in range(20)]
    assert len(ex.submit(tasks, _view(node, 9.0))) == 16  # one pass fills the queue
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(node.loads) == 16 and len(finished) == 16 and ex.inflight() == 0
    # answered, but the last pull started before: nothing is resent, and they still count
    assert ex.submit(tasks, _view(node, 9.5)) == []
    # a newer pull shows the 16 loading: still full
    clock[0] = 11.0
    assert ex.submit(tasks, _view(node, 10.5, loading=[f"s{i}" for i in range(16)])) == []
    # the node finished 10 of them: 10 more may go, the 4 never sent first
    started = ex.submit(tasks[16:], _view(node, 11.5, loading=[f"s{i}" for i in range(10, 16)]))
    assert [t.segment for t in started] == ["s16", "s17", "s18", "s19"]
    await asyncio.sleep(0)
    assert sorted(node.loads) == sorted(f"s{i}" for i in range(20))  # each once


async def test_executor_reports_a_refused_load() -> None:
    class Refusing(FakeQuerynode):
        async def load(self, *args: Any, **kwargs: Any) -> tuple[LoadResult, ...]:
            return (LoadResult(segment="s0", state="refused", reason="InsufficientMemory", message="full"),)

    refusals: list[Refusal] = []
    ex = Executor(lambda url: Refusing(), 16, OperatorMetrics(), refusals.append)
    ex.submit([_load("s0")], _view(FakeQuerynode(), 0.0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [(r.reason, r.message) for r in refusals] == [("InsufficientMemory", "full")]


# ------------------------------------------------------------------------------ the loop


class FakeTime:
    """Monotonic seconds set by hand; the wall clock runs with it (a fixed offset)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def clock(self) -> Clock:
        return Clock(monotonic=self, wall=lambda: 1.7e9 + self.now)


def _collection_load(generation: int = 1, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "c",
            "uid": "u1",
            "generation": generation,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec or {"collection": "c"},
    }


class Loop:
    """A Reconciler over a `FakeQuerynode`, in-memory status/events and one injected clock (by
    default a hand-driven `FakeTime`)."""

    def __init__(self, clock: Clock | None = None, pacing: Pacing | None = None) -> None:
        self.node = FakeQuerynode()
        self.time = FakeTime()
        clock = clock or self.time.clock()
        self.patches: list[dict[str, Any]] = []

        async def patch(ns: str, name: str, body: dict[str, Any]) -> None:
            self.patches.append(body)

        async def post(ns: str, body: dict[str, Any]) -> None:
            return None

        self.events = Events(post, clock=clock)

        self.registry = Registry(clock)
        self.registry.upsert(_collection_load())
        self.writer = StatusWriter(patch, interval=0.0, clock=clock.monotonic)
        self.metrics = metrics = OperatorMetrics(clock=clock)
        self.publisher = Publisher(self.writer, self.events, metrics, clock)
        self.rec = Reconciler(
            registry=self.registry,
            pods=lambda: {POD.key: POD},
            puller=DistributionPuller(lambda url: self.node, clock=clock.monotonic),
            catalogs=CatalogCache(lambda url: self.node, interval=2.0, clock=clock.monotonic),
            executor_factory=lambda on_refusal, on_finished: Executor(
                lambda url: self.node, 16, metrics, on_refusal, clock.monotonic, on_finished
            ),
            publisher=self.publisher,
            pacing=pacing or Pacing.of(0.5),
            clock=clock,
        )

    async def step(self, seconds: float = 0.1) -> None:
        """One pass at `seconds` later, then let the tasks it started run."""
        self.time.now += seconds
        await self.rec.pass_once()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await self.writer.flush_once()

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events.posted]

    def state(self) -> str:
        written = self.writer.written(("ns", "c")) or {}
        return str(written.get("loadState"))


async def test_idle_passes_pull_but_do_not_plan_until_something_changes() -> None:
    loop = Loop()
    await loop.step()
    assert sorted(loop.node.loads) == SEGMENTS and loop.rec.planned == 1
    await loop.step()  # the answers were seen by this pull: tasks settle, one more plan
    loop.node.finish()
    await loop.step()  # the distribution changed: plan, Loaded
    assert loop.state() == "Loaded"
    planned, pulls = loop.rec.planned, loop.node.calls["distribution"]
    for _ in range(10):
        await loop.step()
    assert loop.rec.planned == planned  # nothing changed: no plan, no status
    assert loop.node.calls["distribution"] == pulls + 10  # but every pass pulled (the heartbeat)
    assert sorted(loop.node.loads) == SEGMENTS  # nothing resent
    patches = len(loop.patches)

    # a spec change (registry), a catalog change, a node change: each makes the next pass plan
    loop.registry.upsert(_collection_load(2, {"collection": "c", "replicas": 1}))
    await loop.step()
    assert loop.rec.planned == planned + 1 and len(loop.patches) == patches + 1  # observedGeneration 2
    loop.node.catalog_body = _catalog([*SEGMENTS, "s4"])
    await loop.step(2.0)  # the catalog is refreshed every 2 s
    assert loop.rec.planned == planned + 2 and loop.node.loads[-1] == "s4"
    del loop.node.segments["s0"]  # e.g. the node restarted without it
    for _ in range(3):
        await loop.step()
    assert loop.node.loads.count("s0") == 2


async def test_a_due_backoff_timer_makes_an_idle_pass_plan() -> None:
    loop = Loop()
    loop.node.failing = {"s1"}
    await loop.step()
    await loop.step()
    loop.node.finish()  # s1 fails on the node
    await loop.step()
    assert loop.node.loads.count("s1") == 1
    planned = loop.rec.planned
    for _ in range(3):  # within the first backoff (1 s): nothing changes, nothing planned
        await loop.step(0.2)
    assert loop.rec.planned == planned and loop.node.loads.count("s1") == 1
    await loop.step(0.5)  # the retry is due: this pass plans and retries
    assert loop.rec.planned == planned + 1 and loop.node.loads.count("s1") == 2


async def test_the_loop_wakes_at_once_for_a_new_resource_and_for_answered_tasks() -> None:
    # the real clock; only a wake-up can start the next pass within this test
    loop = Loop(Clock(), Pacing(interval=30.0, busy_interval=30.0, debounce=0.01))
    rec = loop.rec
    runner = asyncio.create_task(rec.run())
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if sorted(loop.node.loads) == SEGMENTS and rec.passes >= 2:
                break
        # first pass sent the loads; their answers woke the loop for a second pass at once
        assert sorted(loop.node.loads) == SEGMENTS and rec.passes >= 2
        passes = rec.passes
        loop.registry.upsert(_collection_load(2, {"collection": "c", "replicas": 1}))  # a spec change
        for _ in range(100):
            await asyncio.sleep(0.01)
            if rec.passes > passes:
                break
        assert rec.passes > passes
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_loaded_once_with_its_duration_then_a_deletion_releases_and_forgets() -> None:
    loop = Loop()
    await loop.step()
    await loop.step()
    loop.node.finish()
    loop.time.now += 3.0  # the load took 3 s (and a bit) since the generation was first seen
    await loop.step()
    assert loop.state() == "Loaded"
    assert loop.reasons() == ["LoadStarted", "Loaded"]
    sample = loop.metrics.registry.get_sample_value
    assert sample("vectorload_operator_load_duration_seconds_count") == 1.0
    assert sample("vectorload_operator_load_duration_seconds_sum") == pytest.approx(3.3)  # 3 passes later
    entry = loop.registry.get(("ns", "c"))
    assert entry is not None
    loop.registry.mark_deleting(_collection_load())
    await loop.step()  # the collection is an orphan now: released, nothing held any more
    assert loop.node.segments == {} and not entry.released.is_set()
    assert loop.state() == "Releasing"
    await loop.step()  # the pull shows it gone: released
    assert entry.released.is_set() and loop.reasons()[-1] == "Releasing"
    loop.registry.remove(entry.key)
    loop.publisher.released(entry)  # what the finalizer handler does next
    assert loop.reasons()[-1] == "Released" and loop.writer.written(("ns", "c")) is None
    assert 'name="c"' not in loop.metrics.render().decode()
