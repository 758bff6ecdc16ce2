"""Which querynodes answer a search, and over which partitions (pure).

A replica (`status.replicas[]`) is a disjoint set of querynodes that together hold one full copy
of what the CollectionLoad asks for; `loadedSegments == totalSegments` makes it complete. A search
goes to one replica and fans out to all of its nodes (each answers for the segments it holds;
`vectorload.client.merge` merges their top-k). Requests rotate over the usable replicas so that
replicas share the load; when a node fails mid-request the caller retries on the next replica of
the same order. A replica is usable only while every one of its nodes is a Running and Ready pod
with an address.

What stays searchable while the resource changes, as in Milvus:

- a complete replica serves the whole load (another replica being added, or a field change
  reloading the other replica, does not stop searches);
- otherwise the partitions that are fully loaded (`status.partitions[].loadProgress` 100 — by
  Milvus' formula every replica holds all of their segments) are served by every replica: adding a
  partition to a loaded collection keeps the others searchable, and a search without partition
  names covers the loaded ones only, until the new one is loaded too;
- a resource that says Loaded but lost a node's copy (being refilled) keeps serving from every
  replica whose nodes are reachable.

When the resource loads only some partitions, the search names them: a querynode may still hold a
released partition for a moment, and a search must not see it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import (
    MilvusError,
    collection_not_fully_loaded,
    collection_not_loaded,
    partition_not_fully_loaded,
)
from .state import LoadView, PodView, ReplicaView


@dataclass(frozen=True)
class Route:
    replica: int
    nodes: tuple[str, ...]
    urls: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    routes: tuple[Route, ...]
    partitions: tuple[str, ...] | None  # None: every partition the nodes hold


def _reachable(replicas: Sequence[ReplicaView], pods: Mapping[str, PodView]) -> list[Route]:
    out: list[Route] = []
    for replica in replicas:
        urls = [pods[n].url if n in pods else None for n in replica.nodes]
        if replica.nodes and all(urls):
            out.append(Route(replica.id, replica.nodes, tuple(u for u in urls if u)))
    return out


def plan(
    view: LoadView,
    pods: Mapping[str, PodView],
    asked: Sequence[str],
    requested: Sequence[str],
) -> Plan:
    """Routes and partition scope of a search. `asked`: the partitions the resource loads (every
    partition of storage when it names none); `requested`: the partitions the search names (all
    asked ones when empty). Raises when nothing of what is requested can be searched."""
    wanted = tuple(requested) if requested else tuple(asked)
    whole = not requested and not view.partitions  # the whole collection, as loaded
    complete = _reachable([r for r in view.replica_views if r.complete], pods)
    if complete:
        return Plan(tuple(complete), None if whole else wanted)
    if view.load_state == "Loaded":
        degraded = _reachable(view.replica_views, pods)
        if degraded:
            return Plan(tuple(degraded), None if whole else wanted)
    ready = [p for p in wanted if view.partition_progress.get(p, 0) >= 100]
    if requested:
        missing = [p for p in requested if p not in ready]
        if missing:
            raise partition_not_fully_loaded(
                missing[0], f"{view.partition_progress.get(missing[0], 0)}% loaded"
            )
    if ready:
        every = _reachable(view.replica_views, pods)
        if every:
            return Plan(tuple(every), tuple(ready))
    raise not_searchable(view, view.collection)


def not_searchable(view: LoadView | None, collection: str) -> MilvusError:
    """The error of a search that has nothing to go to."""
    if view is None or view.deleting:
        return collection_not_loaded(collection)
    if view.progress > 0 or any(r.loaded_segments for r in view.replica_views):
        return collection_not_fully_loaded(collection, f"{view.progress}% loaded")
    return collection_not_loaded(collection, "the load has not finished")


class RoundRobin:
    """Per-collection rotation over the usable replicas."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str], itertools.count[int]] = {}

    def order(self, key: tuple[str, str], candidates: Sequence[Route]) -> list[Route]:
        if len(candidates) <= 1:
            return list(candidates)
        counter = self._counters.setdefault(key, itertools.count())
        start = next(counter) % len(candidates)
        return [*candidates[start:], *candidates[:start]]
