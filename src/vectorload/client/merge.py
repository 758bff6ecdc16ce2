"""Merge per-node search answers into one top-k (pure functions, no I/O).

A collection's segments are spread over the nodes of one replica; each node answers a top-k over
the segments it holds. Distances are "smaller is closer" for every metric, so the merge is a sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vectorload.client.http import QuerynodeError
from vectorload.wire.querynode import Hit

# A node holding no segment of the collection (or of the asked partitions) contributes nothing.
EMPTY_REASONS = frozenset({"CollectionNotLoaded", "PartitionNotLoaded"})


def _key(hit: Hit) -> tuple[float, str]:
    return (hit.distance, str(hit.id))


def merge_hits(per_node: Sequence[Sequence[Hit]], top_k: int) -> list[Hit]:
    """One query: the `top_k` closest hits over all nodes, each primary key once (its best)."""
    seen: set[Any] = set()
    merged: list[Hit] = []
    for hit in sorted((h for hits in per_node for h in hits), key=_key):
        if hit.id in seen:
            continue
        seen.add(hit.id)
        merged.append(hit)
        if len(merged) == top_k:
            break
    return merged


def merge_node_answers(
    answers: Sequence[list[list[Hit]] | QuerynodeError], nq: int, top_k: int
) -> list[list[Hit]]:
    """Merge the answers of a replica's nodes (an answer is per-query hit lists, or an error).

    Nodes answering CollectionNotLoaded/PartitionNotLoaded count as empty; any other error is
    raised (a partial answer would silently lose results). If every node says "not loaded", the
    first such error is raised."""
    usable: list[list[list[Hit]]] = []
    not_loaded: list[QuerynodeError] = []
    for answer in answers:
        if isinstance(answer, QuerynodeError):
            if answer.reason in EMPTY_REASONS:
                not_loaded.append(answer)
                continue
            raise answer
        if len(answer) != nq:
            raise QuerynodeError(
                502, "BadAnswer", f"a node answered {len(answer)} result lists for {nq} queries"
            )
        usable.append(answer)
    if not usable:
        if not_loaded:
            raise not_loaded[0]
        raise QuerynodeError(503, "NoNodes", "no querynode to search")
    return [merge_hits([answer[q] for answer in usable], top_k) for q in range(nq)]
