"""Executes planned tasks through the querynode control API with bounded concurrency per node.

The bound is on *loads in progress* per node: segments the node reports as `loading`, load
requests in flight and loads answered since the node's last pull never exceed `max_per_node`
(`--max-tasks-per-node`, default 16). Releases are not bounded (they free memory).

The bound is a queue depth, not the node's load parallelism: a querynode queues accepted loads
itself and runs at most its own `--load-concurrency` of them at once, and it admits each segment
on its own against its memory limit, reserving the memory at admission (a queued load holds its
reservation, so the next distribution pull shows it in `reservedBytes` and the planner does not
spend it twice; what does not fit is refused and backed off). A deep bound keeps each node's queue
full between two passes instead of letting it run dry; it stays bounded so that one resource
cannot flood a node with thousands of queued requests, and so a spec change or a deletion only
has that many queued loads to cancel.

A task is not sent again until a distribution pull that started after it finished has been
seen ("settled"), so a plan computed from a stale distribution never duplicates a load.
`on_finished` is called when a task's request is answered, so the reconcile loop can pull at
once instead of waiting for its interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from vectorload_operator.clients import ClientFor, QuerynodeError
from vectorload_operator.core.model import SegmentRef, SegmentState, Task, TaskKind
from vectorload_operator.distribution import NodeView
from vectorload_operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)

TaskKey = tuple[TaskKind, str, SegmentRef]


@dataclass(frozen=True)
class Refusal:
    """A load the querynode refused (memory admission, missing files, bad request)."""

    task: Task
    reason: str
    message: str
    at: float


class Executor:
    def __init__(
        self,
        clients: ClientFor,
        max_per_node: int,
        metrics: OperatorMetrics,
        on_refusal: Callable[[Refusal], None],
        clock: Callable[[], float] = time.monotonic,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self._clients = clients
        self.max_per_node = max_per_node
        self._metrics = metrics
        self._on_refusal = on_refusal
        self._on_finished = on_finished
        self._clock = clock
        self._inflight: dict[TaskKey, asyncio.Task[None]] = {}
        self._finished: dict[TaskKey, float] = {}  # answered, not yet settled: monotonic answer time
        self.sent: list[Task] = []  # every task sent (bounded; for logs and tests)

    def inflight(self) -> int:
        return len(self._inflight)

    def unsettled(self) -> int:
        """Tasks in flight or answered but not yet seen by a later distribution pull."""
        return len(self._inflight) + len(self._finished)

    def settle(self, views: Mapping[str, NodeView]) -> int:
        """Forget answered tasks whose node has been pulled since (or is gone); how many."""
        done = [
            key
            for key, done_at in self._finished.items()
            if (view := views.get(key[1])) is None or view.pulled_at > done_at
        ]
        for key in done:
            del self._finished[key]
        return len(done)

    def submit(self, tasks: Iterable[Task], views: Mapping[str, NodeView]) -> list[Task]:
        """Start what may start now; return the tasks started."""
        self.settle(views)
        loading: dict[str, int] = defaultdict(int)
        for name, node_view in views.items():
            held = node_view.state.segments.values()
            loading[name] = sum(1 for h in held if h.state is SegmentState.LOADING)
        for kind, node, _ in (*self._inflight, *self._finished):
            if kind is TaskKind.LOAD:
                loading[node] += 1  # not in the last pull yet: still counts against the bound
        started: list[Task] = []
        for task in tasks:
            key: TaskKey = (task.kind, task.node, task.ref)
            if key in self._inflight or key in self._finished:
                continue
            view = views.get(task.node)
            if view is None or not view.state.ready or view.pod.url is None:
                continue
            if task.kind is TaskKind.LOAD:
                if loading[task.node] >= self.max_per_node:
                    continue
                loading[task.node] += 1
            self._inflight[key] = asyncio.create_task(self._run(key, task, view.pod.url))
            started.append(task)
        return started

    async def _run(self, key: TaskKey, task: Task, url: str) -> None:
        try:
            if task.kind is TaskKind.LOAD:
                await self._load(task, url)
            else:
                await self._release(task, url)
        except Exception:
            log.exception("task %s failed unexpectedly", task)
            self._metrics.task(task.kind.value, "error")
            self._metrics.reconcile_errors.inc()
        finally:
            self._inflight.pop(key, None)
            self._finished[key] = self._clock()
            self.sent.append(task)
            del self.sent[:-1000]
            if self._on_finished is not None:
                self._on_finished()

    async def _load(self, task: Task, url: str) -> None:
        fields = None if task.fields is None else sorted(task.fields)
        try:
            results = await self._clients(url).load(
                task.collection, task.partition, [task.segment], fields, task.skip_dynamic
            )
        except QuerynodeError as exc:
            self._metrics.task("load", "error")
            self._on_refusal(Refusal(task, exc.reason, exc.message, self._clock()))
            return
        for result in results:
            outcome = result.state  # loading | loaded | refused (typed by the client)
            self._metrics.task("load", outcome)
            if outcome == "refused":
                reason = result.reason or "LoadRefused"
                message = result.message or f"segment {task.segment} refused by {task.node}"
                self._on_refusal(Refusal(task, reason, message, self._clock()))
        log.info(
            "load %s/%s/%s on %s (%s)", task.collection, task.partition, task.segment, task.node, task.reason
        )

    async def _release(self, task: Task, url: str) -> None:
        try:
            await self._clients(url).release(task.collection, [(task.partition, task.segment)])
        except QuerynodeError as exc:
            self._metrics.task("release", "error")
            log.warning("release of %s on %s failed: %s", task.ref, task.node, exc.message)
            return
        self._metrics.task("release", "ok")
        log.info(
            "release %s/%s/%s on %s (%s)",
            task.collection,
            task.partition,
            task.segment,
            task.node,
            task.reason,
        )

    async def close(self) -> None:
        for t in list(self._inflight.values()):
            t.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
