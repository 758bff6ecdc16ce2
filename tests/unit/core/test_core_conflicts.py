"""One CollectionLoad per collection and pool: the older wins, one rule for adapter and planner."""

from __future__ import annotations

from vectorload_dev.testing.coresim import catalog, node, target
from vectorload_operator.core import (
    CONFLICT,
    BackoffState,
    Claim,
    PlannerSettings,
    compute_state,
    conflict_losers,
    plan,
)


def test_the_oldest_claim_wins_and_the_message_names_the_winner() -> None:
    losers = conflict_losers(
        [
            Claim("ns/second", "book", "2026-01-01T00:00:05Z"),
            Claim("ns/first", "book", "2026-01-01T00:00:01Z"),
            Claim("ns/third", "book", "2026-01-02T00:00:00Z"),
            Claim("ns/film", "film", "2026-01-03T00:00:00Z"),
        ]
    )
    assert sorted(losers) == ["ns/second", "ns/third"]
    for problem in losers.values():
        assert problem.reason == CONFLICT == "CollectionConflict"
        assert "ns/first" in problem.message and '"book"' in problem.message
        assert "older CollectionLoad wins" in problem.message


def test_equal_or_unknown_ages_fall_back_to_the_key() -> None:
    same = "2026-01-01T00:00:00Z"
    assert list(conflict_losers([Claim("ns/b", "c", same), Claim("ns/a", "c", same)])) == ["ns/b"]
    assert list(conflict_losers([Claim("ns/b", "c"), Claim("ns/a", "c")])) == ["ns/b"]
    assert conflict_losers([Claim("ns/a", "c"), Claim("ns/b", "d")]) == {}


def test_the_planner_applies_the_same_rule_and_the_loser_is_failed() -> None:
    cat = catalog("book", {"p": [100]})
    a, b = target("ns/a", {"collection": "book"}, cat), target("ns/b", {"collection": "book"}, cat)
    p = plan([b, a], [node("n")], {}, BackoffState(), 0.0, PlannerSettings())
    expected = conflict_losers([Claim("ns/a", "book"), Claim("ns/b", "book")])["ns/b"]
    assert p.problems["ns/b"] == (expected,)
    assert "ns/b" not in p.placements and {t.owner for t in p.tasks} == {"ns/a"}
    state = compute_state(b, None, p.problems["ns/b"])
    assert state.load_state == "Failed" and state.condition("Ready").reason == CONFLICT
    # the same state as the adapter's loser (a SpecProblem without a target)
    assert compute_state(expected, None) == state
