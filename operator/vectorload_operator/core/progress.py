"""Load progress with Milvus' formula (an observer: pure, reads placement + distribution).

Per partition: loaded (segment, replica) pairs × 100 / (segments × desired replicas); the
collection is the mean of its partitions, in integers 0–100. A copy counts as loaded when a
ready node of the replica holds it in state `loaded` with the target's field set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vectorload_operator.core.copies import copy_matches
from vectorload_operator.core.model import LoadTarget, NodeState, Placement, SegmentState


@dataclass(frozen=True)
class ReplicaProgress:
    """`loaded_segments` have the target's fields; `serving_segments` count any loaded copy."""

    id: int
    nodes: tuple[str, ...]
    loaded_segments: int
    serving_segments: int
    total_segments: int
    loaded_bytes: int

    @property
    def complete(self) -> bool:
        return self.loaded_segments == self.total_segments

    @property
    def serving(self) -> bool:
        return self.serving_segments == self.total_segments


@dataclass(frozen=True)
class PartitionProgress:
    name: str
    percent: int


@dataclass(frozen=True)
class Progress:
    percent: int
    partitions: tuple[PartitionProgress, ...]
    replicas: tuple[ReplicaProgress, ...]
    desired_replicas: int
    loaded_bytes: int

    @property
    def complete_replicas(self) -> int:
        return sum(1 for r in self.replicas if r.complete)

    @property
    def serving_replicas(self) -> int:
        return sum(1 for r in self.replicas if r.serving)


def compute_progress(target: LoadTarget, placement: Placement, nodes: Sequence[NodeState]) -> Progress:
    """Progress of `target` over the replicas of `placement` (usually `Plan.placements[key]`)."""
    ready = {n.name: n for n in nodes if n.ready}
    loaded_pairs = {p: 0 for p in target.partitions}
    totals = {p: 0 for p in target.partitions}
    for seg in target.segments:
        totals[seg.partition] = totals.get(seg.partition, 0) + 1
    replicas: list[ReplicaProgress] = []
    for replica in sorted(placement, key=lambda r: r.id):
        members = [ready[n] for n in replica.nodes if n in ready]
        loaded = serving = loaded_bytes = 0
        for seg in target.segments:
            ref = target.ref(seg)
            copies = [
                h
                for n in members
                if (h := n.segments.get(ref)) is not None and h.state == SegmentState.LOADED
            ]
            if copies:
                serving += 1
            good = [h for h in copies if copy_matches(target, h)]
            if good:
                loaded += 1
                loaded_bytes += good[0].bytes
                loaded_pairs[seg.partition] = loaded_pairs.get(seg.partition, 0) + 1
        replicas.append(
            ReplicaProgress(replica.id, replica.nodes, loaded, serving, len(target.segments), loaded_bytes)
        )
    desired = max(target.replicas, 1)
    partitions = tuple(
        PartitionProgress(
            name,
            100 if totals[name] == 0 else min(100, loaded_pairs[name] * 100 // (totals[name] * desired)),
        )
        for name in sorted(totals)
    )
    percent = sum(p.percent for p in partitions) // len(partitions) if partitions else 100
    return Progress(percent, partitions, tuple(replicas), desired, sum(r.loaded_bytes for r in replicas))


def guard_progress(
    percent: int, generation: int, previous_percent: int | None, previous_generation: int | None
) -> int:
    """loadProgress never decreases within one generation (a spec change may restart it)."""
    if previous_percent is not None and previous_generation == generation:
        return max(percent, previous_percent)
    return percent
