"""Failed loads: backoff, retry counting, moving to another node, reporting."""

from __future__ import annotations

from dataclasses import replace

from vectorload_dev.testing.coresim import catalog, node, target
from vectorload_operator.core import (
    BackoffState,
    HeldSegment,
    NodeState,
    PlannerSettings,
    SegmentRef,
    SegmentState,
    TaskKind,
    plan,
    record_failure,
)
from vectorload_operator.core.backoff import backoff_delay, in_backoff

S = PlannerSettings(backoff_base_s=1.0, backoff_cap_s=60.0, max_attempts_per_node=3)
T = target("ns/a", {"collection": "book"}, catalog("book", {"p": [100]}))
REF = SegmentRef("book", "p", "sp0")
FAILED = HeldSegment(SegmentState.FAILED, reason="IndexCorrupt", message="sp0/embedding.hnsw: bad magic")


def failed_on(n: NodeState) -> NodeState:
    return replace(n, segments={REF: FAILED})


def test_delay_doubles_and_is_capped_at_60s() -> None:
    assert [backoff_delay(a, S) for a in (0, 1, 2, 3, 4)] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert backoff_delay(7, S) == 60.0 and backoff_delay(1000, S) == 60.0


def test_a_failed_segment_waits_for_its_backoff_then_retries_with_a_counted_attempt() -> None:
    nodes = [failed_on(node("a"))]
    prev = {}
    p = plan([T], nodes, prev, BackoffState(), 100.0, S)
    assert p.tasks == ()  # failure just seen: attempt 1, wait 1 s
    assert p.backoff.records[("a", REF)].attempts == 1
    (failure,) = p.failures["ns/a"]
    assert (failure.node, failure.reason, failure.attempts) == ("a", "IndexCorrupt", 1)
    assert failure.retry_at == 101.0
    again = plan([T], nodes, p.placements, p.backoff, 100.5, S)
    assert again.tasks == ()
    retry = plan([T], nodes, p.placements, p.backoff, 101.0, S)
    (task,) = retry.tasks
    assert (task.kind, task.node, task.reason) == (TaskKind.LOAD, "a", "Retry")
    assert retry.backoff.records[("a", REF)].attempts == 2
    # the node still shows the old failure: nothing new is counted, the next retry waits 2 s
    still = plan([T], nodes, retry.placements, retry.backoff, 102.5, S)
    assert still.tasks == () and still.backoff.records[("a", REF)].attempts == 2
    assert len(plan([T], nodes, retry.placements, retry.backoff, 103.0, S).tasks) == 1


def test_after_repeated_failures_another_node_of_the_replica_is_tried() -> None:
    nodes = [failed_on(node("a")), node("b")]
    state = record_failure(BackoffState(), "a", REF, 0.0, "IndexCorrupt", "bad")
    for t in (1.0, 3.0):
        p = plan([T], nodes, {}, state, t, S)
        assert [(x.node, x.reason) for x in p.tasks] == [("a", "Retry")]
        state = p.backoff
    assert state.records[("a", REF)].attempts == 3
    p = plan([T], nodes, {}, state, 100.0, S)
    assert sorted((x.kind, x.node) for x in p.tasks) == [(TaskKind.LOAD, "b"), (TaskKind.RELEASE, "a")]
    assert p.placements["ns/a"][0].assignment[REF] == "b"


def test_exhausted_node_keeps_retrying_when_no_other_node_has_room() -> None:
    nodes = [failed_on(node("a")), node("b", cap=50)]
    state = BackoffState()
    for t in (0.0, 1.0, 3.0):
        state = plan([T], nodes, {}, state, t, S).backoff
    p = plan([T], nodes, {}, state, 7.0, S)
    assert [(x.node, x.reason) for x in p.tasks] == [("a", "Retry")]


def test_a_refused_load_is_not_reemitted_during_backoff() -> None:
    nodes = [node("a")]
    first = plan([T], nodes, {}, BackoffState(), 0.0, S)
    assert len(first.tasks) == 1
    refused = record_failure(first.backoff, "a", REF, 0.1, "InsufficientMemory", "predicted 100 bytes + ...")
    assert in_backoff(refused, "a", REF, 0.5, S)
    assert plan([T], nodes, first.placements, refused, 0.5, S).tasks == ()
    retry = plan([T], nodes, first.placements, refused, 1.2, S)
    assert [x.reason for x in retry.tasks] == ["Retry"]
    assert retry.failures["ns/a"][0].reason == "InsufficientMemory"


def test_success_and_staleness_clear_the_failure_memory() -> None:
    state = record_failure(BackoffState(), "a", REF, 0.0, "X", "y")
    loaded = replace(node("a"), segments={REF: HeldSegment(SegmentState.LOADED, None, True, 100)})
    assert plan([T], [loaded], {}, state, 1.0, S).backoff.records == {}
    assert plan([T], [node("a")], {}, state, 10_000.0, S).backoff.records == {}
    assert plan([T], [node("b")], {}, state, 1.0, S).backoff.records == {}  # node a is gone
