"""The reconcile loop: pull distribution → refresh catalogs → per pool: targets → `core.plan()` →
execute tasks → status, events and metrics. A thin loop that wires the parts:

| part | job |
| --- | --- |
| `core.pacing` | when the next pass runs, and whether a pass must plan (pure) |
| `pool.PoolPlanner` | one pool's pass; the planner's memory (placements, backoff) |
| `inputs` | per-resource inputs: entry + catalog + pool views → target or a problem (pure) |
| `observe` | status fields from the core's observers (pure) |
| `publish.Publisher`, `event_policy` | status writes, events (which transition emits which), metrics |
| `release` | when a deleted CollectionLoad is released (pure) |

Everything runs on one event loop (the kopf handlers are `async`): a handler that changes the
registry wakes the loop by setting an `asyncio.Event`, without any thread hop. Time is read from
the injected `Clock`; the waiting itself is asyncio's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from vectorload_operator import core
from vectorload_operator.catalog import CatalogCache, wanted_catalogs
from vectorload_operator.clock import SYSTEM_CLOCK, Clock
from vectorload_operator.core import Pacing, PassOutcome, PlannerSettings, SegmentState
from vectorload_operator.distribution import DistributionPuller
from vectorload_operator.executor import Executor, Refusal
from vectorload_operator.pods import QuerynodePod
from vectorload_operator.pool import PoolPlanner
from vectorload_operator.publish import Publisher
from vectorload_operator.registry import Registry

log = logging.getLogger(__name__)

PodSource = Callable[[], Mapping[str, QuerynodePod]]
ExecutorFactory = Callable[[Callable[[Refusal], None], Callable[[], None]], Executor]
"""(on_refusal, on_finished) → the executor the loop sends its tasks with."""


class Reconciler:
    def __init__(
        self,
        registry: Registry,
        pods: PodSource,
        puller: DistributionPuller,
        catalogs: CatalogCache,
        executor_factory: ExecutorFactory,
        publisher: Publisher,
        pacing: Pacing,
        planner: PlannerSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.registry = registry
        self._pods = pods
        self._puller = puller
        self._catalogs = catalogs
        self._publisher = publisher
        self.pacing = pacing
        self._clock = clock
        self.pools = PoolPlanner(catalogs, publisher, planner, clock)
        self._wake = asyncio.Event()
        self.executor = executor_factory(self.pools.refused, self.wake)
        self._fingerprint: core.Fingerprint | None = None
        self._outcome = PassOutcome(took=0.0)
        self._timer_due = core.NEVER  # monotonic time of the next backoff timer
        self.passes = 0  # every pass (every pull)
        self.planned = 0  # passes that planned and recomputed status
        registry.listen(self.wake)

    def wake(self) -> None:
        """Run the next pass soon (debounced) instead of after the full interval."""
        self._wake.set()

    async def poll_catalogs(self) -> None:
        """Poll the catalogs between passes (`CatalogCache.run`): a changed one wakes the loop."""
        await self._catalogs.run(
            lambda: wanted_catalogs(self.registry), lambda: self._puller.views, self.wake
        )

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        while True:
            started = self._clock.monotonic()
            self._wake.clear()  # a wake during the pass makes the next pass come soon
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile pass failed")
                self._publisher.metrics.reconcile_errors.inc()
            ended = self._clock.monotonic()
            await self._pause(ended, ended - started)

    async def _pause(self, ended: float, took: float) -> None:
        outcome = replace(self._outcome, took=took, timer_due=self._timer_due)
        delay = core.next_delay(self.pacing, outcome, self._clock.monotonic())
        if not self._wake.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                return
        rest = core.debounce_rest(self.pacing, ended, took, self._clock.monotonic())
        if rest > 0:
            await asyncio.sleep(rest)  # debounce: wakes meanwhile join this pass

    async def pass_once(self) -> None:
        pods = dict(self._pods())
        revision = self._puller.revision
        views = await self._puller.pull(pods)
        changed = self._puller.revision != revision
        entries = list(self.registry)
        self._publisher.seed(entries)
        await self._catalogs.refresh(wanted_catalogs(entries), views)
        settled = self.executor.settle(views)
        busy = self.executor.unsettled() > 0 or any(
            h.state is SegmentState.LOADING for v in views.values() for h in v.state.segments.values()
        )
        self._outcome = PassOutcome(took=0.0, changed=changed, busy=busy)  # took: set at the end
        self.passes += 1
        fingerprint = core.Fingerprint(
            self.registry.version, self._catalogs.version, self._puller.revision, self.pools.refusals
        )
        if not core.must_plan(
            fingerprint,
            self._fingerprint,
            settled=settled,
            unsettled=self.executor.unsettled(),
            now=self._clock.monotonic(),
            timer_due=self._timer_due,
        ):
            self._publisher.idle()
            return
        self._fingerprint = fingerprint
        due = core.NEVER
        namespaces = {e.namespace for e in entries} | {v.pod.namespace for v in views.values()}
        for ns in sorted(namespaces):
            due = min(
                due,
                self.pools.reconcile(
                    ns,
                    [e for e in entries if e.namespace == ns],
                    {k: v for k, v in views.items() if v.pod.namespace == ns},
                    self.executor,
                ),
            )
        self._timer_due = due
        self._publisher.nodes(views)
        self._publisher.keep_only(e.key for e in self.registry)
        self.planned += 1
