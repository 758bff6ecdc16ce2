"""One querynode pool's share of a pass: resolve each CollectionLoad, plan, send, publish.

Each namespace is one querynode pool: a CollectionLoad uses the querynode pods of its own
namespace (the operator's selector, narrowed by `spec.querynodeSelector`). Two CollectionLoads of
one collection in one pool: `core.conflict_losers` decides (the older wins).

The load decision itself is made by the pure core: `inputs.resolve` → `core.build_target` per
resource, then `core.plan` for the whole pool. This part keeps what the planner needs from one
pass to the next — the placements it computed and the failure memory (backoff) of the pool —
and hands the tasks to the executor, the status to the observer and the publisher, and a deleted
resource's release to `release`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vectorload_operator import core, inputs, release
from vectorload_operator.catalog import CatalogCache
from vectorload_operator.clock import SYSTEM_CLOCK, Clock
from vectorload_operator.core import BackoffState, Placement, PlannerSettings, TargetKey
from vectorload_operator.distribution import NodeView
from vectorload_operator.executor import Executor, Refusal
from vectorload_operator.observe import observe
from vectorload_operator.publish import Publisher
from vectorload_operator.registry import Entry


class PoolPlanner:
    """Plans every pool of the operator; what it remembers is per pool (namespace)."""

    def __init__(
        self,
        catalogs: CatalogCache,
        publisher: Publisher,
        settings: PlannerSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._catalogs = catalogs
        self._publisher = publisher
        self.settings = settings or PlannerSettings()
        self._clock = clock
        self._placements: dict[TargetKey, Placement] = {}
        self._backoff: dict[str, BackoffState] = {}
        self.refusals = 0  # moves with every refused load (the plan depends on it)

    def refused(self, refusal: Refusal) -> None:
        """A querynode refused a load: remember it in its pool's failure memory."""
        ns = refusal.task.node.partition("/")[0]
        state = self._backoff.get(ns, BackoffState())
        self._backoff[ns] = core.record_failure(
            state, refusal.task.node, refusal.task.ref, refusal.at, refusal.reason, refusal.message
        )
        self.refusals += 1

    def reconcile(
        self, ns: str, entries: Sequence[Entry], views: Mapping[str, NodeView], executor: Executor
    ) -> float:
        """Plan pool `ns` (its CollectionLoads and querynode views), start the tasks, publish every
        resource's status; returns the monotonic time of the pool's next backoff timer."""
        nodes = {k: v.state for k, v in views.items()}
        live = [e for e in entries if not e.deleting]
        live_collections = {e.collection for e in live}
        losers = core.conflict_losers(inputs.claims(live))
        requests = {
            e.key: inputs.resolve(e, views, self._catalogs.get((ns, e.collection)), losers.get(e.target_key))
            for e in entries
        }
        by_target = {e.target_key: e for e in entries}
        targets = [r.target for r in requests.values() if r.target is not None]
        retain = frozenset(e.collection for e in entries if requests[e.key].retain)
        previous = {
            t.key: self._placements.get(t.key) or inputs.placement_from_status(by_target[t.key])
            for t in targets
        }
        now = self._clock.monotonic()
        result = core.plan(
            targets,
            list(nodes.values()),
            previous,
            self._backoff.get(ns, BackoffState()),
            now,
            self.settings,
            retain=retain,
        )
        self._backoff[ns] = result.backoff
        for key in [k for k in self._placements if k.startswith(f"{ns}/")]:
            if key not in result.placements:
                del self._placements[key]
        self._placements.update(result.placements)
        executor.submit(result.tasks, views)

        for e in entries:
            held = release.releasing_segments(e.collection, nodes, live_collections) if e.deleting else 0
            observed_inputs = inputs.observation(
                e,
                requests[e.key],
                self._publisher.previous(e),
                self._publisher.was_loaded(e),
                result,
                tuple(nodes.values()),
                now_wall=self._clock.wall(),
                wall_of=self._clock.wall_of,
                releasing_segments=held,
                new_data=self.settings.new_data,
            )
            self._publisher.publish(e, observed_inputs, observe(observed_inputs))
            deleted = e.deleting and not e.released.is_set()
            if deleted and release.is_released(e.collection, nodes, live_collections, result.tasks):
                e.released.set()
        return core.timer_due(result.backoff, now, self.settings)
