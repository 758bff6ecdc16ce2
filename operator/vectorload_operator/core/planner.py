"""target × distribution × capacities -> tasks (the checkers of Milvus QueryCoord v2).

Phases, over all targets (ordered by key) so memory is shared fairly:

1. replicas: node sets per replica (`replicas.assign_replica_nodes`).
2. keep: each target segment of each replica keeps the node it was assigned to (previous
   placement) or the best copy a node of the replica already holds — loaded before loading
   before failed, matching fields first, former members first, then name.
3. place: segments without a usable copy are loaded, largest first, onto the node of the replica
   with the most free memory (`capacity × threshold − used − reserved − planned loads`); a
   segment never goes where it does not fit. Failed loads are retried after their backoff; after
   `max_attempts_per_node` failures on one node another node of the replica is tried.
4. reload: a copy whose fields differ from the target's is reloaded in place (the querynode keeps
   the old copy serving until the swap), one replica at a time when there are two or more.
5. rebalance (opt-in, `RebalanceSettings`): in a fully loaded, quiet replica, move the largest
   segment of at most half the byte gap from the fullest to the emptiest node while the gap
   exceeds `min_imbalance` × the fullest node's bytes; at most `max_moves` per plan.
6. release: orphans (collections no target wants and not `retain`ed) and segments no longer
   targeted at once; a redundant copy (a move) only once the assigned copy is loaded; a segment
   a compaction retired only once every live segment replacing it is loaded in its replica (the
   swap: its rows keep being served until then, `lineage`), at once if it does not serve.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from vectorload_operator.core import backoff as bo
from vectorload_operator.core.conflicts import Claim, conflict_losers
from vectorload_operator.core.copies import copy_matches, reload_matches
from vectorload_operator.core.lineage import Lineage
from vectorload_operator.core.model import (
    BackoffState,
    FailureRecord,
    HeldSegment,
    LoadTarget,
    NodeState,
    Placement,
    Plan,
    PlannerSettings,
    Problem,
    ReplicaPlacement,
    SegmentFailure,
    SegmentRef,
    SegmentState,
    TargetKey,
    TargetSegment,
    Task,
    TaskKind,
)
from vectorload_operator.core.replicas import ReplicaSlots, assign_replica_nodes


@dataclass
class _TargetPlan:
    target: LoadTarget
    replicas: list[ReplicaSlots]
    segments: dict[SegmentRef, TargetSegment]
    eligible: int
    unplaced: dict[int, list[TargetSegment]] = field(default_factory=dict)
    busy: bool = False  # a load was emitted for this target in this plan

    @property
    def lineage(self) -> Lineage:
        if self._lineage is None:
            self._lineage = Lineage(self.target)
        return self._lineage

    _lineage: Lineage | None = None


class _Planner:
    def __init__(
        self,
        nodes: Sequence[NodeState],
        backoff: BackoffState,
        now: float,
        settings: PlannerSettings,
    ) -> None:
        self.known = {n.name for n in nodes}
        self.ready = {n.name: n for n in nodes if n.ready}
        self.lost_refs = {ref for n in nodes if not n.ready for ref in n.segments}
        self.free = {name: n.budget for name, n in self.ready.items()}
        self.records: dict[tuple[str, SegmentRef], FailureRecord] = dict(backoff.records)
        self.now = now
        self.settings = settings
        self.loads: list[Task] = []
        self.releases: list[Task] = []
        self.moves_left = settings.rebalance.max_moves if settings.rebalance.enabled else 0

    # ---------------------------------------------------------------- helpers

    def held(self, node: str, ref: SegmentRef) -> HeldSegment | None:
        n = self.ready.get(node)
        return None if n is None else n.segments.get(ref)

    def need(self, seg: TargetSegment) -> int:
        return math.ceil(seg.bytes * self.settings.memory_factor)

    def fits(self, node: str, seg: TargetSegment) -> bool:
        return self.free.get(node, 0) >= self.need(seg)

    def backing_off(self, node: str, ref: SegmentRef) -> bool:
        return bo.in_backoff(BackoffState(self.records), node, ref, self.now, self.settings)

    def exhausted(self, node: str, ref: SegmentRef) -> bool:
        record = self.records.get((node, ref))
        return record is not None and record.attempts >= self.settings.max_attempts_per_node

    def emit_load(
        self, tp: _TargetPlan, replica: ReplicaSlots, seg: TargetSegment, node: str, why: str
    ) -> None:
        target = tp.target
        ref = target.ref(seg)
        held = self.held(node, ref)
        retry = (node, ref) in self.records or (held is not None and held.state == SegmentState.FAILED)
        if retry and why != "FieldsChanged":
            why = "Retry"
            self.records = dict(bo.record_attempt(BackoffState(self.records), node, ref, self.now).records)
        self.free[node] = self.free.get(node, 0) - self.need(seg)
        replica.assignment[ref] = node
        tp.busy = True
        self.loads.append(
            Task(
                TaskKind.LOAD,
                node,
                target.collection,
                seg.partition,
                seg.id,
                fields=target.fields,
                skip_dynamic=target.skip_dynamic,
                owner=target.key,
                replica_id=replica.id,
                bytes=seg.bytes,
                reason=why,
            )
        )

    def emit_release(self, node: str, ref: SegmentRef, owner: TargetKey | None, why: str) -> None:
        self.releases.append(
            Task(TaskKind.RELEASE, node, ref.collection, ref.partition, ref.segment, owner=owner, reason=why)
        )

    # ---------------------------------------------------------------- failure memory

    def observe(self, wanted: Collection[SegmentRef]) -> None:
        """Fold the distribution into the failure memory and forget stale records."""
        for name, node in self.ready.items():
            for ref, h in node.segments.items():
                key = (name, ref)
                if h.state == SegmentState.LOADED:
                    self.records.pop(key, None)
                elif h.state == SegmentState.FAILED:
                    old = self.records.get(key)
                    if old is None:
                        self.records[key] = FailureRecord(1, self.now, h.reason, h.message, self.now)
                    elif h.reason and (h.reason, h.message) != (old.reason, old.message):
                        self.records[key] = FailureRecord(
                            old.attempts, old.last_attempt, h.reason, h.message, self.now
                        )
        horizon = self.now - self.settings.failure_memory_s
        self.records = {
            (node, ref): r
            for (node, ref), r in self.records.items()
            if node in self.known and ref in wanted and r.last_attempt >= horizon
        }

    # ---------------------------------------------------------------- phase 2: keep

    def keep(self, tp: _TargetPlan) -> None:
        target = tp.target
        for replica in tp.replicas:
            active = replica.active_nodes
            for seg in target.segments:
                ref = target.ref(seg)
                prev = replica.prev_assignment.get(ref)
                if prev is not None and prev in active and not self.exhausted(prev, ref):
                    h = self.held(prev, ref)
                    if h is not None or (not self.backing_off(prev, ref) and self.fits(prev, seg)):
                        replica.assignment[ref] = prev
                        continue
                copies = [(n, h) for n in active if (h := self.held(n, ref)) is not None]
                if copies:
                    best = min(copies, key=lambda c: self._copy_rank(target, replica, ref, c[0], c[1]))
                    replica.assignment[ref] = best[0]

    def _copy_rank(
        self, target: LoadTarget, replica: ReplicaSlots, ref: SegmentRef, node: str, h: HeldSegment
    ) -> tuple[int, int, str]:
        if h.state == SegmentState.FAILED:
            rank = 5 if self.exhausted(node, ref) else 4
        else:
            rank = (0 if h.state == SegmentState.LOADED else 2) + (0 if copy_matches(target, h) else 1)
        return (rank, 0 if node in replica.prev_nodes else 1, node)

    # ---------------------------------------------------------------- phase 3: place

    def place(self, tp: _TargetPlan) -> None:
        target = tp.target
        for replica in tp.replicas:
            pending: list[TargetSegment] = []
            for seg in target.segments:
                ref = target.ref(seg)
                node = replica.assignment.get(ref)
                h = None if node is None else self.held(node, ref)
                if node is None or h is None or h.state == SegmentState.FAILED:
                    pending.append(seg)
            pending.sort(key=lambda s: (target.ref(s) not in replica.assignment, -s.bytes, s.partition, s.id))
            bytes_here = self._replica_bytes(tp, replica)
            for seg in pending:
                before = replica.assignment.get(target.ref(seg))
                if not self._place_one(tp, replica, seg, bytes_here):
                    tp.unplaced.setdefault(replica.id, []).append(seg)
                after = replica.assignment.get(target.ref(seg))
                if before != after:
                    if before is not None:
                        bytes_here[before] -= seg.bytes
                    if after is not None:
                        bytes_here[after] = bytes_here.get(after, 0) + seg.bytes

    def _place_one(
        self, tp: _TargetPlan, replica: ReplicaSlots, seg: TargetSegment, bytes_here: Mapping[str, int]
    ) -> bool:
        """Load `seg` somewhere in `replica`; False when it cannot be placed for lack of memory.

        `bytes_here` is the replica's bytes per node (tie-break: the emptier node)."""
        ref = tp.target.ref(seg)
        current = replica.assignment.get(ref)
        why = "NodeLost" if self._was_lost(replica, ref) else "Missing"
        if current is not None and not self.exhausted(current, ref):
            if self.backing_off(current, ref):
                return True
            if self.fits(current, seg):
                self.emit_load(tp, replica, seg, current, why)
                return True
        candidates = [
            n
            for n in replica.active_nodes
            if n != current
            and self.held(n, ref) is None
            and not self.backing_off(n, ref)
            and not self.exhausted(n, ref)
            and self.fits(n, seg)
        ]
        if candidates:
            best = max(candidates, key=lambda n: (self.free[n], -bytes_here.get(n, 0), _neg(n)))
            self.emit_load(tp, replica, seg, best, why)
            return True
        if current is not None:
            if self.backing_off(current, ref):
                return True
            if self.fits(current, seg):
                self.emit_load(tp, replica, seg, current, why)
                return True
            replica.assignment.pop(ref, None)
        return False

    def _was_lost(self, replica: ReplicaSlots, ref: SegmentRef) -> bool:
        prev = replica.prev_assignment.get(ref)
        return ref in self.lost_refs or (prev is not None and prev not in self.ready)

    def _replica_bytes(self, tp: _TargetPlan, replica: ReplicaSlots) -> dict[str, int]:
        out: dict[str, int] = {}
        for ref, node in replica.assignment.items():
            out[node] = out.get(node, 0) + tp.segments[ref].bytes
        return out

    # ---------------------------------------------------------------- phase 4: reload fields

    def reload(self, tp: _TargetPlan) -> None:
        target = tp.target
        stale: dict[int, list[TargetSegment]] = {}
        fresh: dict[int, int] = {}
        reloading: set[int] = set()
        for replica in tp.replicas:
            for seg in target.segments:
                ref = target.ref(seg)
                node = replica.assignment.get(ref)
                h = None if node is None else self.held(node, ref)
                if h is None or h.state == SegmentState.FAILED:
                    continue
                if reload_matches(target, h):
                    reloading.add(replica.id)
                if copy_matches(target, h) or reload_matches(target, h):
                    fresh[replica.id] = fresh.get(replica.id, 0) + 1
                else:
                    stale.setdefault(replica.id, []).append(seg)
        if not stale:
            return
        rolling = [r for r in tp.replicas if r.id in stale]
        if len(tp.replicas) >= 2:
            if reloading - set(stale):
                return  # another replica is still finishing its reload
            started = [r for r in rolling if fresh.get(r.id, 0) > 0]
            chosen = started[0] if started else rolling[0]
            others_serving = all(self._serving(tp, r) for r in tp.replicas if r is not chosen)
            if not started and not others_serving:
                return
            rolling = [chosen]
        for replica in rolling:
            for seg in sorted(stale[replica.id], key=lambda s: (-s.bytes, s.partition, s.id)):
                node = replica.assignment[target.ref(seg)]
                if self.fits(node, seg):
                    self.emit_load(tp, replica, seg, node, "FieldsChanged")

    def _serving(self, tp: _TargetPlan, replica: ReplicaSlots) -> bool:
        """Every target segment is loaded (with any fields) on its assigned node."""
        for seg in tp.target.segments:
            ref = tp.target.ref(seg)
            node = replica.assignment.get(ref)
            h = None if node is None else self.held(node, ref)
            if h is None or h.state != SegmentState.LOADED:
                return False
        return not any(t.owner == tp.target.key and t.replica_id == replica.id for t in self.loads)

    # ---------------------------------------------------------------- phase 5: rebalance

    def rebalance(self, tp: _TargetPlan) -> None:
        if self.moves_left <= 0 or tp.busy:
            return
        for replica in tp.replicas:
            if replica.draining or not self._quiet(tp, replica):
                continue
            per_node = {n: 0 for n in replica.nodes}
            per_node.update(self._replica_bytes(tp, replica))
            while self.moves_left > 0:
                hi = max(per_node, key=lambda n: (per_node[n], _neg(n)))
                lo = min(per_node, key=lambda n: (per_node[n], n))
                gap = per_node[hi] - per_node[lo]
                if gap <= 0 or gap <= self.settings.rebalance.min_imbalance * per_node[hi]:
                    break
                movable = [
                    tp.segments[ref]
                    for ref, n in replica.assignment.items()
                    if n == hi
                    and 0 < tp.segments[ref].bytes * 2 <= gap
                    and self.fits(lo, tp.segments[ref])
                    and not self.backing_off(lo, ref)
                ]
                if not movable:
                    break
                seg = max(movable, key=lambda s: (s.bytes, s.partition, s.id))
                self.emit_load(tp, replica, seg, lo, "Rebalance")
                per_node[hi] -= seg.bytes
                per_node[lo] += seg.bytes
                self.moves_left -= 1

    def _quiet(self, tp: _TargetPlan, replica: ReplicaSlots) -> bool:
        """Fully loaded with the target's fields and holding no extra copies."""
        target = tp.target
        for seg in target.segments:
            ref = target.ref(seg)
            node = replica.assignment.get(ref)
            h = None if node is None else self.held(node, ref)
            if h is None or h.state != SegmentState.LOADED or not copy_matches(target, h) or h.reloading:
                return False
        for name in replica.nodes:
            for ref in self.ready[name].segments:
                if ref in tp.segments and replica.assignment.get(ref) != name:
                    return False
        return True

    # ---------------------------------------------------------------- phase 6: release

    def release(self, by_collection: Mapping[str, _TargetPlan], untouchable: Collection[str]) -> None:
        for name in sorted(self.ready):
            node = self.ready[name]
            for ref in sorted(node.segments):
                h = node.segments[ref]
                if ref.collection in untouchable:
                    continue
                tp = by_collection.get(ref.collection)
                if tp is None:
                    self.emit_release(name, ref, None, "Orphan")
                    continue
                key = tp.target.key
                replica = next((r for r in tp.replicas if name in r.nodes), None)
                if ref in tp.lineage.retired:
                    if self._swapped(tp, replica, ref, h):
                        self.emit_release(name, ref, key, "Compacted")
                    continue
                if ref not in tp.segments:
                    self.emit_release(name, ref, key, "NotTargeted")
                    continue
                if replica is None:
                    if h.state != SegmentState.LOADED or self._loaded_anywhere(tp, ref):
                        self.emit_release(name, ref, key, "NotTargeted")
                    continue
                if name in replica.draining:
                    continue
                assigned = replica.assignment.get(ref)
                if assigned == name:
                    continue
                assigned_copy = None if assigned is None else self.held(assigned, ref)
                replaced = assigned_copy is not None and assigned_copy.state == SegmentState.LOADED
                if h.state != SegmentState.LOADED or replaced:
                    self.emit_release(name, ref, key, "Redundant")

    def _swapped(
        self, tp: _TargetPlan, replica: ReplicaSlots | None, ref: SegmentRef, h: HeldSegment
    ) -> bool:
        """A retired copy may go: it does not serve (loading or failed, or outside every
        replica), or every live segment replacing it is loaded on a node of its replica."""
        if h.state != SegmentState.LOADED or replica is None:
            return True
        return all(
            any(
                (c := self.held(n, new)) is not None and c.state == SegmentState.LOADED for n in replica.nodes
            )
            for new in tp.lineage.replacements(ref)
        )

    def _loaded_anywhere(self, tp: _TargetPlan, ref: SegmentRef) -> bool:
        for replica in tp.replicas:
            node = replica.assignment.get(ref)
            h = None if node is None else self.held(node, ref)
            if h is not None and h.state == SegmentState.LOADED:
                return True
        return False

    # ---------------------------------------------------------------- reporting

    def problems(self, tp: _TargetPlan) -> list[Problem]:
        out: list[Problem] = []
        target = tp.target
        if tp.eligible < target.replicas:
            out.append(
                Problem(
                    "InsufficientNodes",
                    f"nodes not enough to load {target.replicas} replica(s) of collection "
                    f'"{target.collection}": currentNodeNum={tp.eligible}, '
                    f"expectedNodeNum={target.replicas}",
                )
            )
        for rid, segs in sorted(tp.unplaced.items()):
            replica = next(r for r in tp.replicas if r.id == rid)
            need = sum(self.need(s) for s in segs)
            largest = max(segs, key=lambda s: s.bytes)
            free = ", ".join(f"{n}={max(self.free.get(n, 0), 0)}" for n in replica.active_nodes)
            out.append(
                Problem(
                    "InsufficientMemory",
                    f'not enough memory to load {len(segs)} segment(s) of collection "{target.collection}" '
                    f"into replica {rid}: {need} bytes needed (largest segment "
                    f"{largest.partition}/{largest.id}: {self.need(largest)} bytes), "
                    f"free bytes per node: {free}",
                )
            )
        return out

    def failures(self, tp: _TargetPlan) -> tuple[SegmentFailure, ...]:
        out = [
            SegmentFailure(
                node,
                ref,
                r.reason or "LoadFailed",
                r.message,
                r.attempts,
                r.failed_at if r.failed_at is not None else r.last_attempt,
                bo.retry_at(r, self.settings),
            )
            for (node, ref), r in self.records.items()
            if ref in tp.segments
        ]
        out.sort(key=lambda f: (-f.at, f.node, f.segment))
        return tuple(out)


def _neg(name: str) -> tuple[int, ...]:
    """Sort key that orders names descending inside a max()."""
    return tuple(-ord(c) for c in name)


def plan(
    targets: Sequence[LoadTarget],
    nodes: Sequence[NodeState],
    previous: Mapping[TargetKey, Placement],
    backoff: BackoffState,
    now: float,
    settings: PlannerSettings,
    *,
    retain: Collection[str] = frozenset(),
) -> Plan:
    """Compute load/release tasks and replica placements for every target.

    `previous` is the last plan's placements (or those read back from status: ids and nodes,
    no assignment). Feeding back the plan's own placements keeps in-flight moves stable.
    `retain` lists collections whose held segments must not be touched (a CollectionLoad whose
    spec is invalid or whose catalog could not be read keeps what it has). Every other
    collection held on a ready node that no target wants is an orphan and is released.
    Two targets for one collection: the rule of `conflicts` applies (targets carry no age, so
    the first by key wins), the other gets a `CollectionConflict` problem. The adapter resolves
    conflicts by age before it builds targets, so it never hands the planner two.
    Applying the tasks and planning again converges to a plan without tasks.
    """
    p = _Planner(nodes, backoff, now, settings)
    problems: dict[TargetKey, tuple[Problem, ...]] = {}
    by_collection: dict[str, _TargetPlan] = {}
    losers = conflict_losers(Claim(t.key, t.collection) for t in targets)
    for target in sorted(targets, key=lambda t: t.key):
        lost = losers.get(target.key)
        if lost is not None:
            problems[target.key] = (lost,)
            continue
        eligible = [
            n for n in p.ready.values() if target.eligible_nodes is None or n.name in target.eligible_nodes
        ]
        eligible.sort(key=lambda n: n.name)
        replicas = assign_replica_nodes(target, eligible, previous.get(target.key, ()))
        segments = {target.ref(s): s for s in target.segments}
        by_collection[target.collection] = _TargetPlan(target, replicas, segments, len(eligible))

    plans = list(by_collection.values())
    p.observe({ref for tp in plans for ref in tp.segments})
    for tp in plans:
        p.keep(tp)
    for tp in plans:
        p.place(tp)
    for tp in plans:
        p.reload(tp)
    for tp in plans:
        p.rebalance(tp)
    p.release(by_collection, frozenset(retain))

    placements: dict[TargetKey, Placement] = {}
    failures: dict[TargetKey, tuple[SegmentFailure, ...]] = {}
    for tp in plans:
        key = tp.target.key
        placements[key] = tuple(
            ReplicaPlacement(r.id, tuple(r.nodes), dict(r.assignment)) for r in tp.replicas
        )
        found = p.problems(tp)
        if found:
            problems[key] = tuple(found)
        failed = p.failures(tp)
        if failed:
            failures[key] = failed

    return Plan(
        tasks=tuple(p.loads) + tuple(p.releases),
        placements=placements,
        problems=problems,
        failures=failures,
        backoff=BackoffState(p.records),
    )
