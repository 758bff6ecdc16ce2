"""Planner rules: placement, memory, stability, node loss, scaling, field changes, releases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from vectorload_dev.testing.coresim import apply, catalog, converge, holders, node, target
from vectorload_operator.core import (
    CONFLICT,
    BackoffState,
    LoadTarget,
    NodeState,
    Placement,
    Plan,
    PlannerSettings,
    RebalanceSettings,
    Reloading,
    ReplicaPlacement,
    SegmentRef,
    TaskKind,
    compute_progress,
    plan,
)

CAT = catalog("book", {"novel": [100, 200, 300, 120], "poem": [50, 60]})
S = PlannerSettings()


def run(
    targets: Sequence[LoadTarget],
    nodes: Sequence[NodeState],
    previous: Mapping[str, Placement] | None = None,
    now: float = 0.0,
    backoff: BackoffState | None = None,
) -> Plan:
    return plan(targets, nodes, previous or {}, backoff or BackoffState(), now, S)


def loads(p: Plan) -> list[tuple[str, str]]:
    return sorted((t.node, t.segment) for t in p.tasks if t.kind == TaskKind.LOAD)


def releases(p: Plan) -> list[tuple[str, str]]:
    return sorted((t.node, t.segment) for t in p.tasks if t.kind == TaskKind.RELEASE)


def serving_replicas(t: LoadTarget, p: Plan, nodes: Sequence[NodeState]) -> int:
    return compute_progress(t, p.placements[t.key], nodes).serving_replicas


def test_fresh_load_places_each_segment_once_per_disjoint_replica() -> None:
    t = target("ns/a", {"collection": "book", "replicas": 2}, CAT)
    nodes = [node(n) for n in "abcd"]
    p = run([t], nodes)
    reps = p.placements["ns/a"]
    assert [r.id for r in reps] == [1, 2]
    assert not set(reps[0].nodes) & set(reps[1].nodes)
    assert len(p.tasks) == 2 * len(t.segments)
    for r in reps:
        assert set(r.assignment) == {t.ref(s) for s in t.segments}
        assert set(r.assignment.values()) <= set(r.nodes)
        per_node = {n: 0 for n in r.nodes}
        for ref, n in r.assignment.items():
            per_node[n] += next(s.bytes for s in t.segments if t.ref(s) == ref)
        assert max(per_node.values()) - min(per_node.values()) <= max(s.bytes for s in t.segments)
    assert {t.replica_id for t in p.tasks} == {1, 2}
    after = apply(nodes, p, [t])
    assert run([t], after, p.placements).tasks == ()
    assert compute_progress(t, p.placements["ns/a"], after).percent == 100


def test_load_task_carries_fields_and_owner() -> None:
    t = target(
        "ns/a",
        {"collection": "book", "loadFields": ["book_id", "embedding"], "skipLoadDynamicField": True},
        CAT,
    )
    p = run([t], [node("a")])
    task = p.tasks[0]
    assert task.fields == frozenset({"book_id", "embedding"}) and task.skip_dynamic
    assert task.owner == "ns/a" and task.replica_id == 1 and task.reason == "Missing"
    assert task.bytes == next(s.bytes for s in t.segments if s.id == task.segment)


def test_memory_budget_is_never_exceeded_and_shortfall_is_reported_with_numbers() -> None:
    t = target("ns/a", {"collection": "book"}, CAT)  # 830 bytes in total
    nodes = [node("a", cap=500, threshold=0.9, used=100), node("b", cap=400, threshold=0.5, used=0)]
    p = run([t], nodes)
    planned: dict[str, int] = {}
    for task in p.tasks:
        planned[task.node] = planned.get(task.node, 0) + task.bytes
    assert planned.get("a", 0) <= 500 * 0.9 - 100
    assert planned.get("b", 0) <= 400 * 0.5
    (problem,) = p.problems["ns/a"]
    assert problem.reason == "InsufficientMemory"
    assert "replica 1" in problem.message and "free bytes per node: a=" in problem.message
    unplaced = {t.ref(s) for s in t.segments} - set(p.placements["ns/a"][0].assignment)
    needed = sum(s.bytes for s in t.segments if t.ref(s) in unplaced)
    assert f"{needed} bytes needed" in problem.message


def test_reserved_bytes_count_against_the_budget() -> None:
    t = target("ns/a", {"collection": "book", "partitions": ["poem"]}, CAT)
    p = run([t], [replace(node("a", cap=100), reserved_bytes=45)])
    assert loads(p) == [("a", "spoem0")]


def test_insufficient_nodes_loads_what_it_can_and_says_so() -> None:
    t = target("ns/a", {"collection": "book", "replicas": 3}, CAT)
    p = run([t], [node("a"), node("b"), node("c", ready=False)])
    assert len(p.placements["ns/a"]) == 2
    (problem,) = p.problems["ns/a"]
    assert problem.reason == "InsufficientNodes"
    assert "currentNodeNum=2, expectedNodeNum=3" in problem.message


def test_nothing_changed_means_no_tasks_even_after_operator_restart() -> None:
    t = target("ns/a", {"collection": "book", "replicas": 2}, CAT)
    nodes, p, _ = converge([t], [node(n) for n in "abcde"])
    assert run([t], nodes, p.placements).tasks == ()
    from_status = {"ns/a": tuple(ReplicaPlacement(r.id, r.nodes) for r in p.placements["ns/a"])}
    again = run([t], nodes, from_status)
    assert again.tasks == ()
    assert again.placements == p.placements


def test_node_join_moves_nothing_and_new_segments_go_to_the_new_node() -> None:
    t = target("ns/a", {"collection": "book"}, CAT)
    nodes, p, _ = converge([t], [node("a"), node("b")])
    joined = [*nodes, node("c")]
    p2 = run([t], joined, p.placements)
    assert p2.tasks == ()
    assert p2.placements["ns/a"][0].nodes == ("a", "b", "c")
    grown = target(
        "ns/a", {"collection": "book"}, catalog("book", {"novel": [100, 200, 300, 120, 90], "poem": [50, 60]})
    )
    p3 = run([grown], joined, p2.placements)
    assert loads(p3) == [("c", "snovel4")]


def test_node_loss_reloads_on_the_same_replica_and_drops_the_node() -> None:
    t = target("ns/a", {"collection": "book", "replicas": 2}, CAT)
    nodes, p, _ = converge([t], [node(n) for n in "abcd"])
    rep1 = p.placements["ns/a"][0]
    lost = rep1.nodes[0]
    survivor = rep1.nodes[1]
    down = [replace(n, ready=False) if n.name == lost else n for n in nodes]
    p2 = run([t], down, p.placements)
    moved = [ref for ref, n in rep1.assignment.items() if n == lost]
    assert loads(p2) == sorted((survivor, ref.segment) for ref in moved)
    assert {task.reason for task in p2.tasks} == {"NodeLost"}
    assert releases(p2) == []
    assert p2.placements["ns/a"][0].nodes == (survivor,)
    assert p2.placements["ns/a"][1] == p.placements["ns/a"][1]
    assert lost not in p2.placements["ns/a"][0].assignment.values()


def test_a_replica_that_lost_every_node_takes_a_free_node() -> None:
    t = target("ns/a", {"collection": "book", "replicas": 2}, CAT)
    nodes, p, _ = converge([t], [node("a"), node("b")])
    (gone,) = p.placements["ns/a"][1].nodes
    down = [replace(n, ready=False) if n.name == gone else n for n in nodes] + [node("z")]
    p2 = run([t], down, p.placements)
    assert p2.placements["ns/a"][1].nodes == ("z",)
    assert sorted(n for n, _ in loads(p2)) == ["z"] * len(t.segments)


def test_returning_node_does_not_double_hold_segments() -> None:
    t = target("ns/a", {"collection": "book"}, CAT)
    nodes, p, _ = converge([t], [node("a"), node("b")])
    down = [replace(n, ready=False) if n.name == "b" else n for n in nodes]
    nodes2, p2, _ = converge([t], down, p.placements)
    back = [replace(n, ready=True) if n.name == "b" else n for n in nodes2]
    nodes3, _, _ = converge([t], back, p2.placements)
    for s in t.segments:
        assert len(holders(nodes3, t.ref(s))) == 1


def test_scale_up_with_free_nodes_leaves_the_existing_replica_alone() -> None:
    t1 = target("ns/a", {"collection": "book"}, CAT)
    nodes, p, _ = converge([t1], [node("a"), node("b")])
    t2 = replace(t1, replicas=2, eligible_nodes=None)
    more = [*nodes, node("c"), node("d")]
    p2 = run([t2], more, p.placements)
    # the two new nodes are free: replica 1 keeps a and b (new nodes join the smaller replica 2)
    assert p2.placements["ns/a"][0].nodes == ("a", "b")
    assert p2.placements["ns/a"][0].assignment == p.placements["ns/a"][0].assignment
    assert {task.node for task in p2.tasks} <= {"c", "d"}
    assert all(task.kind == TaskKind.LOAD and task.replica_id == 2 for task in p2.tasks)


def test_scale_up_without_free_nodes_drains_a_node_first_and_never_stops_serving() -> None:
    t1 = target("ns/a", {"collection": "book"}, CAT)
    nodes, p, _ = converge([t1], [node(n) for n in "abc"])
    t2 = replace(t1, replicas=2)
    prev = p.placements
    for _ in range(6):
        p = run([t2], nodes, prev)
        assert releases(p) == [] or serving_replicas(t2, p, nodes) >= 1
        if not p.tasks:
            break
        nodes = apply(nodes, p, [t2])
        prev = p.placements
        assert serving_replicas(t2, p, nodes) >= 1
    assert p.tasks == ()
    reps = p.placements["ns/a"]
    assert len(reps) == 2 and not set(reps[0].nodes) & set(reps[1].nodes)
    assert compute_progress(t2, reps, nodes).percent == 100


def test_scale_down_only_releases_the_dropped_replica() -> None:
    t3 = target("ns/a", {"collection": "book", "replicas": 3}, CAT)
    nodes, p, _ = converge([t3], [node(n) for n in "abc"])
    t2 = replace(t3, replicas=2)
    nodes2, p2, _ = converge([t2], nodes, p.placements)
    p_first = run([t2], nodes, p.placements)
    assert all(task.kind == TaskKind.RELEASE for task in p_first.tasks)
    assert {task.node for task in p_first.tasks} == {"c"}
    assert [r.id for r in p2.placements["ns/a"]] == [1, 2]
    assert compute_progress(t2, p2.placements["ns/a"], nodes2).percent == 100


def test_partition_add_and_remove_touch_only_the_difference() -> None:
    t = target("ns/a", {"collection": "book", "partitions": ["novel"]}, CAT)
    nodes, p, _ = converge([t], [node("a"), node("b")])
    both = target("ns/a", {"collection": "book"}, CAT)
    p2 = run([both], nodes, p.placements)
    assert {s for _, s in loads(p2)} == {"spoem0", "spoem1"} and releases(p2) == []
    nodes2 = apply(nodes, p2, [both])
    poem_only = target("ns/a", {"collection": "book", "partitions": ["poem"]}, CAT)
    p3 = run([poem_only], nodes2, p2.placements)
    assert loads(p3) == []
    assert {s for _, s in releases(p3)} == {"snovel0", "snovel1", "snovel2", "snovel3"}
    assert {task.reason for task in p3.tasks} == {"NotTargeted"}


def test_field_change_reloads_in_place_one_replica_at_a_time() -> None:
    t = target("ns/a", {"collection": "book", "replicas": 2}, CAT)
    nodes, p, _ = converge([t], [node(n) for n in "abcd"])
    slim = target("ns/a", {"collection": "book", "replicas": 2, "loadFields": ["book_id", "embedding"]}, CAT)
    prev = p.placements
    rolled: list[set[int]] = []
    for _ in range(4):
        p = run([slim], nodes, prev)
        if not p.tasks:
            break
        assert releases(p) == []
        assert {task.reason for task in p.tasks} == {"FieldsChanged"}
        for task in p.tasks:  # in place: the node already holds the segment
            assert (
                SegmentRef("book", task.partition, task.segment)
                in next(n for n in nodes if n.name == task.node).segments
            )
        rolled.append({task.replica_id for task in p.tasks if task.replica_id is not None})
        nodes = apply(nodes, p, [slim])
        prev = p.placements
        assert serving_replicas(slim, p, nodes) == 2
    assert rolled == [{1}, {2}]
    assert compute_progress(slim, p.placements["ns/a"], nodes).percent == 100


def test_field_change_with_one_replica_reloads_everything_at_once() -> None:
    t = target("ns/a", {"collection": "book"}, CAT)
    nodes, p, _ = converge([t], [node("a"), node("b")])
    slim = target("ns/a", {"collection": "book", "skipLoadDynamicField": True}, CAT)
    p2 = run([slim], nodes, p.placements)
    assert len(p2.tasks) == len(t.segments) and releases(p2) == []


def test_new_catalog_segments_become_loads() -> None:
    t = target("ns/a", {"collection": "book", "replicas": 2}, CAT)
    nodes, p, _ = converge([t], [node(n) for n in "abcd"])
    grown = target(
        "ns/a",
        {"collection": "book", "replicas": 2},
        catalog("book", {"novel": [100, 200, 300, 120], "poem": [50, 60, 70]}),
    )
    p2 = run([grown], nodes, p.placements)
    assert sorted(task.replica_id or 0 for task in p2.tasks) == [1, 2]
    assert {task.segment for task in p2.tasks} == {"spoem2"}


def test_move_releases_only_after_the_replacement_is_loaded() -> None:
    t = target("ns/a", {"collection": "book"}, CAT)
    nodes, p, _ = converge([t], [node("a"), node("b")])
    narrowed = replace(t, eligible_nodes=frozenset({"a"}))
    p2 = run([narrowed], nodes, p.placements)
    on_b = [ref.segment for ref, n in p.placements["ns/a"][0].assignment.items() if n == "b"]
    assert loads(p2) == sorted(("a", s) for s in on_b)
    assert releases(p2) == []
    nodes2 = apply(nodes, p2, [narrowed])
    p3 = run([narrowed], nodes2, p2.placements)
    assert loads(p3) == [] and releases(p3) == sorted(("b", s) for s in on_b)


def test_orphans_are_released_but_retained_and_conflicting_collections_are_not() -> None:
    t = target("ns/a", {"collection": "book"}, CAT)
    other = catalog("film", {"p": [10]})
    film = target("ns/f", {"collection": "film"}, other)
    nodes, _, _ = converge([t, film], [node("a")])
    p = run([t], nodes)
    assert releases(p) == [("a", "sp0")] and p.tasks[0].reason == "Orphan" and p.tasks[0].owner is None
    assert plan([t], nodes, {}, BackoffState(), 0, S, retain={"film"}).tasks == ()
    dup = target("ns/b", {"collection": "book"}, CAT)
    p2 = run([t, film, dup], nodes)
    assert p2.tasks == ()
    # the one conflict rule (core.conflicts): without ages the first key wins
    assert p2.problems["ns/b"][0].reason == CONFLICT and "ns/a" in p2.problems["ns/b"][0].message


def test_targets_share_nodes_and_memory() -> None:
    a = target("ns/a", {"collection": "book"}, CAT)
    f = target("ns/f", {"collection": "film"}, catalog("film", {"p": [400, 400]}))
    nodes = [node("a", cap=700), node("b", cap=700)]
    p = run([a, f], nodes)
    assert p.placements["ns/a"][0].nodes == p.placements["ns/f"][0].nodes == ("a", "b")
    per_node: dict[str, int] = {}
    for task in p.tasks:
        per_node[task.node] = per_node.get(task.node, 0) + task.bytes
    assert all(v <= 700 for v in per_node.values())
    assert p.problems["ns/f"][0].reason == "InsufficientMemory"


def test_not_ready_nodes_get_no_tasks() -> None:
    t = target("ns/a", {"collection": "book"}, CAT)
    nodes, p, _ = converge([t], [node("a"), node("b")])
    down = [replace(n, ready=False) if n.name == "b" else n for n in nodes]
    assert all(task.node != "b" for task in run([t], down, p.placements).tasks)
    assert all(task.node != "b" for task in run([], down, {}).tasks)


def test_rebalance_is_off_by_default_and_bounded_when_on() -> None:
    t = target("ns/a", {"collection": "book"}, catalog("book", {"p": [100] * 8}))
    nodes, p, _ = converge([t], [node("a", cap=2000)])
    joined = [*nodes, node("b", cap=2000)]
    assert run([t], joined, p.placements).tasks == ()
    on = PlannerSettings(rebalance=RebalanceSettings(enabled=True, max_moves=2))
    prev, cur = p.placements, joined
    for _ in range(8):
        step = plan([t], cur, prev, BackoffState(), 0, on)
        if not step.tasks:
            break
        assert len([x for x in step.tasks if x.kind == TaskKind.LOAD]) <= 2
        for rel in (x for x in step.tasks if x.kind == TaskKind.RELEASE):
            assert holders(cur, rel.ref) == ["a", "b"]  # the replacement is already loaded
        cur = apply(cur, step, [t])
        prev = step.placements
    assert step.tasks == ()
    counts = {n.name: len(n.segments) for n in cur}
    assert counts == {"a": 4, "b": 4}


def test_a_reload_in_progress_is_not_reemitted_and_holds_back_the_next_replica() -> None:
    t = target("ns/a", {"collection": "book", "replicas": 2}, CAT)
    nodes, p, _ = converge([t], [node(n) for n in "abcd"])
    slim = target("ns/a", {"collection": "book", "replicas": 2, "loadFields": ["book_id", "embedding"]}, CAT)
    first = run([slim], nodes, p.placements)
    rolling = {task.replica_id for task in first.tasks}
    assert rolling == {1}
    # the querynode reports the old copy serving plus the reload under way
    marker = Reloading(slim.loaded_fields, slim.dynamic)
    replica1 = set(p.placements["ns/a"][0].nodes)
    reloading = [
        replace(n, segments={ref: replace(h, reloading=marker) for ref, h in n.segments.items()})
        if n.name in replica1
        else n
        for n in nodes
    ]
    assert run([slim], reloading, first.placements).tasks == ()
    # replica 1 finished (new fields), replica 2 may start now
    done = apply(nodes, first, [slim])
    assert {task.replica_id for task in run([slim], done, first.placements).tasks} == {2}
