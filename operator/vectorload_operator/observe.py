"""Status of one CollectionLoad from its target, placement and the distribution (the observers
of Milvus QueryCoord v2): progress, per-partition progress, replicas, conditions, lastFailure.

Progress follows Milvus: per partition `loaded (segment, replica) pairs * 100 / (segments *
replicas)`, the collection is the mean of its partitions, and within one generation it never
goes down (once Loaded, a lost node shows as Degraded, not as lower progress).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vectorload_operator.core import (
    HeldSegment,
    LoadTarget,
    NodeState,
    Placement,
    Problem,
    SegmentFailure,
    SegmentState,
)

CONDITION_TYPES = ("Ready", "Progressing", "Degraded")


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)}B" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"


def rfc3339(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_name(node_key: str) -> str:
    """Status shows pod names; the core uses `namespace/name` keys."""
    return node_key.rpartition("/")[2]


def copy_matches(held: HeldSegment | None, target: LoadTarget) -> bool:
    """A loaded copy with exactly the target's fields (and dynamic field when wanted)."""
    if held is None or held.state is not SegmentState.LOADED:
        return False
    if held.fields is not None and held.fields != target.loaded_fields:
        return False
    return not target.has_dynamic_field or held.dynamic == target.dynamic


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Keep `lastTransitionTime` of a condition whose status did not change."""
    prev = {str(c.get("type")): c for c in previous}
    out: list[dict[str, Any]] = []
    for cond in new:
        merged = dict(cond)
        old = prev.get(str(cond["type"]))
        if old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
            merged["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            merged["lastTransitionTime"] = now
        out.append(merged)
    return out


@dataclass(frozen=True)
class Observed:
    status: dict[str, Any]
    state: str
    progress: int
    ready_replicas: int
    degraded_replicas: int
    degraded_reason: str | None
    degraded_message: str


@dataclass(frozen=True)
class Inputs:
    generation: int
    previous: Mapping[str, Any]  # status as last written (or read at startup)
    now_wall: float
    deleting: bool = False
    failure: Problem | None = None  # spec problem or conflict: the resource is Failed
    waiting: Problem | None = None  # no target yet (no catalog: no ready node)
    target: LoadTarget | None = None
    placement: Placement = ()
    problems: tuple[Problem, ...] = ()
    failures: tuple[SegmentFailure, ...] = ()
    failure_walls: tuple[float, ...] = ()  # wall time of each failure
    nodes: Mapping[str, NodeState] | None = None
    busy: bool = False  # tasks outstanding for this target (reload, move, scale)


def _cond(type_: str, status: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def observe(inp: Inputs) -> Observed:
    prev = inp.previous
    same_gen = int(prev.get("observedGeneration") or 0) == inp.generation
    prev_progress = int(prev.get("loadProgress") or 0) if same_gen else 0
    prev_parts = {str(p.get("name")): int(p.get("loadProgress") or 0) for p in prev.get("partitions") or []}
    latched = same_gen and prev.get("loadState") == "Loaded"
    now = rfc3339(inp.now_wall)
    status: dict[str, Any] = {"observedGeneration": inp.generation}
    gen = inp.generation

    if inp.deleting or inp.failure is not None or inp.target is None:
        if inp.deleting:
            state, reason, message = "Releasing", "Releasing", "releasing every segment from the querynodes"
        elif inp.failure is not None:
            state, reason, message = "Failed", inp.failure.reason, inp.failure.message
        else:
            assert inp.waiting is not None
            state = "Loaded" if latched else "NotLoad"
            reason, message = inp.waiting.reason, inp.waiting.message
        progress = prev_progress
        conditions = [
            _cond("Ready", False, reason, message, gen),
            _cond("Progressing", inp.deleting, reason, message, gen),
            _cond("Degraded", inp.waiting is not None and latched, reason, message, gen),
        ]
        keep = {k: prev[k] for k in ("loadedFields", "partitions", "replicas", "lastFailure") if k in prev}
        status.update(keep)
        status.update(
            loadState=state,
            loadProgress=progress,
            progressText=f"{progress}%",
            replicaText=str(prev.get("replicaText") or "0/0"),
            loadedBytes=int(prev.get("loadedBytes") or 0),
            loadedBytesText=str(prev.get("loadedBytesText") or "0B"),
            conditions=merge_conditions(prev.get("conditions") or [], conditions, now),
        )
        return Observed(status, state, progress, 0, 0, None, "")

    target = inp.target
    nodes = inp.nodes or {}
    replicas = sorted(inp.placement, key=lambda r: r.id)
    segs_by_part: dict[str, list[Any]] = {p: [] for p in target.partitions}
    for seg in target.segments:
        segs_by_part.setdefault(seg.partition, []).append(seg)

    replica_rows: list[dict[str, Any]] = []
    ready_replicas = 0
    part_loaded: dict[str, int] = dict.fromkeys(segs_by_part, 0)
    loaded_bytes = 0
    for replica in replicas:
        live = [nodes[n] for n in replica.nodes if n in nodes and nodes[n].ready]
        loaded = 0
        for seg in target.segments:
            ref = target.ref(seg)
            copies = [n.segments.get(ref) for n in live]
            good = [h for h in copies if h is not None and copy_matches(h, target)]
            if good:
                loaded += 1
                part_loaded[seg.partition] += 1
                loaded_bytes += good[0].bytes
        total = len(target.segments)
        if loaded == total:
            ready_replicas += 1
        replica_rows.append(
            {
                "id": replica.id,
                "nodes": sorted(node_name(n) for n in replica.nodes),
                "loadedSegments": loaded,
                "totalSegments": total,
            }
        )

    want = max(target.replicas, 1)
    partitions: list[dict[str, Any]] = []
    for name in target.partitions:
        count = len(segs_by_part.get(name, []))
        pct = 100 if count == 0 else (part_loaded.get(name, 0) * 100) // (count * want)
        pct = min(pct, 100)
        if same_gen:
            pct = max(pct, prev_parts.get(name, 0))
        if latched:
            pct = 100
        partitions.append({"name": name, "loadProgress": pct})
    computed = sum(p["loadProgress"] for p in partitions) // len(partitions) if partitions else 100
    progress = 100 if latched else max(computed, prev_progress)
    complete = progress >= 100 and ready_replicas >= want
    state = "Loaded" if (latched or complete) else "Loading"

    problems = inp.problems
    degraded_reason: str | None = None
    degraded_message = ""
    if inp.failures:
        f = inp.failures[0]
        degraded_reason = "SegmentLoadFailed"
        degraded_message = (
            f"segment {f.segment.segment} of partition {f.segment.partition} failed to load on "
            f"{node_name(f.node)}: {f.reason}: {f.message}"
        )
    elif problems and (state == "Loaded" or ready_replicas > 0):
        degraded_reason, degraded_message = problems[0].reason, problems[0].message
    elif state == "Loaded" and ready_replicas < want:
        degraded_reason = "ReplicaDegraded"
        lost = [r for r in replica_rows if r["loadedSegments"] < r["totalSegments"]]
        degraded_message = f"{ready_replicas}/{want} replicas fully loaded; reloading " + ", ".join(
            f"replica {r['id']} ({r['loadedSegments']}/{r['totalSegments']} segments)" for r in lost
        )
    degraded_replicas = want - ready_replicas if (state == "Loaded" or degraded_reason) else 0

    segments_loaded = sum(r["loadedSegments"] for r in replica_rows)
    segments_total = len(target.segments) * want
    if state == "Loaded" and ready_replicas > 0:
        ready = _cond("Ready", True, "Loaded", f"{ready_replicas}/{want} replicas loaded", gen)
    elif problems:
        ready = _cond("Ready", False, problems[0].reason, problems[0].message, gen)
    elif state == "Loaded":
        ready = _cond(
            "Ready", False, "NoReplicaAvailable", degraded_message or "no replica is fully loaded", gen
        )
    else:
        ready = _cond(
            "Ready",
            False,
            "Loading",
            f"loading: {progress}% ({segments_loaded}/{segments_total} segments)",
            gen,
        )
    if problems and ready_replicas < want:
        progressing = _cond("Progressing", False, problems[0].reason, problems[0].message, gen)
    elif state == "Loading":
        progressing = _cond(
            "Progressing", True, "Loading", f"loading {segments_total - segments_loaded} segments", gen
        )
    elif inp.busy or ready_replicas < want:
        progressing = _cond(
            "Progressing", True, "Reconciling", "moving, reloading or releasing segments", gen
        )
    else:
        progressing = _cond("Progressing", False, "Loaded", "every replica is loaded", gen)
    degraded = _cond(
        "Degraded",
        degraded_reason is not None,
        degraded_reason or "AsExpected",
        degraded_message or "every wanted segment is loaded or loading",
        gen,
    )

    status.update(
        loadState=state,
        loadProgress=progress,
        progressText=f"{progress}%",
        replicaText=f"{ready_replicas}/{want}",
        loadedBytes=loaded_bytes,
        loadedBytesText=human_bytes(loaded_bytes),
        loadedFields=sorted(target.loaded_fields | ({"$meta"} if target.dynamic else set())),
        partitions=partitions,
        replicas=replica_rows,
        conditions=merge_conditions(prev.get("conditions") or [], [ready, progressing, degraded], now),
    )
    if inp.failures:
        f = inp.failures[0]
        wall = inp.failure_walls[0] if inp.failure_walls else inp.now_wall
        status["lastFailure"] = {
            "node": node_name(f.node),
            "segment": f.segment.segment,
            "reason": f.reason,
            "message": f"partition {f.segment.partition}: {f.message}",
            "time": rfc3339(wall),
        }
    elif "lastFailure" in prev:
        status["lastFailure"] = prev["lastFailure"]
    return Observed(
        status, state, progress, ready_replicas, degraded_replicas, degraded_reason, degraded_message
    )
