"""Adapter pieces without a cluster: status writer coalescing, pod parsing, selectors, metrics and
their HTTP endpoint, observer, the clock and the time format, events, async kopf handlers."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from vectorload_operator import handlers
from vectorload_operator.clock import Clock, rfc3339
from vectorload_operator.events import Events, ObjectRef
from vectorload_operator.metrics import OperatorMetrics
from vectorload_operator.observe import human_bytes
from vectorload_operator.pods import parse_pod, pod_port, pod_ready
from vectorload_operator.registry import Registry
from vectorload_operator.selectors import LabelSelector
from vectorload_operator.status import ObjectGone, StatusWriter, status_diff


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _writer(
    clock: FakeClock, fail: set[str] | None = None
) -> tuple[StatusWriter, list[tuple[str, dict[str, Any]]]]:
    sent: list[tuple[str, dict[str, Any]]] = []

    async def patch(ns: str, name: str, body: dict[str, Any]) -> None:
        if fail and name in fail:
            raise ObjectGone(name)
        sent.append((name, body))

    return StatusWriter(patch, interval=0.4, clock=clock), sent


async def test_status_writer_coalesces_to_one_patch_per_interval() -> None:
    clock = FakeClock()
    writer, sent = _writer(clock)
    writer.seed(("ns", "a"), {"loadProgress": 0})
    writer.submit(("ns", "a"), {"loadProgress": 10})
    await writer.flush_once()
    assert sent == [("a", {"status": {"loadProgress": 10}})]
    for pct in (20, 30, 40):  # three changes inside one interval
        writer.submit(("ns", "a"), {"loadProgress": pct})
        clock.now += 0.1
        await writer.flush_once()
    assert len(sent) == 1
    clock.now += 0.2
    await writer.flush_once()
    assert sent[-1] == ("a", {"status": {"loadProgress": 40}}) and len(sent) == 2


async def test_status_writer_skips_unchanged_and_nulls_removed_keys() -> None:
    clock = FakeClock()
    writer, sent = _writer(clock)
    writer.seed(("ns", "a"), {"loadState": "Loaded", "lastFailure": {"node": "x"}})
    writer.submit(("ns", "a"), {"loadState": "Loaded", "lastFailure": {"node": "x"}})
    assert await writer.flush_once() is None and sent == []
    writer.submit(("ns", "a"), {"loadState": "Loaded"})
    await writer.flush_once()
    assert sent == [("a", {"status": {"lastFailure": None}})]
    assert status_diff({"a": 1, "b": [1]}, {"a": 1, "b": [2]}) == {"b": [2]}


async def test_status_writer_drops_deleted_objects() -> None:
    clock = FakeClock()
    writer, _ = _writer(clock, fail={"gone"})
    writer.submit(("ns", "gone"), {"loadState": "Loading"})
    await writer.flush_once()
    assert writer.written(("ns", "gone")) is None and not writer.pending(("ns", "gone"))


async def test_status_writer_run_loop_wakes_on_submit() -> None:
    writer, sent = _writer(FakeClock())
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    writer.submit(("ns", "a"), {"loadProgress": 5})
    for _ in range(50):
        if sent:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert sent == [("a", {"status": {"loadProgress": 5}})]


def _pod(**kw: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {"name": "qn-0", "namespace": "ns", "labels": {"app": "q"}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 7000}]}]},
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.5",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    for key, value in kw.items():
        section, _, field = key.partition("__")
        pod[section][field] = value
    return pod


def test_pod_parsing_port_ready_and_address() -> None:
    pod = parse_pod(_pod())
    assert (pod.key, pod.url, pod.ready) == ("ns/qn-0", "http://127.0.0.5:7000", True)
    assert pod_port(_pod(metadata__annotations={"vectorload.io/port": "7100"})) == 7100
    assert pod_port(_pod(spec__containers=[{"name": "c"}])) == 19530
    assert not pod_ready(_pod(status__phase="Pending"))
    assert not pod_ready(_pod(status__conditions=[{"type": "Ready", "status": "False"}]))
    assert not pod_ready(_pod(metadata__deletionTimestamp="2026-01-01T00:00:00Z"))
    assert parse_pod(_pod(status__podIP=None)).url is None


def test_label_selectors() -> None:
    sel = LabelSelector.parse("app.kubernetes.io/component=querynode,tier in (a,b),!legacy,zone!=x")
    assert sel.matches({"app.kubernetes.io/component": "querynode", "tier": "a"})
    assert not sel.matches({"app.kubernetes.io/component": "querynode", "tier": "c"})
    assert not sel.matches({"app.kubernetes.io/component": "querynode", "tier": "a", "legacy": "1"})
    assert not sel.matches({"app.kubernetes.io/component": "querynode", "tier": "a", "zone": "x"})
    spec = LabelSelector.from_spec(
        {"matchLabels": {"pool": "gold"}, "matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}
    )
    assert spec.matches({"pool": "gold"}) and not spec.matches({"pool": "gold", "gpu": "1"})
    with pytest.raises(ValueError):
        LabelSelector.parse("a in b")


def test_metrics_names_and_lifecycle() -> None:
    m = OperatorMetrics()
    m.observe_collection("ns", "book", "book", "Loading", 40, 0, now=1000.0)
    m.observe_collection("ns", "book", "book", "Loading", 40, 0, now=2000.0)  # no progress: stamp stays
    m.task("load", "loading")
    m.observe_nodes([("qn-0", True, 1000, 10), ("qn-1", False, None, None)])
    text = m.render().decode()
    for name in (
        "vectorload_operator_collection_load_progress",
        "vectorload_operator_collection_load_state",
        "vectorload_operator_load_duration_seconds",
        "vectorload_operator_tasks_total",
        "vectorload_operator_querynodes",
        "vectorload_operator_querynode_capacity_bytes",
        "vectorload_operator_querynode_used_bytes",
        "vectorload_operator_reconcile_errors_total",
        "vectorload_operator_degraded_replicas",
        "vectorload_operator_last_progress_timestamp_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    assert 'vectorload_operator_last_progress_timestamp_seconds{name="book",namespace="ns"} 1000.0' in text
    assert 'state="Loading"} 1.0' in text and 'state="Loaded"} 0.0' in text
    assert 'vectorload_operator_querynodes{state="notready"} 1.0' in text
    m.forget_collection("ns", "book", "book")
    m.observe_nodes([])
    text = m.render().decode()
    assert 'name="book"' not in text and 'node="qn-0"' not in text


def test_human_bytes() -> None:
    assert human_bytes(512) == "512B"
    assert human_bytes(1288490188) == "1.2GiB"
    assert human_bytes(3 * 1024**4) == "3.0TiB"


def test_one_rfc3339_formatter_and_a_clock_that_maps_monotonic_to_wall_time() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1767225600.9) == "2026-01-01T00:00:00Z"  # whole seconds, as metav1.Time
    clock = Clock(monotonic=lambda: 500.0, wall=lambda: 1767225600.0)
    assert clock.wall_of(490.0) == 1767225590.0


async def test_events_are_stamped_by_the_injected_clock_and_posted_once_per_transition() -> None:
    posted: list[dict[str, Any]] = []

    async def post(ns: str, body: dict[str, Any]) -> None:
        posted.append(body)

    events = Events(post, clock=Clock(wall=lambda: 1767225600.0))
    ref = ObjectRef("ns", "book", "u1")
    assert events.transition(ref, "state", "LoadStarted", "loading")
    assert not events.transition(ref, "state", "LoadStarted", "loading")
    events.forget(ref.key)  # a resource released and created again starts afresh
    assert events.transition(ref, "state", "LoadStarted", "loading")
    task = asyncio.create_task(events.run())
    for _ in range(50):
        if len(posted) == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert [b["firstTimestamp"] for b in posted] == ["2026-01-01T00:00:00Z"] * 2
    assert posted[0]["involvedObject"]["uid"] == "u1" and posted[0]["reason"] == "LoadStarted"


def test_the_registry_stamps_a_new_generation_with_the_injected_wall_clock() -> None:
    now = [100.0]
    registry = Registry(Clock(wall=lambda: now[0]))
    body: dict[str, Any] = {"metadata": {"namespace": "ns", "name": "a", "uid": "u", "generation": 1}}
    assert registry.upsert(body).generation_seen_at == 100.0
    now[0] = 200.0
    assert registry.upsert(body).generation_seen_at == 100.0  # same generation
    body["metadata"]["generation"] = 2
    assert registry.upsert(body).generation_seen_at == 200.0


async def test_metrics_are_served_by_prometheus_clients_aiohttp_handler_and_stop() -> None:
    m = OperatorMetrics()
    m.task("load", "loaded")
    port = await m.serve(0, "127.0.0.1")
    assert await m.serve(0, "127.0.0.1") == port  # once: a retried startup does not bind twice
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    finally:
        await m.close()
    assert 'vectorload_operator_tasks_total{outcome="loaded",type="load"} 1.0' in text
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/metrics")


def test_every_kopf_handler_is_async() -> None:
    tree = ast.parse(Path(handlers.__file__).read_text(encoding="utf-8"))
    decorated = [
        fn
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        and any("kopf" in ast.unparse(d) for d in fn.decorator_list)
    ]
    assert len(decorated) >= 5
    assert [fn.name for fn in decorated if not isinstance(fn, ast.AsyncFunctionDef)] == []
