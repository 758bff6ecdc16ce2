"""Observers: Milvus progress formula, monotonic guard, loadState and conditions."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import vectorload_operator.core
from vectorload_dev.testing.coresim import catalog, converge, node, target
from vectorload_operator.core import (
    CONFLICT,
    HeldSegment,
    Problem,
    ReplicaPlacement,
    SegmentFailure,
    SegmentRef,
    SegmentState,
    SpecProblem,
    catalog_waiting,
    compute_progress,
    compute_state,
    compute_waiting_state,
    copy_matches,
    guard_progress,
    merge_conditions,
)

CAT = catalog("book", {"novel": [100, 100, 100, 100], "poem": [10, 10]})
T = target("ns/a", {"collection": "book", "replicas": 2}, CAT)


def loaded(fields: frozenset[str] | None = None) -> HeldSegment:
    return HeldSegment(SegmentState.LOADED, fields if fields is not None else T.loaded_fields, True, 7)


def test_progress_is_per_partition_pairs_over_segments_times_replicas_then_mean() -> None:
    a = replace(
        node("a"),
        segments={
            SegmentRef("book", "novel", "snovel0"): loaded(),
            SegmentRef("book", "novel", "snovel1"): loaded(),
            SegmentRef("book", "novel", "snovel2"): HeldSegment(SegmentState.LOADING),
            SegmentRef("book", "poem", "spoem0"): loaded(),
            SegmentRef("book", "poem", "spoem1"): loaded(),
        },
    )
    b = replace(node("b"), segments={SegmentRef("book", "novel", "snovel3"): loaded()})
    placement = (ReplicaPlacement(1, ("a",)), ReplicaPlacement(2, ("b",)))
    p = compute_progress(T, placement, [a, b])
    # novel: 3 loaded pairs of 4×2 -> 37; poem: 2 of 2×2 -> 50; collection: (37+50)//2 = 43
    assert [(x.name, x.percent) for x in p.partitions] == [("novel", 37), ("poem", 50)]
    assert p.percent == 43
    assert [(r.id, r.loaded_segments, r.total_segments) for r in p.replicas] == [(1, 4, 6), (2, 1, 6)]
    assert p.loaded_bytes == 5 * 7
    assert p.complete_replicas == 0


def test_copies_with_other_fields_serve_but_do_not_count_as_loaded() -> None:
    nodes, plan_, _ = converge([T], [node("a"), node("b")])
    slim = target("ns/a", {"collection": "book", "replicas": 2, "loadFields": ["book_id", "embedding"]}, CAT)
    p = compute_progress(slim, plan_.placements["ns/a"], nodes)
    assert p.percent == 0 and p.serving_replicas == 2 and p.complete_replicas == 0


def test_missing_replicas_and_lost_nodes_hold_progress_below_100() -> None:
    nodes, plan_, _ = converge([T], [node("a"), node("b")])
    one = compute_progress(T, plan_.placements["ns/a"][:1], nodes)
    assert one.percent == 50
    down = [replace(n, ready=False) if n.name == "b" else n for n in nodes]
    assert compute_progress(T, plan_.placements["ns/a"], down).percent == 50


def test_empty_partitions_count_as_loaded() -> None:
    t = target("k", {"collection": "e"}, catalog("e", {"p": []}))
    assert compute_progress(t, (), []).percent == 100


def test_guard_never_decreases_within_a_generation() -> None:
    assert guard_progress(40, 3, 60, 3) == 60
    assert guard_progress(80, 3, 60, 3) == 80
    assert guard_progress(10, 4, 100, 3) == 10
    assert guard_progress(10, 1, None, None) == 10


def test_state_loaded_and_ready() -> None:
    nodes, plan_, _ = converge([T], [node("a"), node("b")])
    s = compute_state(T, compute_progress(T, plan_.placements["ns/a"], nodes))
    assert s.load_state == "Loaded"
    assert s.condition("Ready").status == "True" and s.condition("Ready").reason == "Loaded"
    assert s.condition("Progressing").status == "False"
    assert s.condition("Degraded").status == "False"
    assert "100% loaded, 2/2 replicas loaded" in s.condition("Ready").message


def test_state_loading_insufficient_nodes_and_failures() -> None:
    nodes, plan_, _ = converge([T], [node("a")])
    progress = compute_progress(T, plan_.placements["ns/a"], nodes)
    problem = Problem("InsufficientNodes", "nodes not enough: currentNodeNum=1, expectedNodeNum=2")
    s = compute_state(T, progress, [problem])
    assert s.load_state == "Loading"
    assert (s.condition("Ready").status, s.condition("Ready").reason) == ("False", "InsufficientNodes")
    assert s.condition("Progressing").status == "False"
    assert s.condition("Degraded").status == "True" and "currentNodeNum=1" in s.condition("Degraded").message
    failure = SegmentFailure(
        "a", SegmentRef("book", "novel", "snovel0"), "IndexCorrupt", "bad magic", 2, 5.0, 7.0
    )
    f = compute_state(T, progress, [], [failure])
    assert (f.condition("Progressing").status, f.condition("Progressing").reason) == ("True", "Retrying")
    assert f.condition("Degraded").reason == "SegmentLoadFailed"
    assert (
        "book/novel/snovel0" in f.condition("Degraded").message
        and "bad magic" in f.condition("Degraded").message
    )


def test_state_stays_loaded_but_degraded_when_a_replica_breaks() -> None:
    nodes, plan_, _ = converge([T], [node("a"), node("b")])
    down = [replace(n, ready=False) if n.name == "b" else n for n in nodes]
    progress = compute_progress(T, plan_.placements["ns/a"], down)
    s = compute_state(T, progress, was_loaded=True)
    assert s.load_state == "Loaded"
    assert s.condition("Ready").status == "False"
    assert s.condition("Degraded").reason == "ReplicaIncomplete"
    assert compute_state(T, progress).load_state == "Loading"


def test_state_for_spec_problems_release_and_conflict() -> None:
    bad = SpecProblem("InvalidSpec", 'load field list must contain the primary key field "book_id"')
    s = compute_state(bad, None)
    assert s.load_state == "Failed" and s.condition("Ready").reason == "InvalidSpec"
    assert "already loaded are kept" in s.condition("Degraded").message
    assert compute_state(None, None, releasing_segments=3).load_state == "Releasing"
    assert compute_state(None, None).load_state == "NotLoad"
    c = compute_state(T, None, [Problem(CONFLICT, "collection already loaded by ns/b")])
    assert c.load_state == "Failed" and c.condition("Ready").reason == CONFLICT


def test_merge_conditions_keeps_transition_time_while_status_holds() -> None:
    nodes, plan_, _ = converge([T], [node("a"), node("b")])
    s = compute_state(T, compute_progress(T, plan_.placements["ns/a"], nodes))
    previous = [
        {"type": "Ready", "status": "True", "reason": "Loaded", "message": "", "lastTransitionTime": "t0"},
        {"type": "Degraded", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "t0"},
    ]
    merged = {c["type"]: c for c in merge_conditions(previous, s.conditions, "t1", 4)}
    assert merged["Ready"]["lastTransitionTime"] == "t0"
    assert merged["Degraded"]["lastTransitionTime"] == "t1"
    assert merged["Progressing"]["lastTransitionTime"] == "t1"
    assert all(c["observedGeneration"] == 4 for c in merged.values())


def test_waiting_for_the_catalog_keeps_the_state_and_says_why() -> None:
    w = catalog_waiting("book", 0, 2)
    assert w.reason == "InsufficientNodes"
    assert w.message == (
        'no ready querynode to read the catalog of collection "book" [currentNodeNum=0][expectedNodeNum=2]'
    )
    fresh = compute_waiting_state(w)
    assert fresh.load_state == "NotLoad"
    assert [(c.type, c.status, c.reason) for c in fresh.conditions] == [
        ("Ready", "False", "InsufficientNodes"),
        ("Progressing", "False", "InsufficientNodes"),
        ("Degraded", "False", "InsufficientNodes"),
    ]
    kept = compute_waiting_state(w, was_loaded=True)
    assert kept.load_state == "Loaded" and kept.condition("Degraded").status == "True"
    assert all(c.message == w.message for c in kept.conditions)


def test_no_observer_module_imports_the_planner() -> None:
    core_dir = Path(vectorload_operator.core.__file__).parent
    for observer in ("progress.py", "conditions.py"):
        tree = ast.parse((core_dir / observer).read_text(encoding="utf-8"))
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        assert not any(m.endswith("planner") for m in imported), (observer, imported)


def test_a_copy_matches_when_its_fields_and_dynamic_choice_are_the_targets() -> None:
    assert copy_matches(T, loaded())
    assert copy_matches(T, HeldSegment(SegmentState.LOADED, None, True))  # no field list: all fields
    assert not copy_matches(T, loaded(frozenset({"book_id", "embedding"})))
    assert not copy_matches(T, HeldSegment(SegmentState.LOADED, T.loaded_fields, False))
