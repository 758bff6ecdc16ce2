"""One CollectionLoad per collection and querynode pool: the older one wins.

Why a rule of its own: two CollectionLoads naming one collection in one pool cannot both decide
what is resident. The adapter applies this rule before it builds targets (a loser gets no target,
is Failed and owns nothing, so deleting it releases nothing), and the planner applies the same
rule to whatever targets it is given, so there is one rule with one reason, `CollectionConflict`.
Age is `metadata.creationTimestamp` (RFC 3339 text, whose order is time order); equal or unknown
ages fall back to the key, so without ages the first key wins.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from vectorload_operator.core.model import SpecProblem, TargetKey

CONFLICT = "CollectionConflict"
"""The reason (condition, event) of a CollectionLoad that lost a conflict."""


@dataclass(frozen=True)
class Claim:
    """A CollectionLoad that wants `collection` resident in one querynode pool."""

    key: TargetKey
    collection: str
    created: str = ""  # metadata.creationTimestamp; "" sorts first (then the key decides)


def conflict_problem(collection: str, winner: TargetKey) -> SpecProblem:
    return SpecProblem(
        CONFLICT,
        f'collection "{collection}" is already managed by CollectionLoad {winner}; '
        "the older CollectionLoad wins",
    )


def conflict_losers(claims: Iterable[Claim]) -> dict[TargetKey, SpecProblem]:
    """Per collection the oldest claim wins (creationTimestamp, then key); every other claim
    maps to a `CollectionConflict` problem naming the winner. Claims of one pool only."""
    by_collection: dict[str, list[Claim]] = defaultdict(list)
    for claim in claims:
        by_collection[claim.collection].append(claim)
    losers: dict[TargetKey, SpecProblem] = {}
    for collection, group in by_collection.items():
        group.sort(key=lambda c: (c.created, c.key))
        for claim in group[1:]:
            losers[claim.key] = conflict_problem(collection, group[0].key)
    return losers
