"""Property tests: random pools and targets against the planner's invariants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vectorload_dev.testing.coresim import apply, catalog, converge, node
from vectorload_operator.core import (
    BackoffState,
    LoadTarget,
    NodeState,
    Plan,
    PlannerSettings,
    TaskKind,
    build_target,
    plan,
)

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.lists(st.integers(min_value=1, max_value=200), min_size=0, max_size=5)
partitions = st.lists(sizes, min_size=1, max_size=3)


@st.composite
def targets(draw: st.DrawFn) -> list[LoadTarget]:
    out: list[LoadTarget] = []
    for i in range(draw(st.integers(min_value=1, max_value=3))):
        parts = draw(partitions)
        cat = catalog(f"c{i}", {f"p{j}": segs for j, segs in enumerate(parts)})
        spec = {
            "collection": f"c{i}",
            "replicas": draw(st.integers(min_value=1, max_value=3)),
            "skipLoadDynamicField": draw(st.booleans()),
        }
        t = build_target(f"ns/t{i}", spec, cat)
        assert isinstance(t, LoadTarget)
        out.append(t)
    return out


@st.composite
def pools(draw: st.DrawFn, min_nodes: int = 1) -> list[NodeState]:
    out = []
    for i in range(draw(st.integers(min_value=min_nodes, max_value=6))):
        cap = draw(st.integers(min_value=0, max_value=2000))
        threshold = draw(st.sampled_from([0.5, 0.8, 0.9, 1.0]))
        used = draw(st.integers(min_value=0, max_value=int(cap * threshold)))
        out.append(node(f"n{i}", cap=cap, threshold=threshold, used=used))
    return out


def total(ts: Sequence[LoadTarget]) -> int:
    return sum(s.bytes * t.replicas for t in ts for s in t.segments)


def ample(ts: Sequence[LoadTarget], count: int) -> list[NodeState]:
    """Every node could hold every copy of every target: placement provably fits."""
    return [node(f"n{i}", cap=total(ts) + 1) for i in range(count)]


def check_budgets(nodes: Sequence[NodeState], p: Plan) -> None:
    planned: dict[str, int] = {}
    for task in p.tasks:
        if task.kind == TaskKind.LOAD:
            planned[task.node] = planned.get(task.node, 0) + task.bytes
    for n in nodes:
        assert planned.get(n.name, 0) <= max(n.budget, 0), (n, planned)


def check_replicas(ts: Sequence[LoadTarget], p: Plan) -> None:
    for t in ts:
        reps = p.placements[t.key]
        seen: set[str] = set()
        for r in reps:
            assert not seen & set(r.nodes), "replicas of one target share a node"
            seen |= set(r.nodes)
            assert set(r.assignment.values()) <= set(r.nodes)
        assert len(reps) <= t.replicas


@PROPS
@given(targets(), pools())
def test_no_node_over_budget_and_replicas_disjoint(ts: list[LoadTarget], nodes: list[NodeState]) -> None:
    p = plan(ts, nodes, {}, BackoffState(), 0.0, PlannerSettings())
    check_budgets(nodes, p)
    check_replicas(ts, p)
    after = apply(nodes, p, ts)
    for n in after:
        assert n.used_bytes <= int(n.capacity_bytes * n.threshold)


@PROPS
@given(targets(), st.integers(min_value=0, max_value=3))
def test_every_segment_is_placed_replicas_times_when_capacity_allows(
    ts: list[LoadTarget], extra: int
) -> None:
    nodes = ample(ts, max(t.replicas for t in ts) + extra)
    p = plan(ts, nodes, {}, BackoffState(), 0.0, PlannerSettings())
    assert p.problems == {}
    check_replicas(ts, p)
    for t in ts:
        reps = p.placements[t.key]
        assert len(reps) == t.replicas
        for r in reps:
            assert set(r.assignment) == {t.ref(s) for s in t.segments}
    after = apply(nodes, p, ts)
    for t in ts:
        for s in t.segments:
            assert sum(1 for n in after if t.ref(s) in n.segments) == t.replicas


@PROPS
@given(targets(), pools())
def test_plan_apply_plan_yields_no_tasks(ts: list[LoadTarget], nodes: list[NodeState]) -> None:
    p = plan(ts, nodes, {}, BackoffState(), 0.0, PlannerSettings())
    after = apply(nodes, p, ts)
    again = plan(ts, after, p.placements, p.backoff, 1.0, PlannerSettings())
    assert again.tasks == ()
    assert again.placements == p.placements


@PROPS
@given(targets(), pools(), st.integers(min_value=0, max_value=4000))
def test_node_join_moves_no_loaded_segment(ts: list[LoadTarget], nodes: list[NodeState], cap: int) -> None:
    settled, p, _ = converge(ts, nodes)
    joined = [*settled, node("zz", cap=cap)]
    p2 = plan(ts, joined, p.placements, p.backoff, 50.0, PlannerSettings())
    assert all(task.kind == TaskKind.LOAD for task in p2.tasks)
    for task in p2.tasks:  # only copies no replica had: each goes to a replica lacking it
        assert task.owner is not None
        before = {r.id: r for r in p.placements[task.owner]}
        replica = before.get(task.replica_id or -1)
        assert replica is None or task.ref not in replica.assignment
    for key, reps in p.placements.items():
        now = {r.id: r for r in p2.placements[key]}
        for r in reps:
            for ref, n in r.assignment.items():
                assert now[r.id].assignment[ref] == n


@PROPS
@given(targets(), st.integers(min_value=0, max_value=2), st.data())
def test_node_loss_recovers_within_the_survivors(
    ts: list[LoadTarget], extra: int, data: st.DataObject
) -> None:
    count = max(t.replicas for t in ts) + 1 + extra
    settled, p, _ = converge(ts, ample(ts, count))
    victim = data.draw(st.sampled_from([n.name for n in settled]))
    down = [replace(n, ready=False) if n.name == victim else n for n in settled]
    healed, p2, _ = converge(ts, down, p.placements)
    assert p2.problems == {}
    for t in ts:
        for r in p2.placements[t.key]:
            assert victim not in r.nodes
            assert set(r.assignment) == {t.ref(s) for s in t.segments}
        for s in t.segments:
            live = sum(1 for n in healed if n.ready and t.ref(s) in n.segments)
            assert live == t.replicas


@PROPS
@given(targets(), pools(min_nodes=2), st.data())
def test_random_spec_changes_converge_within_budgets(
    ts: list[LoadTarget], nodes: list[NodeState], data: st.DataObject
) -> None:
    settled, p, _ = converge(ts, nodes)
    changed = [
        replace(
            t,
            replicas=data.draw(st.integers(min_value=1, max_value=3)),
            loaded_fields=frozenset({"book_id", "embedding"}),
            fields=frozenset({"book_id", "embedding"}),
        )
        if data.draw(st.booleans())
        else t
        for t in ts
    ]
    prev, cur, backoff = p.placements, settled, p.backoff
    for i in range(10):
        step = plan(changed, cur, prev, backoff, 100.0 + i, PlannerSettings())
        check_budgets(cur, step)
        check_replicas(changed, step)
        if not step.tasks:
            break
        cur = apply(cur, step, changed)
        prev, backoff = step.placements, step.backoff
    assert step.tasks == ()
