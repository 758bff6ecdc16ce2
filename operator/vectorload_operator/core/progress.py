"""Load progress with Milvus' formula (an observer: pure, reads placement + distribution).

Per partition: loaded (segment, replica) pairs × 100 / (segments × desired replicas); the
collection is the mean of its partitions, in integers 0–100. A copy counts as loaded when a
ready node of the replica holds it in state `loaded` with the target's field set. A segment a
compaction produced counts as loaded in a replica while every segment it was compacted from is
loaded there (`lineage`): their rows are its rows, so progress does not drop when a compaction
lands, and a load in progress at that moment still reaches 100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vectorload_operator.core.copies import copy_matches
from vectorload_operator.core.lineage import Lineage
from vectorload_operator.core.model import (
    HeldSegment,
    LoadTarget,
    NewDataSettings,
    NodeState,
    Placement,
    SegmentRef,
    SegmentState,
)


@dataclass(frozen=True)
class ReplicaProgress:
    """`loaded_segments` have the target's fields; `serving_segments` count any loaded copy;
    `missing` are the target segments not loaded (with the target's fields) in this replica."""

    id: int
    nodes: tuple[str, ...]
    loaded_segments: int
    serving_segments: int
    total_segments: int
    loaded_bytes: int
    missing: frozenset[SegmentRef] = frozenset()

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
class NewData:
    """Target segments missing in some replica that were published after the collection was last
    fully loaded (`loaded_generation`). `only_new`: nothing else is missing — every replica
    exists and lacks only new data — so a Loaded collection is still fully serving what it had.
    `large`: over both thresholds of `NewDataSettings` (then it shows as Loading)."""

    segments: frozenset[SegmentRef] = frozenset()
    bytes: int = 0
    only_new: bool = False
    large: bool = False


@dataclass(frozen=True)
class Progress:
    percent: int
    partitions: tuple[PartitionProgress, ...]
    replicas: tuple[ReplicaProgress, ...]
    desired_replicas: int
    loaded_bytes: int
    new_data: NewData = field(default_factory=NewData)

    @property
    def complete_replicas(self) -> int:
        return sum(1 for r in self.replicas if r.complete)

    @property
    def serving_replicas(self) -> int:
        return sum(1 for r in self.replicas if r.serving)


def compute_progress(
    target: LoadTarget,
    placement: Placement,
    nodes: Sequence[NodeState],
    loaded_generation: int | None = None,
    new_data: NewDataSettings | None = None,
) -> Progress:
    """Progress of `target` over the replicas of `placement` (usually `Plan.placements[key]`).
    With `loaded_generation` (the storage generation the collection was last fully loaded at),
    `Progress.new_data` says which missing segments are new data (`NewDataSettings` thresholds)."""
    ready = {n.name: n for n in nodes if n.ready}
    loaded_pairs = {p: 0 for p in target.partitions}
    totals = {p: 0 for p in target.partitions}
    for seg in target.segments:
        totals[seg.partition] = totals.get(seg.partition, 0) + 1
    lineage = Lineage(target)
    replicas: list[ReplicaProgress] = []
    for replica in sorted(placement, key=lambda r: r.id):
        members = [ready[n] for n in replica.nodes if n in ready]
        held: dict[SegmentRef, list[HeldSegment]] = {}
        for n in members:
            for ref, h in n.segments.items():
                if ref.collection == target.collection and h.state == SegmentState.LOADED:
                    held.setdefault(ref, []).append(h)

        def serves(ref: SegmentRef, held: dict[SegmentRef, list[HeldSegment]] = held) -> bool:
            return ref in held

        def matches(ref: SegmentRef, held: dict[SegmentRef, list[HeldSegment]] = held) -> bool:
            return any(copy_matches(target, h) for h in held.get(ref, ()))

        loaded = serving = loaded_bytes = 0
        missing: set[SegmentRef] = set()
        for seg in target.segments:
            ref = target.ref(seg)
            if lineage.covered(ref, serves):
                serving += 1
            if lineage.covered(ref, matches):
                loaded += 1
                good = [h for h in held.get(ref, ()) if copy_matches(target, h)]
                loaded_bytes += good[0].bytes if good else _source_bytes(lineage, ref, held)
                loaded_pairs[seg.partition] = loaded_pairs.get(seg.partition, 0) + 1
            else:
                missing.add(ref)
        replicas.append(
            ReplicaProgress(
                replica.id,
                replica.nodes,
                loaded,
                serving,
                len(target.segments),
                loaded_bytes,
                frozenset(missing),
            )
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
    found = NewData()
    if loaded_generation is not None:
        found = _new_data(target, lineage, placement, ready, replicas, loaded_generation, new_data)
    return Progress(
        percent, partitions, tuple(replicas), desired, sum(r.loaded_bytes for r in replicas), found
    )


def _new_data(
    target: LoadTarget,
    lineage: Lineage,
    placement: Placement,
    ready: dict[str, NodeState],
    replicas: list[ReplicaProgress],
    loaded_generation: int,
    settings: NewDataSettings | None,
) -> NewData:
    settings = settings or NewDataSettings()
    new: set[SegmentRef] = set()
    only_new = len(replicas) >= max(target.replicas, 1)
    for replica, rp in zip(sorted(placement, key=lambda r: r.id), replicas, strict=True):
        if not rp.missing:
            continue
        members = [ready[n] for n in replica.nodes if n in ready]

        def matches(ref: SegmentRef, members: list[NodeState] = members) -> bool:
            return any(
                (h := n.segments.get(ref)) is not None
                and h.state == SegmentState.LOADED
                and copy_matches(target, h)
                for n in members
            )

        for ref in rp.missing:
            if lineage.uncovered_is_new(ref, matches, loaded_generation):
                new.add(ref)
            else:
                only_new = False
    if not new:
        return NewData()
    size = sum(lineage.live[ref].bytes for ref in new)
    total = sum(s.bytes for s in target.segments)
    large = size > settings.max_bytes and size > settings.max_share * total
    return NewData(frozenset(new), size, only_new, large)


def _source_bytes(lineage: Lineage, ref: SegmentRef, held: dict[SegmentRef, list[HeldSegment]]) -> int:
    """Bytes of the copies that cover a compacted segment through its sources."""
    total = 0
    for src in lineage.sources(ref):
        copies = held.get(src)
        total += copies[0].bytes if copies else _source_bytes(lineage, src, held)
    return total


def guard_progress(
    percent: int, generation: int, previous_percent: int | None, previous_generation: int | None
) -> int:
    """loadProgress never decreases within one generation (a spec change may restart it)."""
    if previous_percent is not None and previous_generation == generation:
        return max(percent, previous_percent)
    return percent
