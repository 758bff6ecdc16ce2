"""Publishing one pass: status (through the coalescing writer), events (by `event_policy`) and
metrics. The only part of the loop that writes what the core computed.

Why a part of its own: the loop decides, this part tells — the status writer, the event poster
and the metrics registry are its outputs, and it keeps the event policy's memory per resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vectorload_operator import event_policy
from vectorload_operator.clock import SYSTEM_CLOCK, Clock
from vectorload_operator.distribution import NodeView
from vectorload_operator.events import Events, ObjectRef
from vectorload_operator.metrics import OperatorMetrics
from vectorload_operator.observe import Inputs, Observed
from vectorload_operator.registry import Entry, Key
from vectorload_operator.status import StatusWriter


def ref_of(entry: Entry) -> ObjectRef:
    return ObjectRef(entry.namespace, entry.name, entry.uid)


class Publisher:
    def __init__(
        self, writer: StatusWriter, events: Events, metrics: OperatorMetrics, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.writer = writer
        self.events = events
        self.metrics = metrics
        self._clock = clock
        self._seeded: set[Key] = set()
        self._memory: dict[Key, event_policy.Memory] = {}

    def seed(self, entries: Iterable[Entry]) -> None:
        """Tell the writer the status each resource had when it was registered (once per resource),
        so an unchanged status after a restart is not written again."""
        for e in entries:
            if e.key not in self._seeded:
                self.writer.seed(e.key, e.status)
                self._seeded.add(e.key)

    def previous(self, entry: Entry) -> Mapping[str, Any]:
        """The status as last written (or as read at registration)."""
        return self.writer.written(entry.key) or entry.status

    def was_loaded(self, entry: Entry) -> bool:
        """Reached Loaded in its current generation (in this process or, by its status, before)."""
        memory = self._memory.get(entry.key, event_policy.Memory())
        memory = event_policy.recall(memory, self.previous(entry), entry.generation)
        self._memory[entry.key] = memory
        return memory.was_loaded(entry.generation)

    def publish(self, entry: Entry, inputs: Inputs, observed: Observed) -> None:
        memory = self._memory.get(entry.key, event_policy.Memory())
        since_seen = self._clock.wall() - entry.generation_seen_at
        decision = event_policy.decide(
            entry.collection, entry.generation, inputs, observed, memory, since_seen
        )
        self._memory[entry.key] = decision.memory
        if decision.load_duration is not None:
            self.metrics.load_duration.observe(decision.load_duration)
        self.writer.submit(entry.key, observed.status)
        self.metrics.observe_collection(
            entry.namespace,
            entry.name,
            entry.collection,
            observed.state,
            observed.progress,
            observed.degraded_replicas,
            now=self._clock.wall(),
        )
        ref = ref_of(entry)
        for t in decision.transitions:
            self.events.transition(ref, t.topic, t.reason, t.message, warning=t.warning)

    def keep_only(self, live: Iterable[Key]) -> None:
        """Forget the event memory of resources no longer registered."""
        keep = set(live)
        for key in [k for k in self._memory if k not in keep]:
            del self._memory[key]

    def nodes(self, views: Mapping[str, NodeView]) -> None:
        self.metrics.observe_nodes(
            (
                v.pod.name,
                v.state.ready,
                v.state.capacity_bytes if v.state.ready else None,
                v.state.used_bytes if v.state.ready else None,
            )
            for v in views.values()
        )

    def idle(self) -> None:
        """A pass that planned nothing: keep the settled resources' last-progress stamp fresh."""
        self.metrics.refresh_settled(now=self._clock.wall())

    def partitions_changed(self, entry: Entry, old: Any, new: Any) -> None:
        message = event_policy.partitions_released(entry.collection, old, new)
        if message is not None:
            self.events.emit(ref_of(entry), "Released", message)

    def released(self, entry: Entry) -> None:
        """The deletion finished: post Released, forget the resource's status, events, metrics and
        memory (a CollectionLoad created again under the same name starts afresh)."""
        self.events.emit(ref_of(entry), "Released", event_policy.released(entry.collection))
        self.metrics.forget_collection(entry.namespace, entry.name, entry.collection)
        self.writer.forget(entry.key)
        self.events.forget(entry.key)
        self._seeded.discard(entry.key)
        self._memory.pop(entry.key, None)
