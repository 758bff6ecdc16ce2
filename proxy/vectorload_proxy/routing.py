"""Which querynodes answer a search: a fully loaded replica, spread round-robin (pure).

A replica (`status.replicas[]`) is a disjoint set of querynodes that together hold one full copy
of what the CollectionLoad asks for; `loadedSegments == totalSegments` makes it fully loaded. A
search goes to one replica and fans out to all of its nodes (each answers for the segments it
holds; `vectorload.client.merge` merges their top-k). Requests rotate over the fully loaded
replicas so that two replicas share the load; when a node fails mid-request the caller retries
on the next replica of the same order. A replica is usable only while every one of its nodes is a
Running and Ready pod with an address.

When no replica is fully loaded but the resource says Loaded (a replica lost a node and is being
refilled: Milvus keeps such a collection serving), every replica whose nodes are all reachable is
tried; the querynodes answer for what they hold.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import MilvusError, collection_not_fully_loaded, collection_not_loaded
from .state import LoadView, PodView


@dataclass(frozen=True)
class Route:
    replica: int
    nodes: tuple[str, ...]
    urls: tuple[str, ...]


def routes(view: LoadView, pods: Mapping[str, PodView]) -> list[Route]:
    """The replicas a search may use, in status order."""
    complete = [r for r in view.replica_views if r.complete]
    pool = complete or ([r for r in view.replica_views if r.nodes] if view.load_state == "Loaded" else [])
    out: list[Route] = []
    for replica in pool:
        urls = [pods[n].url if n in pods else None for n in replica.nodes]
        if replica.nodes and all(urls):
            out.append(Route(replica.id, replica.nodes, tuple(u for u in urls if u)))
    return out


def not_searchable(view: LoadView | None, collection: str) -> MilvusError:
    """The error of a search that has no replica to go to."""
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
