"""Deletion: when is a deleted CollectionLoad released? Pure functions over one pool.

Why: the finalizer handler (`handlers.release`) waits on `Entry.released` and lets kopf remove
the finalizer once it is set. A deleted CollectionLoad wants nothing, so the planner releases its
collection's segments as orphans; it is released when no ready querynode of its pool holds the
collection and no load of it is still being sent — or at once when another live CollectionLoad
of the pool owns that collection (the loser of a conflict owns nothing, and deleting it releases
nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from vectorload_operator.core import NodeState, Task, TaskKind


def releasing_segments(collection: str, nodes: Mapping[str, NodeState], live: Collection[str]) -> int:
    """Segments of `collection` ready nodes still hold, for the Releasing status (0 when a live
    CollectionLoad of the pool, in `live`, owns the collection)."""
    if collection in live:
        return 0
    return sum(1 for n in nodes.values() if n.ready for ref in n.segments if ref.collection == collection)


def is_released(
    collection: str, nodes: Mapping[str, NodeState], live: Collection[str], tasks: Iterable[Task]
) -> bool:
    """`live`: collections of the pool's live CollectionLoads; `tasks`: this pass's plan."""
    if collection in live:
        return True
    if releasing_segments(collection, nodes, live) > 0:
        return False
    return not any(t.kind is TaskKind.LOAD and t.collection == collection for t in tasks)
