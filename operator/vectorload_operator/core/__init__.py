"""The pure reconcile core: no I/O, no clock, no Kubernetes.

Public API (everything else is internal):

- `build_target(key, spec, catalog) -> LoadTarget | SpecProblem` — spec + catalog -> what to load.
- `plan(targets, nodes, previous, backoff, now, settings, *, retain=()) -> Plan` — tasks,
  replica placements, problems, failures and the next backoff state.
- `record_failure(backoff, node, ref, now, reason, message) -> BackoffState` — a load the
  querynode refused (the planner counts retries itself).
- value types: `LoadTarget`, `TargetSegment`, `SpecProblem`, `Problem`, `NodeState`,
  `HeldSegment`, `SegmentState`, `SegmentRef`, `ReplicaPlacement`, `Placement`, `Task`,
  `TaskKind`, `Plan`, `SegmentFailure`, `BackoffState`, `FailureRecord`, `PlannerSettings`,
  `RebalanceSettings`, `TargetKey`.
"""

from vectorload_operator.core.backoff import record_failure
from vectorload_operator.core.model import (
    DYNAMIC_FIELD,
    BackoffState,
    FailureRecord,
    HeldSegment,
    LoadTarget,
    NodeState,
    Placement,
    Plan,
    PlannerSettings,
    Problem,
    RebalanceSettings,
    ReplicaPlacement,
    SegmentFailure,
    SegmentRef,
    SegmentState,
    SpecProblem,
    TargetKey,
    TargetResult,
    TargetSegment,
    Task,
    TaskKind,
)
from vectorload_operator.core.planner import plan
from vectorload_operator.core.target import build_target

__all__ = [
    "DYNAMIC_FIELD",
    "BackoffState",
    "FailureRecord",
    "HeldSegment",
    "LoadTarget",
    "NodeState",
    "Placement",
    "Plan",
    "PlannerSettings",
    "Problem",
    "RebalanceSettings",
    "ReplicaPlacement",
    "SegmentFailure",
    "SegmentRef",
    "SegmentState",
    "SpecProblem",
    "TargetKey",
    "TargetResult",
    "TargetSegment",
    "Task",
    "TaskKind",
    "build_target",
    "plan",
    "record_failure",
]
