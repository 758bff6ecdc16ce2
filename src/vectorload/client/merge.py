"""Merge per-node search answers into one top-k (pure functions, no I/O).

A collection's segments are spread over the nodes of one replica; each node answers a top-k over
the segments it holds. Distances are "smaller is closer" for every metric, so the merge is a sort:
`vectorload.wire.hits.top_k`, the same rule (and code) the querynode applies to its segments,
in numpy over the answers' columns -- no per-hit Python comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vectorload.client.http import QuerynodeError
from vectorload.wire.hits import HitColumns, merge
from vectorload.wire.querynode import Hit

# A node holding no segment of the collection (or of the asked partitions) contributes nothing.
EMPTY_REASONS = frozenset({"CollectionNotLoaded", "PartitionNotLoaded"})

NodeAnswer = list[list[Hit]] | HitColumns | QuerynodeError


def merge_hits(per_node: Sequence[Sequence[Hit]], top_k: int) -> list[Hit]:
    """One query: the `top_k` closest hits over all nodes, each primary key once (its best);
    equal distances in the order of the keys' text."""
    if not per_node:
        return []
    return merge([HitColumns.from_hits([hits]) for hits in per_node], top_k).hits()[0]


def merge_columns(answers: Sequence[HitColumns | QuerynodeError], nq: int, top_k: int) -> HitColumns:
    """Merge the answers of a replica's nodes, as columns (an answer may be an error).

    Nodes answering CollectionNotLoaded/PartitionNotLoaded count as empty; any other error is
    raised (a partial answer would silently lose results). If every node says "not loaded", the
    first such error is raised."""
    usable: list[HitColumns] = []
    not_loaded: list[QuerynodeError] = []
    for answer in answers:
        if isinstance(answer, QuerynodeError):
            if answer.reason in EMPTY_REASONS:
                not_loaded.append(answer)
                continue
            raise answer
        if answer.nq != nq:
            raise QuerynodeError(
                502, "BadAnswer", f"a node answered {answer.nq} result lists for {nq} queries"
            )
        usable.append(answer)
    if not usable:
        if not_loaded:
            raise not_loaded[0]
        raise QuerynodeError(503, "NoNodes", "no querynode to search")
    if len(usable) == 1 and already_merged(usable[0], top_k):
        return usable[0]  # what `merge` would give: one node's answer the rule keeps as it is
    return merge(usable, top_k)


def already_merged(answer: HitColumns, top_k: int) -> bool:
    """True when `merge([answer], top_k)` is `answer` itself: at most `top_k` hits per query,
    distances strictly increasing within each query (so neither the tie rule nor a reorder
    applies), no key twice in a query, integer keys, distinct partition names. A node's answer
    -- the rule already applied to its segments with the same `top_k` -- nearly always is; the
    check is a few numpy calls, the merge a few dozen."""
    counts = answer.counts
    ids = answer.ids
    if ids.dtype != np.int64 or len(set(answer.partitions)) != len(answer.partitions):
        return False
    if len(counts) == 0 or int(counts.max()) > top_k:
        return len(counts) == 0
    n = len(ids)
    if n < 2:
        return True
    query = np.repeat(np.arange(len(counts)), counts)
    same = query[1:] == query[:-1]
    distances = answer.distances
    if not bool(np.all((distances[1:] > distances[:-1]) | ~same)):
        return False
    by_key = np.lexsort((ids, query))
    return not bool(np.any((ids[by_key][1:] == ids[by_key][:-1]) & (query[by_key][1:] == query[by_key][:-1])))


def merge_node_answers(answers: Sequence[NodeAnswer], nq: int, top_k: int) -> list[list[Hit]]:
    """`merge_columns` for answers as `Hit` lists (what `QuerynodeClient.search` returns) or
    columns; the merged top-k per query as `Hit` lists."""
    columns: list[HitColumns | QuerynodeError] = []
    for answer in answers:
        if isinstance(answer, list):
            if len(answer) != nq:
                raise QuerynodeError(
                    502, "BadAnswer", f"a node answered {len(answer)} result lists for {nq} queries"
                )
            columns.append(HitColumns.from_hits(answer))
        else:
            columns.append(answer)
    return merge_columns(columns, nq, top_k).hits()
