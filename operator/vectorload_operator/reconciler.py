"""The reconcile loop: pull distribution → refresh catalogs → build targets → core `plan()` →
execute tasks → observe status, events and metrics.

When passes run: every `interval` (`--dist-pull-interval`) at the latest — the pull is every
node's heartbeat. Sooner when woken: a task's request was answered, a CollectionLoad was created,
changed or deleted, or the previous pull showed a change; the next pass then starts `debounce`
seconds after the last one ended (several wakes in that time make one pass), and never sooner
than the last pass took (so passes use at most about half of the time). While loads are under
way (a node reports `loading`, or a task is not settled yet) passes run every `busy_interval`.

Idle passes are cheap: when neither the registry, the catalogs, the pods nor any node's
distribution changed since the last planned pass, no task was answered since, and no backoff
timer is due, the pass only pulls (and refreshes catalogs when due) and skips planning and
status computation. A failure's retry time and the failure memory's horizon are such timers.

Each namespace is one querynode pool: a CollectionLoad uses the querynode pods of its own
namespace (the operator's selector, narrowed by `spec.querynodeSelector`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from vectorload_operator import core
from vectorload_operator.catalog import CatalogCache
from vectorload_operator.core import (
    BackoffState,
    LoadTarget,
    NodeState,
    Placement,
    PlannerSettings,
    Problem,
    ReplicaPlacement,
    SegmentState,
    SpecProblem,
    TaskKind,
)
from vectorload_operator.core.backoff import retry_at
from vectorload_operator.distribution import DistributionPuller, NodeView
from vectorload_operator.events import Events, ObjectRef
from vectorload_operator.executor import Executor, Refusal
from vectorload_operator.metrics import OperatorMetrics
from vectorload_operator.observe import Inputs, Observed, node_name, observe
from vectorload_operator.pods import QuerynodePod
from vectorload_operator.registry import Entry, Registry
from vectorload_operator.selectors import LabelSelector
from vectorload_operator.status import StatusWriter

log = logging.getLogger(__name__)

PodSource = Callable[[], Mapping[str, QuerynodePod]]


@dataclass
class _Memory:
    """What the loop remembers about one CollectionLoad between passes."""

    started_gen: int = 0
    loaded_gen: int = 0
    failure_keys: set[str] = field(default_factory=set)


def _conflict_losers(entries: list[Entry]) -> dict[tuple[str, str], Entry]:
    """Among live CollectionLoads of one pool, the oldest per collection wins; map loser → winner."""
    by_collection: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_collection[e.collection].append(e)
    losers: dict[tuple[str, str], Entry] = {}
    for group in by_collection.values():
        group.sort(key=lambda e: (e.created, e.name))
        for e in group[1:]:
            losers[e.key] = group[0]
    return losers


def _placement_from_status(entry: Entry) -> Placement:
    rows = entry.status.get("replicas") or []
    out = []
    for row in rows:
        try:
            nodes = tuple(f"{entry.namespace}/{n}" for n in row.get("nodes") or [])
            out.append(ReplicaPlacement(int(row["id"]), nodes))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(out)


class Reconciler:
    def __init__(
        self,
        registry: Registry,
        pods: PodSource,
        puller: DistributionPuller,
        catalogs: CatalogCache,
        executor_factory: Callable[[Callable[[Refusal], None], Callable[[], None]], Executor],
        writer: StatusWriter,
        events: Events,
        metrics: OperatorMetrics,
        interval: float,
        planner: PlannerSettings | None = None,
        debounce: float = 0.05,
        busy_interval: float | None = None,
    ) -> None:
        self.registry = registry
        self._pods = pods
        self._puller = puller
        self._catalogs = catalogs
        self.executor = executor_factory(self._refused, self.wake)
        self._writer = writer
        self._events = events
        self._metrics = metrics
        self.interval = interval
        self.debounce = debounce
        self.busy_interval = (
            busy_interval if busy_interval is not None else min(interval, max(debounce, interval / 5))
        )
        self._planner = planner or PlannerSettings()
        self._placements: dict[str, Placement] = {}
        self._backoff: dict[str, BackoffState] = {}
        self._memory: dict[tuple[str, str], _Memory] = {}
        self._seeded_status: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fingerprint: tuple[int, ...] | None = None
        self._refusals = 0
        self._next_due = float("inf")  # monotonic time of the next backoff timer
        self._pull_changed = False
        self._busy = False
        self.passes = 0  # every pass (every pull)
        self.planned = 0  # passes that planned and recomputed status
        self.views: dict[str, NodeView] = {}
        registry.listen(self.wake)

    # ------------------------------------------------------------------ time helpers
    @staticmethod
    def _mono() -> float:
        return time.monotonic()

    def _wall_of(self, mono: float) -> float:
        return time.time() - (self._mono() - mono)

    def _refused(self, refusal: Refusal) -> None:
        ns = refusal.task.node.partition("/")[0]
        state = self._backoff.get(ns, BackoffState())
        self._backoff[ns] = core.record_failure(
            state, refusal.task.node, refusal.task.ref, refusal.at, refusal.reason, refusal.message
        )
        self._refusals += 1

    def wake(self) -> None:
        """Run the next pass soon (debounced) instead of after the full interval. Thread-safe:
        kopf runs the synchronous handlers that change the registry in worker threads."""
        loop = self._loop
        if loop is None:
            self._wake.set()
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            started = self._mono()
            self._wake.clear()  # a wake during the pass makes the next pass come soon
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile pass failed")
                self._metrics.reconcile_errors.inc()
            await self._pause(self._mono() - started)

    def next_delay(self, took: float) -> float:
        """Seconds from the end of a pass that took `took` to the next pass, unless woken."""
        gap = max(self.debounce, took)
        if self._pull_changed:
            return gap
        wait = self.busy_interval if self._busy else self.interval
        wait = min(wait, self._next_due - self._mono())
        return max(wait - took, gap)

    async def _pause(self, took: float) -> None:
        ended = self._mono()
        delay = self.next_delay(took)
        if not self._wake.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                return
        rest = ended + max(self.debounce, took) - self._mono()
        if rest > 0:
            await asyncio.sleep(rest)  # debounce: wakes meanwhile join this pass

    def _unchanged(self, fingerprint: tuple[int, ...], settled: int, now: float) -> bool:
        """Nothing the plan or the status depends on changed since the last planned pass."""
        return (
            fingerprint == self._fingerprint
            and settled == 0
            and self.executor.unsettled() == 0
            and now < self._next_due
        )

    async def pass_once(self) -> None:
        pods = dict(self._pods())
        revision = self._puller.revision
        self.views = views = await self._puller.pull(pods)
        self._pull_changed = self._puller.revision != revision
        entries = list(self.registry)
        for e in entries:
            if e.key not in self._seeded_status:
                self._writer.seed(e.key, e.status)
                self._seeded_status.add(e.key)
        namespaces = {e.namespace for e in entries} | {v.pod.namespace for v in views.values()}
        await self._catalogs.refresh(
            {(e.namespace, e.collection) for e in entries if not e.deleting and e.collection}, views
        )
        settled = self.executor.settle(views)
        self._busy = self.executor.unsettled() > 0 or any(
            h.state is SegmentState.LOADING for v in views.values() for h in v.state.segments.values()
        )
        self.passes += 1
        fingerprint = (self.registry.version, self._catalogs.version, self._puller.revision, self._refusals)
        if self._unchanged(fingerprint, settled, self._mono()):
            self._metrics.refresh_settled()
            return
        self._fingerprint = fingerprint
        self._next_due = float("inf")
        for ns in sorted(namespaces):
            self._reconcile_pool(
                ns,
                [e for e in entries if e.namespace == ns],
                {k: v for k, v in views.items() if v.pod.namespace == ns},
            )
        self._metrics.observe_nodes(
            (
                v.pod.name,
                v.state.ready,
                v.state.capacity_bytes if v.state.ready else None,
                v.state.used_bytes if v.state.ready else None,
            )
            for v in views.values()
        )
        live = {e.key for e in self.registry}
        for key in [k for k in self._memory if k not in live]:
            del self._memory[key]
        self.planned += 1

    # ------------------------------------------------------------------ one pool
    def _reconcile_pool(self, ns: str, entries: list[Entry], views: Mapping[str, NodeView]) -> None:
        nodes = {k: v.state for k, v in views.items()}
        live = [e for e in entries if not e.deleting]
        losers = _conflict_losers(live)
        targets: list[LoadTarget] = []
        retain: set[str] = set()
        outcome: dict[tuple[str, str], Inputs] = {}
        ready_nodes = [n for n in nodes.values() if n.ready]

        for e in entries:
            inputs = self._inputs_for(e, ns, views, nodes, ready_nodes, losers, targets, retain)
            outcome[e.key] = inputs

        prev = {t.key: self._placements.get(t.key) or _placement_for(self.registry, t.key) for t in targets}
        now = self._mono()
        result = core.plan(
            targets,
            list(nodes.values()),
            prev,
            self._backoff.get(ns, BackoffState()),
            now,
            self._planner,
            retain=frozenset(retain),
        )
        self._backoff[ns] = result.backoff
        self._next_due = min(self._next_due, self._timer_due(result.backoff, now))
        for key in [k for k in self._placements if k.startswith(f"{ns}/")]:
            if key not in result.placements:
                del self._placements[key]
        self._placements.update(result.placements)
        self.executor.submit(result.tasks, views)

        for e in entries:
            inputs = outcome[e.key]
            mem = self._memory.setdefault(e.key, _Memory())
            if inputs.target is not None:
                key = e.target_key
                failures = result.failures.get(key, ())
                inputs = replace(
                    inputs,
                    placement=result.placements.get(key, ()),
                    problems=tuple(result.problems.get(key, ())),
                    failures=tuple(failures),
                    failure_walls=tuple(self._wall_of(f.at) for f in failures),
                    nodes=tuple(nodes.values()),
                )
            if e.deleting:
                inputs = replace(inputs, releasing_segments=_held_count(e.collection, nodes, live))
            observed = observe(inputs)
            if observed.state == "Loaded" and mem.loaded_gen != e.generation:
                self._loaded(e, observed, inputs, mem)
            self._publish(e, observed, inputs, mem)
            if e.deleting:
                self._check_released(e, live, nodes, result.tasks)

    def _timer_due(self, backoff: BackoffState, now: float) -> float:
        """The earliest future time a failure record changes the plan: a retry becomes due or
        the record leaves the failure memory."""
        due = float("inf")
        for record in backoff.records.values():
            for at in (
                retry_at(record, self._planner),
                record.last_attempt + self._planner.failure_memory_s,
            ):
                if at > now:
                    due = min(due, at)
        return due

    def _inputs_for(
        self,
        e: Entry,
        ns: str,
        views: Mapping[str, NodeView],
        nodes: Mapping[str, NodeState],
        ready_nodes: list[NodeState],
        losers: Mapping[tuple[str, str], Entry],
        targets: list[LoadTarget],
        retain: set[str],
    ) -> Inputs:
        previous = self._writer.written(e.key) or e.status
        mem = self._memory.setdefault(e.key, _Memory())
        same_gen = previous.get("observedGeneration") == e.generation
        if same_gen and previous.get("loadState") == "Loaded":
            mem.loaded_gen = e.generation  # Loaded before an operator restart
        base = Inputs(
            generation=e.generation,
            previous=previous,
            now_wall=time.time(),
            was_loaded=mem.loaded_gen == e.generation,
        )
        if e.deleting:
            return replace(base, deleting=True)
        winner = losers.get(e.key)
        if winner is not None:
            problem = SpecProblem(
                "CollectionConflict",
                f'collection "{e.collection}" is already managed by CollectionLoad "{winner.name}" '
                f'on the querynode pool of namespace "{ns}"; the older CollectionLoad wins',
            )
            return replace(base, failure=problem)
        try:
            selector = LabelSelector.from_spec(e.spec.get("querynodeSelector"))
        except (ValueError, KeyError, TypeError) as exc:
            retain.add(e.collection)
            return replace(base, failure=SpecProblem("InvalidSpec", f"querynodeSelector: {exc}"))
        eligible = frozenset(k for k, v in views.items() if selector.matches(v.pod.labels))
        entry = self._catalogs.get((ns, e.collection))
        if entry is None:
            retain.add(e.collection)
            want = int(e.spec.get("replicas") or 1)
            waiting = Problem(
                "InsufficientNodes",
                f'no ready querynode to read the catalog of collection "{e.collection}" '
                f"[currentNodeNum={len(ready_nodes)}][expectedNodeNum={want}]",
            )
            return replace(base, waiting=waiting)
        result = core.build_target(e.target_key, e.spec, entry.catalog if entry.found else None)
        if isinstance(result, SpecProblem):
            retain.add(e.collection)
            return replace(base, failure=result)
        target = replace(result, eligible_nodes=eligible)
        targets.append(target)
        return replace(base, target=target)

    # ------------------------------------------------------------------ outputs
    def _loaded(self, e: Entry, observed: Observed, inputs: Inputs, mem: _Memory) -> None:
        """First Loaded of a generation: load duration metric and the Loaded event."""
        mem.loaded_gen = e.generation
        took = max(time.time() - e.generation_seen_at, 0.0)
        if not inputs.was_loaded:
            self._metrics.load_duration.observe(took)
        self._events.transition(
            ObjectRef(e.namespace, e.name, e.uid),
            "state",
            "Loaded",
            f"collection {e.collection} loaded: {observed.status.get('replicaText')} replicas, "
            f"{observed.status.get('loadedBytesText')} (generation {e.generation}, {took:.1f}s)",
        )

    def _publish(self, e: Entry, observed: Observed, inputs: Inputs, mem: _Memory) -> None:
        self._writer.submit(e.key, observed.status)
        self._metrics.observe_collection(
            e.namespace, e.name, e.collection, observed.state, observed.progress, observed.degraded_replicas
        )
        ref = ObjectRef(e.namespace, e.name, e.uid)
        if e.deleting:
            self._events.transition(ref, "state", "Releasing", "releasing every segment from the querynodes")
            return
        if inputs.failure is not None:
            self._events.transition(ref, "state", inputs.failure.reason, inputs.failure.message, warning=True)
        elif observed.state == "Loading" and mem.started_gen != e.generation:
            mem.started_gen = e.generation
            t = inputs.target
            detail = (
                f"loading collection {e.collection}: {len(t.partitions)} partitions, "
                f"{len(t.segments)} segments, {t.replicas} replicas (generation {e.generation})"
                if t is not None
                else f"loading collection {e.collection}"
            )
            self._events.transition(ref, "state", "LoadStarted", detail)
        capacity = [p for p in inputs.problems if p.reason in {"InsufficientNodes", "InsufficientMemory"}]
        if inputs.waiting is not None:
            capacity.append(inputs.waiting)
        if capacity:
            self._events.transition(ref, "capacity", capacity[0].reason, capacity[0].message, warning=True)
        else:
            self._events.transition(ref, "capacity", None)
        if observed.degraded.status == "True" and inputs.failure is None:
            self._events.transition(ref, "degraded", "Degraded", observed.degraded.message, warning=True)
        else:
            self._events.transition(ref, "degraded", None)
        current: set[str] = set()
        for f in inputs.failures:
            topic = f"fail/{f.node}/{f.segment.partition}/{f.segment.segment}"
            current.add(topic)
            self._events.transition(
                ref,
                topic,
                "SegmentLoadFailed",
                f"segment {f.segment.segment} (partition {f.segment.partition}) on node {node_name(f.node)}: "
                f"{f.reason}: {f.message}",
                warning=True,
            )
        for topic in mem.failure_keys - current:
            self._events.transition(ref, topic, None)
        mem.failure_keys = current

    def _check_released(
        self, e: Entry, live: list[Entry], nodes: Mapping[str, NodeState], tasks: tuple[core.Task, ...]
    ) -> None:
        """A deleted CollectionLoad is released when no querynode of its pool holds its
        collection (or another live CollectionLoad of the pool owns that collection)."""
        if e.released.is_set():
            return
        if any(o.collection == e.collection for o in live):
            e.released.set()
            return
        held = any(ref.collection == e.collection for n in nodes.values() if n.ready for ref in n.segments)
        pending = any(t.kind is TaskKind.LOAD and t.collection == e.collection for t in tasks)
        if not held and not pending:
            e.released.set()


def _held_count(collection: str, nodes: Mapping[str, NodeState], live: list[Entry]) -> int:
    if any(o.collection == collection for o in live):
        return 0
    return sum(1 for n in nodes.values() if n.ready for ref in n.segments if ref.collection == collection)


def _placement_for(registry: Registry, target_key: str) -> Placement:
    ns, _, name = target_key.partition("/")
    entry = registry.get((ns, name))
    return () if entry is None else _placement_from_status(entry)
