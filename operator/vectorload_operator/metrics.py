"""Operator metrics (prometheus_client, own registry). Names are a contract with the Grafana
dashboard and the alert rules; `docs/operator.md` documents each one.

`/metrics` is served by prometheus_client's own aiohttp handler on the operator's event loop (no
server thread), started and stopped with the operator."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.aiohttp import make_aiohttp_handler

from vectorload_operator.clock import SYSTEM_CLOCK, Clock

LOAD_STATES = ("NotLoad", "Loading", "Loaded", "Releasing", "Failed")
SETTLED_STATES = frozenset({"Loaded", "NotLoad"})  # a settled collection is never stuck
LOAD_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.load_progress = Gauge(
            "vectorload_operator_collection_load_progress",
            "Load progress of a CollectionLoad in percent (0-100, Milvus' formula).",
            ["namespace", "name", "collection"],
            registry=r,
        )
        self.load_state = Gauge(
            "vectorload_operator_collection_load_state",
            "1 for the current loadState of a CollectionLoad, 0 for the other states.",
            ["namespace", "name", "collection", "state"],
            registry=r,
        )
        self.load_duration = Histogram(
            "vectorload_operator_load_duration_seconds",
            "Time from a CollectionLoad generation first seen (apply or spec change) to Loaded.",
            buckets=LOAD_DURATION_BUCKETS,
            registry=r,
        )
        self.tasks = Counter(
            "vectorload_operator_tasks",
            "Segment tasks sent to querynodes, by type (load, release) and outcome.",
            ["type", "outcome"],
            registry=r,
        )
        self.querynodes = Gauge(
            "vectorload_operator_querynodes",
            "Querynodes known to the operator, by state (ready, notready).",
            ["state"],
            registry=r,
        )
        self.capacity_bytes = Gauge(
            "vectorload_operator_querynode_capacity_bytes",
            "Memory limit a querynode reports (bytes).",
            ["node"],
            registry=r,
        )
        self.used_bytes = Gauge(
            "vectorload_operator_querynode_used_bytes",
            "Memory a querynode reports in use by loaded segments (bytes).",
            ["node"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "vectorload_operator_reconcile_errors",
            "Errors in the reconcile loop (API calls, status writes, unexpected exceptions).",
            registry=r,
        )
        self.degraded_replicas = Gauge(
            "vectorload_operator_degraded_replicas",
            "Replicas of a CollectionLoad that are not fully loaded on ready nodes.",
            ["namespace", "name"],
            registry=r,
        )
        self.last_progress = Gauge(
            "vectorload_operator_last_progress_timestamp_seconds",
            "Unix time a CollectionLoad last made progress (or became Loaded); for 'stuck' alerts.",
            ["namespace", "name"],
            registry=r,
        )
        self.querynodes.labels(state="ready").set(0)
        self.querynodes.labels(state="notready").set(0)
        self._nodes: set[str] = set()
        self._server: web.AppRunner | None = None
        self._progress_seen: dict[tuple[str, str], int] = {}
        self._settled: set[tuple[str, str]] = set()

    def observe_collection(
        self,
        namespace: str,
        name: str,
        collection: str,
        state: str,
        progress: int,
        degraded_replicas: int,
        now: float | None = None,
    ) -> None:
        """Record one CollectionLoad's computed status. The last-progress timestamp moves when
        progress changes, and stays fresh while Loaded (a loaded collection is never stuck)."""
        self.load_progress.labels(namespace, name, collection).set(progress)
        for s in LOAD_STATES:
            self.load_state.labels(namespace, name, collection, s).set(1 if s == state else 0)
        self.degraded_replicas.labels(namespace, name).set(degraded_replicas)
        key = (namespace, name)
        stamp = self._clock.wall() if now is None else now
        if self._progress_seen.get(key) != progress or state in SETTLED_STATES:
            self.last_progress.labels(namespace, name).set(stamp)
        self._progress_seen[key] = progress
        if state in SETTLED_STATES:
            self._settled.add(key)
        else:
            self._settled.discard(key)

    def refresh_settled(self, now: float | None = None) -> None:
        """Keep the last-progress timestamp of settled (Loaded, NotLoad) CollectionLoads fresh
        on a pass that recomputed no status because nothing changed."""
        stamp = self._clock.wall() if now is None else now
        for namespace, name in self._settled:
            self.last_progress.labels(namespace, name).set(stamp)

    def forget_collection(self, namespace: str, name: str, collection: str) -> None:
        for gauge, labels in (
            (self.load_progress, (namespace, name, collection)),
            (self.degraded_replicas, (namespace, name)),
            (self.last_progress, (namespace, name)),
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        for s in LOAD_STATES:
            with contextlib.suppress(KeyError):
                self.load_state.remove(namespace, name, collection, s)
        self._progress_seen.pop((namespace, name), None)
        self._settled.discard((namespace, name))

    def observe_nodes(self, nodes: Iterable[tuple[str, bool, int | None, int | None]]) -> None:
        """(name, ready, capacity bytes, used bytes) for every known querynode."""
        ready = notready = 0
        seen: set[str] = set()
        for name, is_ready, capacity, used in nodes:
            seen.add(name)
            if is_ready:
                ready += 1
            else:
                notready += 1
            if capacity is not None:
                self.capacity_bytes.labels(name).set(capacity)
            if used is not None:
                self.used_bytes.labels(name).set(used)
        for gone in self._nodes - seen:
            for gauge in (self.capacity_bytes, self.used_bytes):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
        self._nodes = seen
        self.querynodes.labels(state="ready").set(ready)
        self.querynodes.labels(state="notready").set(notready)

    def task(self, type_: str, outcome: str) -> None:
        self.tasks.labels(type_, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, port: int, address: str) -> int:
        """Serve `/metrics` on this event loop (once; again after `close`); returns the port
        bound (`port` 0: any free one)."""
        if self._server is None:
            app = web.Application()
            app.router.add_get("/metrics", make_aiohttp_handler(self.registry))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, address, port).start()
            except BaseException:
                await runner.cleanup()
                raise
            self._server = runner
        return int(self._server.addresses[0][1])

    async def close(self) -> None:
        if self._server is not None:
            await self._server.cleanup()
            self._server = None
