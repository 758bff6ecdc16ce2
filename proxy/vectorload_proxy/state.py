"""What a CollectionLoad says, read the way Milvus reports it (pure functions over the object).

The CollectionLoad is the single source of truth: the proxy never keeps a load state of its own.
Every answer — GetLoadState, GetLoadingProgress, GetReplicas, ShowCollections' in-memory
percentages, whether a search may run — is computed here from `spec` and `status` of the object
the watch cache holds, so `kubectl get cload` and the Milvus API cannot disagree:

- no CollectionLoad, or one being deleted (the operator's finalizer releases memory first):
  `NotLoad`;
- a status not yet written for the current generation: `Loading` at 0 % (the load was asked for;
  the operator has not acted on it yet);
- `loadState` Loaded → `Loaded`; Loading, NotLoad (waiting for a querynode) and Failed → `Loading`,
  with progress from `status.loadProgress` (per partition from `status.partitions[]`, Milvus'
  mean for several). A load that cannot succeed (Failed, or Ready=False for a capacity reason at
  the current generation) makes GetLoadingProgress fail with the condition's message
  (`load_failure`), so pymilvus' wait loop ends with that error instead of polling forever.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vectorload.wire.address import pod_url

from .errors import (
    MilvusError,
    collection_not_found,
    memory_limit_exceeded,
    node_not_enough,
    parameter_invalid,
    partition_not_found,
    unexpected,
)

# common.LoadState
NOT_EXIST = 0
NOT_LOAD = 1
LOADING = 2
LOADED = 3
LOAD_STATE_NAMES = {
    NOT_EXIST: "LoadStateNotExist",
    NOT_LOAD: "LoadStateNotLoad",
    LOADING: "LoadStateLoading",
    LOADED: "LoadStateLoaded",
}

# Ready=False reasons (operator core/conditions, core/target, core/planner) meaning the load as
# specified cannot succeed until something changes: Milvus fails the load call for these
FAILING_REASONS = frozenset(
    {"InsufficientNodes", "InsufficientMemory", "InvalidSpec", "PartitionNotFound", "CollectionNotFound"}
)
_NODE_NUMS = re.compile(r"currentNodeNum=(\d+)\D+expectedNodeNum=(\d+)")


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str
    observed_generation: int | None


@dataclass(frozen=True)
class ReplicaView:
    id: int
    nodes: tuple[str, ...]
    loaded_segments: int
    total_segments: int

    @property
    def complete(self) -> bool:
        return self.total_segments > 0 and self.loaded_segments >= self.total_segments


@dataclass(frozen=True)
class LoadView:
    """One CollectionLoad object, typed. `partitions`/`load_fields` empty mean every one."""

    namespace: str
    name: str
    uid: str
    created: str  # metadata.creationTimestamp (RFC 3339, sorts in time order)
    generation: int
    resource_version: str
    deleting: bool
    collection: str
    partitions: tuple[str, ...]
    load_fields: tuple[str, ...]
    skip_dynamic: bool
    replicas: int
    has_selector: bool
    observed_generation: int | None
    load_state: str | None
    progress: int
    partition_progress: Mapping[str, int]
    replica_views: tuple[ReplicaView, ...]
    loaded_fields: tuple[str, ...]
    conditions: Mapping[str, Condition]
    # status.loadedCatalogGeneration: the storage generation at which every segment was last loaded
    loaded_catalog_generation: int = 0
    pending_segments: int = 0  # status.pendingSegments: segments published after the load, loading

    @property
    def observed(self) -> bool:
        """The operator has written status for the current generation."""
        return self.observed_generation is not None and self.observed_generation >= self.generation

    def condition(self, type_: str) -> Condition | None:
        return self.conditions.get(type_)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if isinstance(v, str))


def load_view(obj: Mapping[str, Any]) -> LoadView:
    """The typed view of a CollectionLoad object (a dict as the API serves it). Missing or
    mistyped status fields read as absent: status is written by the operator only."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    conditions: dict[str, Condition] = {}
    for c in status.get("conditions") or []:
        if isinstance(c, dict) and isinstance(c.get("type"), str):
            conditions[c["type"]] = Condition(
                type=c["type"],
                status=str(c.get("status") or "Unknown"),
                reason=str(c.get("reason") or ""),
                message=str(c.get("message") or ""),
                observed_generation=_int(c.get("observedGeneration"), -1)
                if "observedGeneration" in c
                else None,
            )
    partition_progress = {
        str(p.get("name")): _int(p.get("loadProgress"))
        for p in status.get("partitions") or []
        if isinstance(p, dict) and p.get("name")
    }
    replica_views = tuple(
        ReplicaView(
            id=_int(r.get("id")),
            nodes=_strings(r.get("nodes")),
            loaded_segments=_int(r.get("loadedSegments")),
            total_segments=_int(r.get("totalSegments")),
        )
        for r in status.get("replicas") or []
        if isinstance(r, dict)
    )
    observed = status.get("observedGeneration")
    return LoadView(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        generation=_int(meta.get("generation"), 1),
        resource_version=str(meta.get("resourceVersion") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        collection=str(spec.get("collection") or ""),
        partitions=tuple(sorted(set(_strings(spec.get("partitions"))))),
        load_fields=tuple(sorted(set(_strings(spec.get("loadFields"))))),
        skip_dynamic=bool(spec.get("skipLoadDynamicField", False)),
        replicas=max(_int(spec.get("replicas"), 1), 1),
        has_selector=bool(spec.get("querynodeSelector")),
        observed_generation=_int(observed) if isinstance(observed, int) else None,
        load_state=str(status["loadState"]) if isinstance(status.get("loadState"), str) else None,
        progress=min(max(_int(status.get("loadProgress")), 0), 100),
        partition_progress=partition_progress,
        replica_views=replica_views,
        loaded_fields=_strings(status.get("loadedFields")),
        conditions=conditions,
        loaded_catalog_generation=_int(status.get("loadedCatalogGeneration")),
        pending_segments=_int(status.get("pendingSegments")),
    )


def winner(views: Iterable[LoadView]) -> LoadView | None:
    """The CollectionLoad that answers for a collection: the oldest (creationTimestamp, then
    name) among those not being deleted — the operator's conflict rule — else the oldest being
    deleted (it is still releasing: NotLoad)."""
    ordered = sorted(views, key=lambda v: (v.deleting, v.created, v.name))
    return ordered[0] if ordered else None


# ---------------------------------------------------------------------------------- load state


def loaded_partitions(view: LoadView, all_partitions: Sequence[str]) -> tuple[str, ...]:
    """The partitions the CollectionLoad asks for (every partition of storage when it names none)."""
    return view.partitions if view.partitions else tuple(all_partitions)


def load_state(
    view: LoadView | None,
    partitions: Sequence[str] = (),
    all_partitions: Sequence[str] = (),
) -> int:
    """GetLoadState of the collection (or of `partitions` of it) — common.LoadState."""
    if view is None or view.deleting:
        return NOT_LOAD
    if partitions:
        asked = set(loaded_partitions(view, all_partitions))
        if any(p not in asked for p in partitions):
            return NOT_LOAD
    if not view.observed:
        return LOADING
    if view.load_state == "Loaded":
        return LOADED
    if view.load_state == "Releasing":
        return NOT_LOAD
    return LOADING


def loading_progress(view: LoadView | None, partitions: Sequence[str] = ()) -> int:
    """GetLoadingProgress in percent: 0 until the operator observed the current generation, then
    `status.loadProgress` (per partition: the mean of the asked partitions' progress)."""
    if view is None or view.deleting or not view.observed:
        return 0
    if view.load_state == "Loaded" and not partitions:
        return 100
    if partitions:
        values = [view.partition_progress.get(p, 0) for p in partitions]
        return int(sum(values) / len(values)) if values else 0
    return view.progress


def load_failure(view: LoadView) -> MilvusError | None:
    """The error a load call answers when the CollectionLoad, at its current generation, says the
    load cannot succeed (None while it can: loading, loaded, retrying a segment)."""
    if view.deleting or not view.observed or view.load_state == "Loaded":
        return None
    ready = view.condition("Ready")
    if ready is None or ready.status == "True" or ready.reason not in FAILING_REASONS:
        return None
    return failure_error(view.collection, ready.reason, ready.message)


def failure_settled(view: LoadView) -> bool:
    """The operator planned with the current spec and reports the problem as lasting (Degraded
    True with the same reason). A waiting problem — no ready querynode has served the collection's
    catalog yet — is not Degraded and may clear on the operator's next pass."""
    ready, degraded = view.condition("Ready"), view.condition("Degraded")
    return (
        ready is not None
        and degraded is not None
        and degraded.status == "True"
        and degraded.reason == ready.reason
    )


def failure_error(collection: str, reason: str, message: str) -> MilvusError:
    """A condition's reason and message as the Milvus error of the same cause."""
    if reason == "InsufficientNodes":
        nums = _NODE_NUMS.search(message)
        current, expected = (int(nums[1]), int(nums[2])) if nums else (None, None)
        return node_not_enough(current, expected, message)
    if reason == "InsufficientMemory":
        return memory_limit_exceeded(message)
    if reason == "InvalidSpec":
        return parameter_invalid(message)
    if reason == "PartitionNotFound":
        return partition_not_found(_first_quoted(message) or collection, message)
    if reason == "CollectionNotFound":
        return collection_not_found(collection)
    return unexpected(message)


def _first_quoted(text: str) -> str | None:
    found = re.search(r'"([^"]+)"', text)
    return found[1] if found else None


# --------------------------------------------------------------------------------- querynodes


@dataclass(frozen=True)
class PodView:
    name: str
    url: str | None  # None unless Running, Ready and with an IP

    @property
    def serving(self) -> bool:
        return self.url is not None


def pod_view(obj: Mapping[str, Any]) -> PodView:
    """A querynode Pod object: its URL when it is Running and Ready (what the operator counts)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    ready = any(
        isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    serving = status.get("phase") == "Running" and ready and not meta.get("deletionTimestamp")
    return PodView(name=str(meta.get("name") or ""), url=pod_url(obj) if serving else None)
