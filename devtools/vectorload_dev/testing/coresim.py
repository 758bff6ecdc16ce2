"""Test helpers for the reconcile core: catalogs, nodes, and a simulated querynode pool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from vectorload.wire.querynode import CollectionCatalog, convert
from vectorload_operator.core import (
    BackoffState,
    HeldSegment,
    LoadTarget,
    NodeState,
    Placement,
    Plan,
    PlannerSettings,
    SegmentRef,
    SegmentState,
    TaskKind,
    build_target,
    plan,
)

SCHEMA_FIELDS = [
    {"name": "book_id", "type": "int64", "isPrimary": True},
    {"name": "embedding", "type": "float_vector", "dim": 8, "metric": "l2"},
    {"name": "title", "type": "varchar", "maxLength": 64},
    {"name": "year", "type": "int64"},
]


def catalog(
    name: str, partitions: Mapping[str, Sequence[int]], dynamic: bool = True, prefix: str = "s"
) -> CollectionCatalog:
    """A catalog whose segments weigh the given totals, split over the four fields (+ $meta)."""
    return convert(catalog_doc(name, partitions, dynamic, prefix), CollectionCatalog)


def catalog_doc(
    name: str, partitions: Mapping[str, Sequence[int]], dynamic: bool = True, prefix: str = "s"
) -> dict[str, Any]:
    """The same catalog as the JSON the querynode answers (memoryBytes = file sizes)."""
    parts = []
    for pname, sizes in partitions.items():
        segs = []
        for i, total in enumerate(sizes):
            # 10% pk, 60% vector, 10% title, 10% year, 10% $meta
            tenth = total // 10
            b = {"book_id": tenth, "embedding": total - 4 * tenth, "title": tenth, "year": tenth}
            if dynamic:
                b["$meta"] = tenth
            else:
                b["embedding"] += tenth
            segs.append(
                {"id": f"{prefix}{pname}{i}", "rows": 10, "bytes": b, "totalBytes": total, "memoryBytes": b}
            )
        parts.append({"name": pname, "segments": segs})
    return {
        "name": name,
        "schema": {"name": name, "enableDynamicField": dynamic, "fields": SCHEMA_FIELDS},
        "partitions": parts,
    }


def target(key: str, spec: Mapping[str, Any], cat: CollectionCatalog) -> LoadTarget:
    t = build_target(key, spec, cat)
    assert isinstance(t, LoadTarget), t
    return t


def node(name: str, cap: int = 1000, ready: bool = True, threshold: float = 1.0, used: int = 0) -> NodeState:
    return NodeState(
        name, ready, address=f"{name}:19530", capacity_bytes=cap, threshold=threshold, used_bytes=used
    )


def apply(nodes: Sequence[NodeState], p: Plan, targets: Sequence[LoadTarget]) -> list[NodeState]:
    """Every task succeeds at once: loads become loaded copies, releases vanish."""
    by_key = {t.key: t for t in targets}
    state = {n.name: (dict(n.segments), n.used_bytes) for n in nodes}
    for task in p.tasks:
        if task.node not in state:
            continue
        segs, used = state[task.node]
        ref = SegmentRef(task.collection, task.partition, task.segment)
        old = segs.pop(ref, None)
        if old is not None:
            used -= old.bytes
        if task.kind == TaskKind.LOAD:
            assert task.owner is not None
            t = by_key[task.owner]
            fields = task.fields if task.fields is not None else t.loaded_fields
            dyn = t.has_dynamic_field and not task.skip_dynamic
            segs[ref] = HeldSegment(SegmentState.LOADED, fields, dyn, task.bytes)
            used += task.bytes
        state[task.node] = (segs, used)
    return [replace(n, segments=state[n.name][0], used_bytes=state[n.name][1]) for n in nodes]


def converge(
    targets: Sequence[LoadTarget],
    nodes: Sequence[NodeState],
    previous: Mapping[str, Placement] | None = None,
    settings: PlannerSettings | None = None,
    rounds: int = 6,
) -> tuple[list[NodeState], Plan, int]:
    """Plan and apply until a plan has no tasks; returns (nodes, last plan, rounds with tasks)."""
    settings = settings or PlannerSettings()
    prev: Mapping[str, Placement] = previous or {}
    cur = list(nodes)
    backoff = BackoffState()
    for i in range(rounds):
        p = plan(targets, cur, prev, backoff, 1000.0 + i, settings)
        if not p.tasks:
            return cur, p, i
        cur = apply(cur, p, targets)
        prev, backoff = p.placements, p.backoff
    raise AssertionError(f"no fixpoint after {rounds} rounds; last tasks: {p.tasks}")


def holders(nodes: Sequence[NodeState], ref: SegmentRef) -> list[str]:
    return sorted(n.name for n in nodes if ref in n.segments)


def compacted(
    t: LoadTarget, partition: str, sources: Sequence[str], new_id: str, generation: int | None = None
) -> LoadTarget:
    """`t` after a compaction merged `sources` (live segments of `partition`) into `new_id`: the
    new live segment weighs their sum and names them, they become retired naming it (what
    `build_target` makes of the catalog a querynode answers after `storage.compaction.compact`)."""
    from vectorload_operator.core import RetiredTargetSegment, TargetSegment

    gone = [s for s in t.segments if s.partition == partition and s.id in set(sources)]
    assert len(gone) == len(set(sources)), f"not all of {sources} are live in {partition}"
    gen = generation if generation is not None else t.generation + 1
    new = TargetSegment(
        partition, new_id, sum(s.rows for s in gone), sum(s.bytes for s in gone), tuple(sorted(sources)), gen
    )
    retired = tuple(
        RetiredTargetSegment(partition, s.id, s.rows, (new_id,), s.compacted_from, s.generation) for s in gone
    )
    segments = tuple(
        sorted([*(s for s in t.segments if s not in gone), new], key=lambda s: (s.partition, s.id))
    )
    return replace(
        t,
        segments=segments,
        retired=tuple(sorted([*t.retired, *retired], key=lambda r: (r.partition, r.id))),
        generation=gen,
    )


def published(
    t: LoadTarget, partition: str, new_id: str, nbytes: int, generation: int | None = None
) -> LoadTarget:
    """`t` after the write path published a new segment into `partition`."""
    from vectorload_operator.core import TargetSegment

    gen = generation if generation is not None else t.generation + 1
    seg = TargetSegment(partition, new_id, 10, nbytes, (), gen)
    return replace(
        t, segments=tuple(sorted([*t.segments, seg], key=lambda s: (s.partition, s.id))), generation=gen
    )
