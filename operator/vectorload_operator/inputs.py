"""Per-resource inputs of one pass: registry entry + catalog + pool views → target or a problem.

Pure: no I/O, no clock (wall times are arguments). Two steps per CollectionLoad:

- before planning, `resolve` says what the resource asks of the planner: a `LoadTarget`, or why
  there is none — being deleted, a lost conflict or a spec problem (Failed), or waiting for a
  ready querynode to read the catalog — and whether what its pool holds of the collection must be
  kept meanwhile (`retain`);
- after planning, `observation` folds the plan's answer for the resource (placement, problems,
  failed loads) into the `Inputs` of the status observer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vectorload_operator import core
from vectorload_operator.catalog import CatalogEntry
from vectorload_operator.core import (
    LoadTarget,
    NewDataSettings,
    NodeState,
    Placement,
    Plan,
    Problem,
    ReplicaPlacement,
    SpecProblem,
)
from vectorload_operator.distribution import NodeView
from vectorload_operator.observe import Inputs
from vectorload_operator.registry import Entry
from vectorload_operator.selectors import LabelSelector


@dataclass(frozen=True)
class Request:
    """What one CollectionLoad asks of this pass's plan."""

    target: LoadTarget | None = None
    failure: SpecProblem | None = None  # spec problem or lost conflict: the resource is Failed
    waiting: Problem | None = None  # no ready querynode could read the catalog yet
    retain: bool = False  # keep what the pool holds of the collection (nothing to plan it from)


def _desired_replicas(spec: Mapping[str, Any]) -> int:
    try:
        return max(int(spec.get("replicas") or 1), 1)
    except (TypeError, ValueError):
        return 1


def resolve(
    entry: Entry,
    views: Mapping[str, NodeView],
    catalog: CatalogEntry | None,
    conflict: SpecProblem | None = None,
) -> Request:
    """`views`: the querynodes of the entry's pool; `catalog`: the cached catalog of its collection
    in that pool (None: not read yet); `conflict`: the entry lost `core.conflict_losers`."""
    if entry.deleting:
        return Request()
    if conflict is not None:
        return Request(failure=conflict)
    try:
        selector = LabelSelector.from_spec(entry.spec.get("querynodeSelector"))
    except (ValueError, KeyError, TypeError) as exc:
        return Request(failure=SpecProblem("InvalidSpec", f"querynodeSelector: {exc}"), retain=True)
    if catalog is None:
        ready = sum(1 for v in views.values() if v.state.ready)
        waiting = core.catalog_waiting(entry.collection, ready, _desired_replicas(entry.spec))
        return Request(waiting=waiting, retain=True)
    result = core.build_target(entry.target_key, entry.spec, catalog.catalog if catalog.found else None)
    if isinstance(result, SpecProblem):
        return Request(failure=result, retain=True)
    eligible = frozenset(k for k, v in views.items() if selector.matches(v.pod.labels))
    return Request(target=replace(result, eligible_nodes=eligible))


def claims(entries: Sequence[Entry]) -> list[core.Claim]:
    """The live CollectionLoads of one pool as claims on their collections."""
    return [core.Claim(e.target_key, e.collection, e.created) for e in entries if not e.deleting]


def placement_from_status(entry: Entry) -> Placement:
    """The replicas (ids and nodes) written in the entry's status: the previous placement after an
    operator restart. Rows that do not parse are skipped."""
    out = []
    for row in entry.status.get("replicas") or []:
        try:
            nodes = tuple(f"{entry.namespace}/{n}" for n in row.get("nodes") or [])
            out.append(ReplicaPlacement(int(row["id"]), nodes))
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    return tuple(out)


def observation(
    entry: Entry,
    request: Request,
    previous: Mapping[str, Any],
    was_loaded: bool,
    plan: Plan,
    nodes: Sequence[NodeState],
    now_wall: float,
    wall_of: Callable[[float], float],
    releasing_segments: int = 0,
    new_data: NewDataSettings | None = None,
) -> Inputs:
    """The observer's inputs for `entry` after `plan`; `wall_of` turns a failure's monotonic time
    into wall time; `releasing_segments` is what the pool still holds of a deleted entry;
    `new_data`: when data published after the load counts as large."""
    inputs = Inputs(
        generation=entry.generation,
        previous=previous,
        now_wall=now_wall,
        was_loaded=was_loaded,
        deleting=entry.deleting,
        releasing_segments=releasing_segments if entry.deleting else 0,
        failure=request.failure,
        waiting=request.waiting,
        target=request.target,
        new_data=new_data or NewDataSettings(),
    )
    if request.target is None:
        return inputs
    key = request.target.key
    failures = plan.failures.get(key, ())
    return replace(
        inputs,
        placement=plan.placements.get(key, ()),
        problems=tuple(plan.problems.get(key, ())),
        failures=tuple(failures),
        failure_walls=tuple(wall_of(f.at) for f in failures),
        nodes=tuple(nodes),
    )
