"""The pure reconcile core: no I/O, no clock, no Kubernetes.

Public API (everything else is internal):

- `build_target(key, spec, catalog) -> LoadTarget | SpecProblem` — spec + catalog -> what to load.
- `plan(targets, nodes, previous, backoff, now, settings, *, retain=()) -> Plan` — tasks,
  replica placements, problems, failures and the next backoff state.
- `record_failure(backoff, node, ref, now, reason, message) -> BackoffState` — a load the
  querynode refused (the planner counts retries itself).
- `compute_progress(target, placement, nodes) -> Progress` — Milvus' load progress formula.
- `guard_progress(percent, generation, previous_percent, previous_generation) -> int` — never
  decreases within one generation.
- `compute_state(target, progress, problems, failures, *, was_loaded, releasing_segments)
  -> LoadStatus` — loadState and the Ready / Progressing / Degraded conditions.
- `merge_conditions(previous, new, now, generation) -> list[dict]` — status dicts keeping
  lastTransitionTime while a condition's status holds.
- value types: `LoadTarget`, `TargetSegment`, `SpecProblem`, `Problem`, `NodeState`,
  `HeldSegment`, `Reloading`, `SegmentState`, `SegmentRef`, `ReplicaPlacement`, `Placement`, `Task`,
  `TaskKind`, `Plan`, `SegmentFailure`, `BackoffState`, `FailureRecord`, `PlannerSettings`,
  `RebalanceSettings`, `TargetKey`, `Progress`, `ReplicaProgress`, `PartitionProgress`,
  `Condition`, `LoadStatus`.
"""

from vectorload_operator.core.backoff import record_failure
from vectorload_operator.core.conditions import Condition, LoadStatus, compute_state, merge_conditions
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
    Reloading,
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
from vectorload_operator.core.progress import (
    PartitionProgress,
    Progress,
    ReplicaProgress,
    compute_progress,
    guard_progress,
)
from vectorload_operator.core.target import build_target

__all__ = [
    "DYNAMIC_FIELD",
    "BackoffState",
    "Condition",
    "FailureRecord",
    "HeldSegment",
    "LoadStatus",
    "LoadTarget",
    "NodeState",
    "PartitionProgress",
    "Placement",
    "Plan",
    "PlannerSettings",
    "Problem",
    "Progress",
    "RebalanceSettings",
    "Reloading",
    "ReplicaPlacement",
    "ReplicaProgress",
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
    "compute_progress",
    "compute_state",
    "guard_progress",
    "merge_conditions",
    "plan",
    "record_failure",
]
