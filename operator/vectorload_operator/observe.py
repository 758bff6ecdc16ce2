"""Status of one CollectionLoad, assembled from the core's observers (`compute_progress`,
`guard_progress`, `compute_state`, `compute_waiting_state`, `merge_conditions`) into the CRD's
status fields. Pure: `Inputs` (built by `inputs.py`) in, `Observed` out; times come in as wall
seconds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vectorload_operator.clock import rfc3339
from vectorload_operator.core import (
    Condition,
    LoadTarget,
    NewDataSettings,
    NodeState,
    Placement,
    Problem,
    SegmentFailure,
    SpecProblem,
    compute_progress,
    compute_state,
    compute_waiting_state,
    guard_progress,
    merge_conditions,
)


def human_bytes(n: int) -> str:
    """1288490188 -> "1.2GiB" (the `loadedBytesText` printer column)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{int(value)}B" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"


def node_name(node_key: str) -> str:
    """Status shows pod names; the core uses `namespace/name` keys."""
    return node_key.rpartition("/")[2]


LOADED_GENERATION = "loadedCatalogGeneration"
"""Status key: the storage generation of the collection when it was last fully loaded; segments
published after it are new data (`core.NewData`)."""
KEPT_WITHOUT_TARGET = (
    "loadedFields",
    "partitions",
    "replicas",
    "lastFailure",
    "pendingSegments",
    "pendingBytes",
    LOADED_GENERATION,
)


@dataclass(frozen=True)
class Inputs:
    generation: int
    previous: Mapping[str, Any]  # status as last written (or read at startup)
    now_wall: float
    was_loaded: bool = False  # reached Loaded in this generation
    deleting: bool = False
    releasing_segments: int = 0
    failure: SpecProblem | None = None  # spec problem or conflict: the resource is Failed
    waiting: Problem | None = None  # no target yet (no ready node to read the catalog from)
    target: LoadTarget | None = None
    placement: Placement = ()
    problems: tuple[Problem, ...] = ()
    failures: tuple[SegmentFailure, ...] = ()
    failure_walls: tuple[float, ...] = ()  # wall time of each failure
    nodes: Sequence[NodeState] = ()
    new_data: NewDataSettings = field(default_factory=NewDataSettings)


@dataclass(frozen=True)
class Observed:
    status: dict[str, Any]
    state: str
    progress: int
    ready_replicas: int
    degraded_replicas: int
    degraded: Condition


def _prev_int(prev: Mapping[str, Any], key: str) -> int | None:
    value = prev.get(key)
    return int(value) if isinstance(value, int) else None


def observe(inp: Inputs) -> Observed:
    prev = inp.previous
    prev_gen = _prev_int(prev, "observedGeneration")
    prev_pct = _prev_int(prev, "loadProgress")
    now = rfc3339(inp.now_wall)
    status: dict[str, Any] = {"observedGeneration": inp.generation}
    ready_replicas = degraded_replicas = 0

    if inp.target is None:
        if inp.deleting:
            load = compute_state(None, None, releasing_segments=inp.releasing_segments)
        elif inp.failure is not None:
            load = compute_state(inp.failure, None)
        else:
            if inp.waiting is None:
                raise ValueError("Inputs without a target need deleting, failure or waiting")
            load = compute_waiting_state(inp.waiting, was_loaded=inp.was_loaded)
        progress = guard_progress(0, inp.generation, prev_pct, prev_gen)
        status.update({k: prev[k] for k in KEPT_WITHOUT_TARGET if k in prev})
        status.update(
            replicaText=str(prev.get("replicaText") or "0/0"),
            loadedBytes=int(prev.get("loadedBytes") or 0),
            loadedBytesText=str(prev.get("loadedBytesText") or "0B"),
        )
    else:
        target = inp.target
        loaded_generation = _prev_int(prev, LOADED_GENERATION)
        raw = compute_progress(target, inp.placement, inp.nodes, loaded_generation, inp.new_data)
        load = compute_state(target, raw, inp.problems, inp.failures, was_loaded=inp.was_loaded)
        progress = guard_progress(raw.percent, inp.generation, prev_pct, prev_gen)
        if load.load_state == "Loaded" and inp.was_loaded:
            progress = 100
        prev_parts = (
            {str(p.get("name")): int(p.get("loadProgress") or 0) for p in prev.get("partitions") or []}
            if prev_gen == inp.generation
            else {}
        )
        ready_replicas = raw.complete_replicas
        new = raw.new_data
        if inp.was_loaded and new.only_new and not new.large and load.load_state == "Loaded":
            ready_replicas = sum(1 for r in raw.replicas if r.missing <= new.segments)
        want = raw.desired_replicas
        if load.load_state == "Loaded" or inp.failures or inp.problems:
            degraded_replicas = max(want - ready_replicas, 0)
        status.update(
            replicaText=f"{ready_replicas}/{want}",
            loadedBytes=raw.loaded_bytes,
            loadedBytesText=human_bytes(raw.loaded_bytes),
            loadedFields=sorted(target.loaded_fields | ({"$meta"} if target.dynamic else set())),
            partitions=[
                {"name": p.name, "loadProgress": max(p.percent, prev_parts.get(p.name, 0))}
                for p in raw.partitions
            ],
            replicas=[
                {
                    "id": r.id,
                    "nodes": sorted(node_name(n) for n in r.nodes),
                    "loadedSegments": r.loaded_segments,
                    "totalSegments": r.total_segments,
                }
                for r in raw.replicas
            ],
        )
        status["pendingSegments"] = len(new.segments)
        status["pendingBytes"] = new.bytes
        if raw.percent == 100:  # what "new data" is measured against from now on
            status[LOADED_GENERATION] = max([target.generation, *(s.generation for s in target.segments)])
        elif loaded_generation is not None:
            status[LOADED_GENERATION] = loaded_generation
        if "lastFailure" in prev:
            status["lastFailure"] = prev["lastFailure"]
        if inp.failures:
            f = inp.failures[0]
            status["lastFailure"] = {
                "node": node_name(f.node),
                "segment": f.segment.segment,
                "reason": f.reason,
                "message": f"partition {f.segment.partition}: {f.message}",
                "time": rfc3339(inp.failure_walls[0] if inp.failure_walls else inp.now_wall),
            }
    status.update(
        loadState=load.load_state,
        loadProgress=progress,
        progressText=f"{progress}%",
        conditions=merge_conditions(prev.get("conditions") or [], load.conditions, now, inp.generation),
    )
    return Observed(
        status, load.load_state, progress, ready_replicas, degraded_replicas, load.condition("Degraded")
    )
