"""Wires the adapter together for one operator process and owns its background tasks.

Everything runs on kopf's event loop: the handlers (all `async`), the reconcile loop, the status
writer, the event poster and the `/metrics` server. One `Clock` is handed to every part.
"""

from __future__ import annotations

import asyncio
import logging

from vectorload_operator.catalog import CatalogCache
from vectorload_operator.clients import QuerynodeClients
from vectorload_operator.clock import SYSTEM_CLOCK, Clock
from vectorload_operator.core import Pacing, PlannerSettings
from vectorload_operator.distribution import DistributionPuller
from vectorload_operator.events import Events
from vectorload_operator.executor import Executor
from vectorload_operator.kube import KubeApi, load_config
from vectorload_operator.metrics import OperatorMetrics
from vectorload_operator.pods import parse_pod
from vectorload_operator.publish import Publisher
from vectorload_operator.reconciler import PodSource, Reconciler
from vectorload_operator.registry import Entry, Registry
from vectorload_operator.settings import OperatorConfig, TokenSource
from vectorload_operator.status import StatusWriter

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self, config: OperatorConfig, metrics: OperatorMetrics | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics or OperatorMetrics(clock=clock)
        self.registry = Registry(clock)
        self.token = TokenSource(config.token_file)
        self._tasks: list[asyncio.Task[None]] = []
        self.reconciler: Reconciler | None = None
        self.publisher: Publisher | None = None
        self.kube: KubeApi | None = None
        self.clients: QuerynodeClients | None = None

    @property
    def namespaces(self) -> tuple[str, ...]:
        return () if self.config.all_namespaces else self.config.namespaces

    async def start(self, pods: PodSource) -> None:
        """Seed the registry from a LIST (so nothing is taken for an orphan before the kopf
        handlers have seen every CollectionLoad), wait for the pod index, start the loops."""
        cfg, clock = self.config, self.clock
        load_config()
        self.kube = kube = KubeApi()
        self.clients = clients = QuerynodeClients(self.token.get, timeout=cfg.request_timeout)
        for body in await kube.list_collectionloads(self.namespaces):
            self.registry.upsert(body)
        await self._wait_for_index(kube, pods)
        writer = StatusWriter(
            kube.patch_status, cfg.status_interval, clock=clock.monotonic, on_error=self._count_error
        )
        events = Events(kube.create_event, on_error=self._count_error, clock=clock)
        self.publisher = publisher = Publisher(writer, events, self.metrics, clock)
        self.reconciler = Reconciler(
            registry=self.registry,
            pods=pods,
            puller=DistributionPuller(clients, clock=clock.monotonic),
            catalogs=CatalogCache(clients, cfg.catalog_interval, clock=clock.monotonic),
            executor_factory=lambda on_refusal, on_finished: Executor(
                clients,
                cfg.max_tasks_per_node,
                self.metrics,
                on_refusal,
                clock=clock.monotonic,
                on_finished=on_finished,
            ),
            publisher=publisher,
            pacing=Pacing.of(cfg.dist_pull_interval),
            planner=PlannerSettings(new_data=cfg.new_data),
            clock=clock,
        )
        for coro in (writer.run(), events.run(), self.reconciler.run(), self.reconciler.poll_catalogs()):
            self._tasks.append(asyncio.create_task(coro))
        log.info(
            "vectorload operator started: %d CollectionLoads, %d querynode pods",
            len(self.registry),
            len(pods()),
        )

    async def _wait_for_index(self, kube: KubeApi, pods: PodSource, patience: float = 5.0) -> None:
        listed = {
            p.key
            for p in (parse_pod(b) for b in await kube.list_pods(self.namespaces))
            if self.config.querynode_selector.matches(p.labels)
        }
        for _ in range(int(patience / 0.05)):
            if listed <= set(pods()):
                return
            await asyncio.sleep(0.05)
        log.warning("querynode pod index still incomplete after %.0fs", patience)

    def _count_error(self, _: BaseException) -> None:
        self.metrics.reconcile_errors.inc()

    def released(self, entry: Entry) -> None:
        """A deleted CollectionLoad is released: forget it everywhere."""
        self.registry.remove(entry.key)
        if self.publisher is not None:
            self.publisher.released(entry)
        else:
            self.metrics.forget_collection(entry.namespace, entry.name, entry.collection)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.reconciler is not None:
            await self.reconciler.executor.close()
        if self.clients is not None:
            await self.clients.close()
        await self.metrics.close()
