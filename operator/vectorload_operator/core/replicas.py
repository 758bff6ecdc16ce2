"""Which nodes form each replica of one target (Milvus: replica ↔ node assignment).

Policy:
- Replicas keep their previous nodes while those stay ready and eligible; a lost node is dropped.
- Scale down keeps the `replicas` most complete replicas (ties: lower id); scale up mints the
  smallest unused ids.
- Free eligible nodes (new, or left by a dropped replica) join the replica with the fewest nodes,
  nodes already holding this collection's data first. Joining moves no data.
- A replica with no node takes one from the replica with the most nodes (≥ 2). That node is
  *draining* first: it stays in its old replica (still serving) until each segment it holds has
  a loaded copy on another node of that replica; then it moves, and its copies serve the new
  replica. Serving never drops during a replica scale-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vectorload_operator.core.model import (
    HeldSegment,
    LoadTarget,
    NodeState,
    Placement,
    SegmentRef,
    SegmentState,
)


@dataclass
class ReplicaSlots:
    """A replica being planned (mutable, internal to one `plan` call)."""

    id: int
    nodes: list[str]
    prev_nodes: frozenset[str] = frozenset()
    prev_assignment: Mapping[SegmentRef, str] = field(default_factory=dict)
    draining: set[str] = field(default_factory=set)
    assignment: dict[SegmentRef, str] = field(default_factory=dict)

    @property
    def active_nodes(self) -> list[str]:
        """Nodes that take new segments (not draining)."""
        return [n for n in self.nodes if n not in self.draining]


def _held(node: NodeState, target: LoadTarget) -> dict[SegmentRef, HeldSegment]:
    refs = {target.ref(s) for s in target.segments}
    return {ref: h for ref, h in node.segments.items() if ref in refs}


def _held_bytes(node: NodeState, target: LoadTarget) -> int:
    return sum(h.bytes for h in _held(node, target).values() if h.state != SegmentState.FAILED)


def _loaded_count(replica: ReplicaSlots, ready: Mapping[str, NodeState], target: LoadTarget) -> int:
    loaded: set[SegmentRef] = set()
    for name in replica.nodes:
        for ref, h in _held(ready[name], target).items():
            if h.state == SegmentState.LOADED:
                loaded.add(ref)
    return len(loaded)


def assign_replica_nodes(
    target: LoadTarget,
    eligible: Sequence[NodeState],
    previous: Placement,
) -> list[ReplicaSlots]:
    """Replicas of `target` (ordered by id) with disjoint node sets drawn from `eligible`.

    Replicas left without any node are omitted; the caller reports InsufficientNodes.
    """
    ready = {n.name: n for n in eligible}
    taken: set[str] = set()
    kept: list[ReplicaSlots] = []
    for prev in sorted(previous, key=lambda r: r.id):
        nodes = [n for n in prev.nodes if n in ready and n not in taken]
        taken.update(nodes)
        kept.append(ReplicaSlots(prev.id, nodes, frozenset(prev.nodes), dict(prev.assignment)))

    if len(kept) > target.replicas:
        ranked = sorted(kept, key=lambda r: (-_loaded_count(r, ready, target), r.id))
        survivors = {r.id for r in ranked[: target.replicas]}
        for r in kept:
            if r.id not in survivors:
                taken.difference_update(r.nodes)
        kept = [r for r in kept if r.id in survivors]

    used_ids = {r.id for r in kept}
    next_id = 1
    while len(kept) < target.replicas:
        while next_id in used_ids:
            next_id += 1
        kept.append(ReplicaSlots(next_id, []))
        used_ids.add(next_id)
    kept.sort(key=lambda r: r.id)

    free = sorted(
        (n for n in ready.values() if n.name not in taken),
        key=lambda n: (-_held_bytes(n, target), -n.budget, n.name),
    )
    for node in free:
        receiver = min(kept, key=lambda r: (len(r.nodes), r.id))
        receiver.nodes.append(node.name)

    for empty in [r for r in kept if not r.nodes]:
        donors = [r for r in kept if len(r.active_nodes) >= 2]
        if not donors:
            break
        donor = max(donors, key=lambda r: (len(r.active_nodes), -r.id))
        node_name = min(donor.active_nodes, key=lambda n: (_held_bytes(ready[n], target), n))
        if _drained(node_name, donor, ready, target):
            donor.nodes.remove(node_name)
            empty.nodes.append(node_name)
        else:
            donor.draining.add(node_name)

    return [r for r in kept if r.nodes]


def _drained(node_name: str, donor: ReplicaSlots, ready: Mapping[str, NodeState], target: LoadTarget) -> bool:
    """Every segment on `node_name` has a loaded copy on another node of `donor`."""
    others = [ready[n] for n in donor.nodes if n != node_name]
    for ref, h in _held(ready[node_name], target).items():
        if h.state == SegmentState.FAILED:
            continue
        if not any(
            (o.segments.get(ref) is not None and o.segments[ref].state == SegmentState.LOADED) for o in others
        ):
            return False
    return True
