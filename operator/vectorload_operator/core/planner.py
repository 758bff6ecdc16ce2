"""target × distribution × capacities -> tasks (the checkers of Milvus QueryCoord v2)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from vectorload_operator.core.model import (
    BackoffState,
    LoadTarget,
    NodeState,
    Placement,
    Plan,
    PlannerSettings,
    TargetKey,
)


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

    `previous` is last plan's placements (or those read back from status). `retain` lists
    collections whose held segments must not be touched (a CollectionLoad whose spec is
    invalid or whose catalog could not be read keeps what it has). Every other collection
    held on a node that no target wants is an orphan and is released.
    """
    raise NotImplementedError("planner algorithm lands in the next commit")
