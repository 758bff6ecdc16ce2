"""Value types shared by the reconcile core: targets, distribution, placements, tasks, problems.

Everything is a frozen dataclass (or a tuple alias) so a plan is a pure function of its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

TargetKey = str
"""Identifies one CollectionLoad; the adapter uses "namespace/name"."""

DYNAMIC_FIELD = "$meta"
"""Key of the dynamic field in a catalog segment's `bytes` map."""


class SegmentRef(NamedTuple):
    """A segment anywhere in the pool: (collection, partition, segment id)."""

    collection: str
    partition: str
    segment: str


class SegmentState(StrEnum):
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"


class TaskKind(StrEnum):
    LOAD = "load"
    RELEASE = "release"


# --------------------------------------------------------------------------- target


@dataclass(frozen=True)
class TargetSegment:
    """One segment a target wants; `bytes` is predicted for the target's field subset.
    `compacted_from`: the segments (same partition) a compaction merged into this one;
    `generation`: the collection's storage generation it was published at (0: unknown/old)."""

    partition: str
    id: str
    rows: int
    bytes: int
    compacted_from: tuple[str, ...] = ()
    generation: int = 0


@dataclass(frozen=True)
class RetiredTargetSegment:
    """A segment of the target's partitions that a compaction replaced (catalog `retired`): no
    longer wanted, but a node holding it keeps it until what replaces it is loaded (the swap)."""

    partition: str
    id: str
    rows: int
    replaced_by: tuple[str, ...]
    compacted_from: tuple[str, ...] = ()
    generation: int = 0


@dataclass(frozen=True)
class LoadTarget:
    """What one CollectionLoad wants resident (built by `build_target`).

    `fields` is the requested field set (None = every field) and is what load tasks send;
    `loaded_fields` is the resolved set of schema fields that must be resident (never None),
    used to decide whether a held copy matches. `dynamic` is True when the dynamic field
    must be loaded (the schema has one and `skip_dynamic` is False). `eligible_nodes` narrows
    the querynode pool (spec.querynodeSelector, resolved by the adapter); None = every node.
    """

    key: TargetKey
    collection: str
    partitions: tuple[str, ...]
    fields: frozenset[str] | None
    loaded_fields: frozenset[str]
    skip_dynamic: bool
    dynamic: bool
    has_dynamic_field: bool
    replicas: int
    segments: tuple[TargetSegment, ...]
    eligible_nodes: frozenset[str] | None = None
    retired: tuple[RetiredTargetSegment, ...] = ()
    generation: int = 0  # the catalog's storage generation

    def ref(self, segment: TargetSegment | RetiredTargetSegment) -> SegmentRef:
        return SegmentRef(self.collection, segment.partition, segment.id)


@dataclass(frozen=True)
class Problem:
    """Why (part of) a target cannot be met; `reason` is one CamelCase word for a condition."""

    reason: str
    message: str


@dataclass(frozen=True)
class SpecProblem(Problem):
    """The spec cannot be turned into a target: CollectionNotFound, PartitionNotFound, InvalidSpec."""


TargetResult = LoadTarget | SpecProblem


# --------------------------------------------------------------------------- distribution


@dataclass(frozen=True)
class Reloading:
    """An in-place reload in progress (distribution item `reloading`): the new field set."""

    fields: frozenset[str] | None
    dynamic: bool


@dataclass(frozen=True)
class HeldSegment:
    """A segment as a querynode reports it in `/v1/distribution`.

    `fields` None means the node did not report a field list (treated as every field).
    `reloading` is set while the node reloads the copy with other fields (old copy serving).
    """

    state: SegmentState
    fields: frozenset[str] | None = None
    dynamic: bool = False
    bytes: int = 0
    reason: str = ""
    message: str = ""
    reloading: Reloading | None = None


@dataclass(frozen=True)
class NodeState:
    """One querynode. `ready=False` (not Ready, unreachable, pull failed) makes its segments lost.

    Memory budget for new loads: `capacity_bytes * threshold - used_bytes - reserved_bytes`.
    """

    name: str
    ready: bool
    address: str | None = None
    capacity_bytes: int = 0
    threshold: float = 0.9
    used_bytes: int = 0
    reserved_bytes: int = 0
    boot_id: str = ""
    segments: Mapping[SegmentRef, HeldSegment] = field(default_factory=dict)

    @property
    def budget(self) -> int:
        """Bytes this node can still admit (may be negative when over the threshold)."""
        return int(self.capacity_bytes * self.threshold) - self.used_bytes - self.reserved_bytes


# --------------------------------------------------------------------------- placement


@dataclass(frozen=True)
class ReplicaPlacement:
    """One replica: a set of nodes that together hold every target segment once.

    `assignment` maps each placed segment to its node. Status only stores `id` and `nodes`, so a
    placement read back from status has an empty assignment; the planner then derives it from
    the distribution. Feeding back the planner's own placements keeps in-flight moves stable.
    """

    id: int
    nodes: tuple[str, ...]
    assignment: Mapping[SegmentRef, str] = field(default_factory=dict)


Placement = tuple[ReplicaPlacement, ...]
"""The replicas of one target, ordered by id."""


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Task:
    """Load or release one segment on one node.

    Loads carry the target's `fields` (None = all) and `skip_dynamic`; `bytes` is the predicted
    size (0 for releases). `owner`/`replica_id` are None for orphan releases. `reason` says why:
    Missing, NodeLost, Retry, FieldsChanged, Rebalance, Redundant, NotTargeted, Orphan, Compacted.
    """

    kind: TaskKind
    node: str
    collection: str
    partition: str
    segment: str
    fields: frozenset[str] | None = None
    skip_dynamic: bool = False
    owner: TargetKey | None = None
    replica_id: int | None = None
    bytes: int = 0
    reason: str = ""

    @property
    def ref(self) -> SegmentRef:
        return SegmentRef(self.collection, self.partition, self.segment)


@dataclass(frozen=True)
class SegmentFailure:
    """A failed load of a target segment on a node (for status.lastFailure and events)."""

    node: str
    segment: SegmentRef
    reason: str
    message: str
    attempts: int
    at: float
    retry_at: float | None


@dataclass(frozen=True)
class Plan:
    """The planner's answer.

    `tasks`: loads first, then releases, in a deterministic order.
    `placements`: per target key, its replicas (feed back as `previous` next time).
    `problems`: per target key, what cannot be met (InsufficientNodes, InsufficientMemory, Conflict).
    `failures`: per target key, failed loads, most recent first.
    `backoff`: the failure memory to pass to the next `plan` call.
    """

    tasks: tuple[Task, ...]
    placements: Mapping[TargetKey, Placement]
    problems: Mapping[TargetKey, tuple[Problem, ...]]
    failures: Mapping[TargetKey, tuple[SegmentFailure, ...]]
    backoff: BackoffState


# --------------------------------------------------------------------------- backoff


@dataclass(frozen=True)
class FailureRecord:
    """Failure memory for one (node, segment): retries made, when, and the last error."""

    attempts: int
    last_attempt: float
    reason: str = ""
    message: str = ""
    failed_at: float | None = None


@dataclass(frozen=True)
class BackoffState:
    """Failure memory across plans, keyed by (node, segment). Empty = no failures known."""

    records: Mapping[tuple[str, SegmentRef], FailureRecord] = field(default_factory=dict)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class RebalanceSettings:
    """Bounded, opt-in rebalancing inside a replica (see `planner` for the policy)."""

    enabled: bool = False
    max_moves: int = 2
    min_imbalance: float = 0.2


@dataclass(frozen=True)
class NewDataSettings:
    """When segments that appeared after a collection was fully loaded make it Loading again.

    New data is *large* — loadState goes back to Loading until it is loaded — only when its
    predicted bytes exceed both `max_share` of the target's bytes and `max_bytes`; smaller new
    data keeps the collection Loaded (and Ready) while it loads, shown as `pendingSegments`."""

    max_share: float = 0.1
    max_bytes: int = 64 << 20


@dataclass(frozen=True)
class PlannerSettings:
    """Knobs of the planner.

    `memory_factor` multiplies predicted bytes for admission (the querynode's own factor).
    Backoff after a failed load: `backoff_base_s * 2**(attempts-1)`, capped at `backoff_cap_s`.
    After `max_attempts_per_node` failed attempts on one node the segment moves to another node
    of the same replica if one has room. Failure records older than `failure_memory_s` are dropped.
    """

    memory_factor: float = 1.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    max_attempts_per_node: int = 3
    failure_memory_s: float = 600.0
    rebalance: RebalanceSettings = field(default_factory=RebalanceSettings)
    new_data: NewDataSettings = field(default_factory=NewDataSettings)
