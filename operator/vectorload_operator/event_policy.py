"""Which transitions of a CollectionLoad emit which Kubernetes Events: pure policy.

Why: the events are the resource's history for `kubectl describe`; each must be posted once per
transition, not once per pass. The policy turns one pass's observation into topic transitions
(`Events.transition` posts a topic's reason when it changes and forgets it on `None`):

- topic `state`: `LoadStarted` at the first Loading of a generation; `Loaded` at its first Loaded
  (with the load duration); `Releasing` once deleted; when Failed, the problem's reason (Warning:
  `InvalidSpec`, `CollectionNotFound`, `PartitionNotFound`, `CollectionConflict`).
- topic `capacity`: `InsufficientNodes` / `InsufficientMemory` (Warning) while the plan cannot
  place the resource or no node can read its catalog; cleared when that ends.
- topic `degraded`: `Degraded` (Warning) while condition Degraded is True (not when Failed).
- topic `newdata`: `LoadingNewData` while a loaded collection loads segments published after
  its load (status `pendingSegments`); cleared when they are in.
- topic `fail/<node>/<partition>/<segment>`: `SegmentLoadFailed` (Warning) per failed load;
  cleared when the failure is forgotten.

`Released` is posted by the handlers: partitions removed from the spec, and the end of a deletion.
What the policy remembers between passes is a `Memory` per resource.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vectorload_operator.core.conditions import NEW_DATA
from vectorload_operator.observe import Inputs, Observed, node_name

CAPACITY_REASONS = frozenset({"InsufficientNodes", "InsufficientMemory"})


@dataclass(frozen=True)
class Memory:
    """Generations that already posted LoadStarted / reached Loaded, the failure topics open, and
    whether `LoadingNewData` is."""

    started_gen: int = 0
    loaded_gen: int = 0
    failure_topics: frozenset[str] = frozenset()
    new_data: bool = False  # the `newdata` topic is open

    def was_loaded(self, generation: int) -> bool:
        return self.loaded_gen == generation


def recall(memory: Memory, previous: Mapping[str, Any], generation: int) -> Memory:
    """A status written Loaded for this generation (before an operator restart) counts as Loaded:
    no second Loaded event, no load-duration sample."""
    if previous.get("observedGeneration") == generation and previous.get("loadState") == "Loaded":
        return replace(memory, loaded_gen=generation)
    return memory


@dataclass(frozen=True)
class Transition:
    topic: str
    reason: str | None  # None clears the topic
    message: str = ""
    warning: bool = False


@dataclass(frozen=True)
class Decision:
    transitions: tuple[Transition, ...]
    memory: Memory
    load_duration: float | None = None  # the first Loaded of a generation: seconds it took


def decide(
    collection: str,
    generation: int,
    inputs: Inputs,
    observed: Observed,
    memory: Memory,
    since_seen: float,
) -> Decision:
    """The events of one pass. `since_seen`: seconds since the generation was first seen."""
    out: list[Transition] = []
    duration: float | None = None
    if observed.state == "Loaded" and memory.loaded_gen != generation:
        took = max(since_seen, 0.0)
        if not inputs.was_loaded:
            duration = took
        memory = replace(memory, loaded_gen=generation)
        out.append(
            Transition(
                "state",
                "Loaded",
                f"collection {collection} loaded: {observed.status.get('replicaText')} replicas, "
                f"{observed.status.get('loadedBytesText')} (generation {generation}, {took:.1f}s)",
            )
        )
    if inputs.deleting:
        out.append(Transition("state", "Releasing", "releasing every segment from the querynodes"))
        return Decision(tuple(out), memory, duration)
    if inputs.failure is not None:
        out.append(Transition("state", inputs.failure.reason, inputs.failure.message, warning=True))
    elif observed.state == "Loading" and memory.started_gen != generation:
        memory = replace(memory, started_gen=generation)
        out.append(Transition("state", "LoadStarted", _load_started(collection, generation, inputs)))
    capacity = [p for p in inputs.problems if p.reason in CAPACITY_REASONS]
    if inputs.waiting is not None:
        capacity.append(inputs.waiting)
    if capacity:
        out.append(Transition("capacity", capacity[0].reason, capacity[0].message, warning=True))
    else:
        out.append(Transition("capacity", None))
    pending = observed.status.get("pendingSegments") or 0
    if pending and observed.state in ("Loaded", "Loading") and inputs.was_loaded:
        message = f"loading segments of collection {collection} published after it was loaded"
        out.append(Transition("newdata", NEW_DATA, message))
        memory = replace(memory, new_data=True)
    elif memory.new_data:
        out.append(Transition("newdata", None))
        memory = replace(memory, new_data=False)
    if observed.degraded.status == "True" and inputs.failure is None:
        out.append(Transition("degraded", "Degraded", observed.degraded.message, warning=True))
    else:
        out.append(Transition("degraded", None))
    current: set[str] = set()
    for f in inputs.failures:
        topic = f"fail/{f.node}/{f.segment.partition}/{f.segment.segment}"
        current.add(topic)
        out.append(
            Transition(
                topic,
                "SegmentLoadFailed",
                f"segment {f.segment.segment} (partition {f.segment.partition}) on node "
                f"{node_name(f.node)}: {f.reason}: {f.message}",
                warning=True,
            )
        )
    out.extend(Transition(topic, None) for topic in sorted(memory.failure_topics - current))
    return Decision(tuple(out), replace(memory, failure_topics=frozenset(current)), duration)


def _load_started(collection: str, generation: int, inputs: Inputs) -> str:
    t = inputs.target
    if t is None:
        return f"loading collection {collection}"
    return (
        f"loading collection {collection}: {len(t.partitions)} partitions, "
        f"{len(t.segments)} segments, {t.replicas} replicas (generation {generation})"
    )


def partitions_released(collection: str, old: Sequence[str] | None, new: Sequence[str] | None) -> str | None:
    """A spec change removed partitions (and kept others): the `Released` event's message."""
    removed = sorted(set(old or []) - set(new or []))
    if removed and new:
        return f"releasing partitions {', '.join(removed)} of collection {collection}"
    return None


def released(collection: str) -> str:
    """The deletion finished: the `Released` event's message."""
    return f"collection {collection} released from every querynode"
