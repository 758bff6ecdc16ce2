"""The pure reconcile core: no I/O, no clock, no Kubernetes.

Public API (everything else is internal):

- `build_target(key, spec, catalog) -> LoadTarget | SpecProblem` — spec + catalog -> what to load.
- `plan(targets, nodes, previous, backoff, now, settings, *, retain=()) -> Plan` — tasks,
  replica placements, problems, failures and the next backoff state.
- `record_failure(backoff, node, ref, now, reason, message) -> BackoffState` — a load the
  querynode refused (the planner counts retries itself).
- `compute_progress(target, placement, nodes, loaded_generation=None, new_data=None) -> Progress`
  — Milvus' load progress formula; a compacted segment counts while its sources are loaded
  (`Lineage`); `Progress.new_data` says which missing segments are data published after the load.
- `guard_progress(percent, generation, previous_percent, previous_generation) -> int` — never
  decreases within one generation.
- `compute_state(target, progress, problems, failures, *, was_loaded, releasing_segments)
  -> LoadStatus` — loadState and the Ready / Progressing / Degraded conditions.
- `compute_waiting_state(waiting, *, was_loaded) -> LoadStatus` — the state while no ready node
  could read the catalog (`catalog_waiting(collection, ready_nodes, replicas)` is that problem).
- `merge_conditions(previous, new, now, generation) -> list[dict]` — status dicts keeping
  lastTransitionTime while a condition's status holds.
- `conflict_losers(claims) -> {key: SpecProblem}` — one CollectionLoad per collection and pool,
  the older wins (reason `CONFLICT` = CollectionConflict).
- `copy_matches(target, held)` — a held copy has the target's fields (planner and observers).
- pacing: `next_delay(pacing, outcome, now)`, `debounce_rest(...)`, `must_plan(fingerprint, last,
  ...)`, `timer_due(backoff, now, settings)` — when the loop's next pass runs and whether it plans.
- value types: `LoadTarget`, `TargetSegment`, `SpecProblem`, `Problem`, `NodeState`,
  `HeldSegment`, `Reloading`, `SegmentState`, `SegmentRef`, `ReplicaPlacement`, `Placement`, `Task`,
  `TaskKind`, `Plan`, `SegmentFailure`, `BackoffState`, `FailureRecord`, `PlannerSettings`,
  `RebalanceSettings`, `NewDataSettings`, `RetiredTargetSegment`, `TargetKey`, `Progress`,
  `ReplicaProgress`, `PartitionProgress`, `NewData`, `Lineage`,
  `Condition`, `LoadStatus`, `Claim`, `Pacing`, `PassOutcome`, `Fingerprint`.
"""

from vectorload_operator.core.backoff import record_failure
from vectorload_operator.core.conditions import (
    Condition,
    LoadStatus,
    catalog_waiting,
    compute_state,
    compute_waiting_state,
    merge_conditions,
)
from vectorload_operator.core.conflicts import CONFLICT, Claim, conflict_losers
from vectorload_operator.core.copies import copy_matches
from vectorload_operator.core.lineage import Lineage
from vectorload_operator.core.model import (
    DYNAMIC_FIELD,
    BackoffState,
    FailureRecord,
    HeldSegment,
    LoadTarget,
    NewDataSettings,
    NodeState,
    Placement,
    Plan,
    PlannerSettings,
    Problem,
    RebalanceSettings,
    Reloading,
    ReplicaPlacement,
    RetiredTargetSegment,
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
from vectorload_operator.core.pacing import (
    NEVER,
    Fingerprint,
    Pacing,
    PassOutcome,
    debounce_rest,
    must_plan,
    next_delay,
    timer_due,
)
from vectorload_operator.core.planner import plan
from vectorload_operator.core.progress import (
    NewData,
    PartitionProgress,
    Progress,
    ReplicaProgress,
    compute_progress,
    guard_progress,
)
from vectorload_operator.core.target import build_target

__all__ = [
    "CONFLICT",
    "DYNAMIC_FIELD",
    "NEVER",
    "BackoffState",
    "Claim",
    "Condition",
    "FailureRecord",
    "Fingerprint",
    "HeldSegment",
    "Lineage",
    "LoadStatus",
    "LoadTarget",
    "NewData",
    "NewDataSettings",
    "NodeState",
    "Pacing",
    "PartitionProgress",
    "PassOutcome",
    "Placement",
    "Plan",
    "PlannerSettings",
    "Problem",
    "Progress",
    "RebalanceSettings",
    "Reloading",
    "ReplicaPlacement",
    "ReplicaProgress",
    "RetiredTargetSegment",
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
    "catalog_waiting",
    "compute_progress",
    "compute_state",
    "compute_waiting_state",
    "conflict_losers",
    "copy_matches",
    "debounce_rest",
    "guard_progress",
    "merge_conditions",
    "must_plan",
    "next_delay",
    "plan",
    "record_failure",
    "timer_due",
]
