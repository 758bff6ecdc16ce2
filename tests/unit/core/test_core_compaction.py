"""The compaction swap and new data: lineage, the planner keeping retired copies until their
replacement is loaded in the replica, progress counting a compacted segment by its sources,
a load in progress when a compaction lands (milvus#39680), and status while data changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vectorload_dev.testing.coresim import apply, catalog, compacted, converge, node, published, target
from vectorload_operator.core import (
    BackoffState,
    HeldSegment,
    Lineage,
    LoadTarget,
    NewDataSettings,
    NodeState,
    Placement,
    Plan,
    PlannerSettings,
    SegmentRef,
    SegmentState,
    TaskKind,
    compute_progress,
    compute_state,
    guard_progress,
    plan,
)
from vectorload_operator.observe import LOADED_GENERATION, Inputs, observe

CAT = catalog("book", {"novel": [100, 100, 100, 100], "poem": [50, 50]})
T = target("ns/a", {"collection": "book"}, CAT)
T2 = target("ns/a", {"collection": "book", "replicas": 2}, CAT)


def ref(segment: str, partition: str = "novel") -> SegmentRef:
    return SegmentRef("book", partition, segment)


def held(nodes: Sequence[NodeState], name: str) -> set[str]:
    return {r.segment for n in nodes if n.name == name for r in n.segments}


def step(t: LoadTarget, nodes: list[NodeState], prev: Plan, now: float = 10.0) -> Plan:
    return plan([t], nodes, prev.placements, prev.backoff, now, PlannerSettings())


def tasks(p: Plan) -> list[tuple[str, str, str, str]]:
    return [(x.kind.value, x.node, x.segment, x.reason) for x in p.tasks]


# ----------------------------------------------------------------------------------- lineage


def test_lineage_resolves_replacements_and_coverage_through_chains() -> None:
    t = compacted(T, "novel", ["snovel0", "snovel1"], "c1")
    t = compacted(t, "novel", ["c1", "snovel2"], "e1")  # c1 was never loaded: a chain
    lin = Lineage(t)
    assert lin.replacements(ref("snovel0")) == {ref("e1")} == lin.replacements(ref("c1"))
    assert lin.replacements(ref("snovel3")) == frozenset()  # live, not retired
    assert set(lin.sources(ref("e1"))) == {ref("c1"), ref("snovel2")}
    have = {ref("snovel0"), ref("snovel1"), ref("snovel2")}
    assert lin.covered(ref("e1"), have.__contains__)
    assert not lin.covered(ref("e1"), {ref("snovel0"), ref("snovel2")}.__contains__)
    assert lin.covered(ref("e1"), {ref("c1"), ref("snovel2")}.__contains__)
    # what is missing of e1 is new data only if every missing part was published after the load
    assert not lin.uncovered_is_new(ref("e1"), set().__contains__, loaded_generation=t.generation)
    assert lin.uncovered_is_new(ref("e1"), set().__contains__, loaded_generation=-1)


# ------------------------------------------------------------------------------------- swap


def test_the_swap_loads_the_compacted_segment_first_then_releases_its_sources() -> None:
    nodes, p, _ = converge([T], [node("a")])
    t = compacted(T, "novel", ["snovel0", "snovel1"], "c1")
    first = step(t, nodes, p)
    assert tasks(first) == [("load", "a", "c1", "Missing")]  # no release yet
    progress = compute_progress(t, first.placements[t.key], nodes)
    assert progress.percent == 100  # c1 is covered by its loaded sources
    nodes = apply(nodes, first, [t])
    second = step(t, nodes, first)
    assert sorted(tasks(second)) == [
        ("release", "a", "snovel0", "Compacted"),
        ("release", "a", "snovel1", "Compacted"),
    ]
    nodes = apply(nodes, second, [t])
    assert held(nodes, "a") == {"c1", "snovel2", "snovel3", "spoem0", "spoem1"}
    assert step(t, nodes, second).tasks == ()
    assert compute_progress(t, second.placements[t.key], nodes).percent == 100


def test_each_replica_releases_its_sources_only_once_it_holds_the_replacement() -> None:
    nodes, p, _ = converge([T2], [node("a"), node("b")])
    t = compacted(T2, "novel", ["snovel0", "snovel1"], "c1")
    first = step(t, nodes, p)
    assert sorted((k, n, s) for k, n, s, _ in tasks(first)) == [("load", "a", "c1"), ("load", "b", "c1")]
    only_a = replace(first, tasks=tuple(x for x in first.tasks if x.node == "a"))  # b is slow
    nodes = apply(nodes, only_a, [t])
    second = step(t, nodes, first)
    releases = [(n, s) for k, n, s, _ in tasks(second) if k == "release"]
    assert sorted(releases) == [("a", "snovel0"), ("a", "snovel1")]  # b keeps serving its sources
    progress = compute_progress(t, second.placements[t.key], nodes)
    assert progress.percent == 100 and progress.complete_replicas == 2


def test_retired_copies_that_do_not_serve_go_at_once() -> None:
    nodes, p, _ = converge([T], [node("a")])
    a = nodes[0]
    segs = dict(a.segments)
    segs[ref("snovel1")] = HeldSegment(SegmentState.LOADING)
    segs[ref("snovel2")] = HeldSegment(SegmentState.FAILED, reason="ChecksumMismatch")
    nodes = [replace(a, segments=segs)]
    t = compacted(compacted(T, "novel", ["snovel0", "snovel1", "snovel2"], "c1"), "poem", ["spoem0"], "c2")
    # a compaction that found every row of spoem1 deleted retires it with no replacement
    t = replace(
        t,
        segments=tuple(s for s in t.segments if s.id != "spoem1"),
        retired=(*t.retired, replace(t.retired[0], partition="poem", id="spoem1", replaced_by=())),
    )
    out = sorted(tasks(step(t, nodes, p)))
    assert ("release", "a", "snovel1", "Compacted") in out and ("release", "a", "snovel2", "Compacted") in out
    assert ("release", "a", "spoem1", "Compacted") in out
    assert ("release", "a", "snovel0", "Compacted") not in out  # loaded: it serves until c1 is in
    assert ("load", "a", "c1", "Missing") in out and ("load", "a", "c2", "Missing") in out


def test_a_load_in_progress_when_a_compaction_lands_still_reaches_loaded() -> None:
    """milvus#39680: the target changes mid-load; segments loaded before keep counting through
    the compacted segment, so the load completes instead of waiting forever."""
    nodes = [node("a")]
    p = plan([T], nodes, {}, BackoffState(), 0.0, PlannerSettings())
    assert {x.segment for x in p.tasks} == {"snovel0", "snovel1", "snovel2", "snovel3", "spoem0", "spoem1"}
    done = replace(p, tasks=tuple(x for x in p.tasks if x.segment in {"snovel0", "snovel1", "spoem0"}))
    nodes = apply(nodes, done, [T])
    segs = dict(nodes[0].segments)
    for sid, part in (("snovel2", "novel"), ("snovel3", "novel"), ("spoem1", "poem")):
        segs[ref(sid, part)] = HeldSegment(SegmentState.LOADING)
    nodes = [replace(nodes[0], segments=segs)]
    before = compute_progress(T, p.placements[T.key], nodes).percent
    # a loaded and a loading segment are merged while the load runs
    t = compacted(T, "novel", ["snovel1", "snovel2"], "c1")
    first = step(t, nodes, p)
    assert ("release", "a", "snovel2", "Compacted") in tasks(first)  # loading: cancelled at once
    assert ("release", "a", "snovel1", "Compacted") not in tasks(first)  # loaded: kept for now
    assert ("load", "a", "c1", "Missing") in tasks(first)
    seen = [before]
    prev, cur = p, first
    for i in range(8):
        raw = compute_progress(t, cur.placements[t.key], nodes)
        seen.append(guard_progress(raw.percent, 1, seen[-1], 1))
        state = compute_state(t, raw, cur.problems.get(t.key, ()), cur.failures.get(t.key, ()))
        if not cur.tasks:
            break
        # the loads still running finish too (the querynode keeps loading what it accepted)
        finished = HeldSegment(SegmentState.LOADED, t.loaded_fields, True, 1)
        segs = {r: finished if h.state == SegmentState.LOADING else h for r, h in nodes[0].segments.items()}
        nodes = apply([replace(nodes[0], segments=segs)], cur, [t])
        prev, cur = cur, step(t, nodes, cur, now=20.0 + i)
    assert state.load_state == "Loaded" and seen[-1] == 100, seen
    assert seen == sorted(seen), seen  # progress never went down
    assert held(nodes, "a") == {"snovel0", "c1", "snovel3", "spoem0", "spoem1"}
    del prev


# ---------------------------------------------------------------------------------- new data


def _observe(t: LoadTarget, nodes: list[NodeState], placement: Placement, prev: dict, **kw: object) -> dict:
    inputs = Inputs(
        generation=1,
        previous=prev,
        now_wall=1.7e9,
        target=t,
        placement=placement,
        nodes=nodes,
        **kw,  # type: ignore[arg-type]
    )
    return observe(inputs).status


def _loaded_status(t: LoadTarget) -> tuple[list[NodeState], Plan, dict]:
    nodes, p, _ = converge([t], [node("a", cap=100_000)])
    status = _observe(t, nodes, p.placements[t.key], {})
    assert status["loadState"] == "Loaded" and status[LOADED_GENERATION] == t.generation
    return nodes, p, status


def test_small_new_data_keeps_a_loaded_collection_loaded_and_ready() -> None:
    t0 = replace(T, generation=5)
    nodes, p, status = _loaded_status(t0)
    t = published(t0, "novel", "new1", 40)
    st_ = _observe(t, nodes, step(t, nodes, p).placements[t.key], status, was_loaded=True)
    conds = {c["type"]: c for c in st_["conditions"]}
    assert st_["loadState"] == "Loaded" and st_["loadProgress"] == 100
    assert st_["pendingSegments"] == 1 and st_["pendingBytes"] == 40
    assert conds["Ready"]["status"] == "True" and conds["Degraded"]["status"] == "False"
    assert conds["Progressing"]["status"] == "True" and conds["Progressing"]["reason"] == "LoadingNewData"
    assert st_["replicaText"] == "1/1" and st_[LOADED_GENERATION] == 5
    nodes2 = apply(nodes, step(t, nodes, p), [t])
    done = _observe(t, nodes2, step(t, nodes2, p).placements[t.key], st_, was_loaded=True)
    assert done["pendingSegments"] == 0 and done[LOADED_GENERATION] == t.generation
    assert {c["type"]: c for c in done["conditions"]}["Progressing"]["status"] == "False"


def test_large_new_data_shows_loading_without_lowering_progress() -> None:
    t0 = replace(T, generation=5)
    nodes, p, status = _loaded_status(t0)
    t = published(t0, "novel", "big", 400)  # 400 of 900 bytes, over 10 bytes
    settings_ = NewDataSettings(max_share=0.1, max_bytes=10)
    st_ = _observe(t, nodes, step(t, nodes, p).placements[t.key], status, was_loaded=True, new_data=settings_)
    ready = {c["type"]: c for c in st_["conditions"]}["Ready"]
    assert st_["loadState"] == "Loading" and ready["reason"] == "LoadingNewData"
    assert st_["loadProgress"] == 100 and all(x["loadProgress"] == 100 for x in st_["partitions"])
    assert st_["pendingSegments"] == 1 and st_["pendingBytes"] == 400
    assert {c["type"]: c for c in st_["conditions"]}["Degraded"]["status"] == "False"
    # under either threshold it stays Loaded
    for relaxed in (
        NewDataSettings(max_share=0.9, max_bytes=10),
        NewDataSettings(max_share=0.1, max_bytes=500),
    ):
        again = _observe(
            t, nodes, step(t, nodes, p).placements[t.key], status, was_loaded=True, new_data=relaxed
        )
        assert again["loadState"] == "Loaded"


def test_a_lost_copy_is_degraded_not_new_data_and_compacted_new_data_is_new() -> None:
    t0 = replace(T, generation=5)
    nodes, p, status = _loaded_status(t0)
    lost = [
        replace(nodes[0], segments={r: h for r, h in nodes[0].segments.items() if r.segment != "snovel3"})
    ]
    st_ = _observe(t0, lost, p.placements[t0.key], status, was_loaded=True)
    degraded = {c["type"]: c for c in st_["conditions"]}["Degraded"]
    assert degraded["status"] == "True" and degraded["reason"] == "ReplicaIncomplete"
    assert st_["pendingSegments"] == 0
    # two new segments merged by the background compactor before they were ever loaded: new data
    t = published(published(t0, "novel", "n1", 10), "novel", "n2", 10)
    t = compacted(t, "novel", ["n1", "n2"], "c1")
    st_ = _observe(t, nodes, step(t, nodes, p).placements[t.key], status, was_loaded=True)
    assert st_["loadState"] == "Loaded" and st_["pendingSegments"] == 1
    assert {c["type"]: c for c in st_["conditions"]}["Degraded"]["status"] == "False"


# -------------------------------------------------------------------------------- properties

PROPS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def compaction_runs(draw: st.DrawFn) -> tuple[LoadTarget, int, list[list[int]]]:
    sizes = draw(st.lists(st.integers(min_value=1, max_value=100), min_size=2, max_size=8))
    replicas = draw(st.integers(min_value=1, max_value=2))
    t = target("ns/p", {"collection": "c", "replicas": replicas}, catalog("c", {"p": sizes}))
    rounds = draw(
        st.lists(st.lists(st.integers(min_value=0, max_value=7), min_size=1, max_size=3), max_size=4)
    )
    return t, replicas, rounds


@PROPS
@given(compaction_runs(), st.data())
def test_compactions_never_uncover_a_row_and_converge(
    run: tuple[LoadTarget, int, list[list[int]]], data: st.DataObject
) -> None:
    """Random compactions (also of segments never loaded, chains included) landing while tasks
    complete in random subsets: in every replica every live segment stays covered (no search
    misses a row), raw progress stays at 100 (so nothing is ever shown below 100 % for data that
    was loaded), and in the end every retired copy is gone and the target is loaded."""
    t, replicas, rounds = run
    nodes, p, _ = converge([t], [node(f"n{i}", cap=100_000) for i in range(replicas + 1)])
    counter = 0
    for picks in [*rounds, []]:
        live = [s.id for s in t.segments]
        chosen = sorted({live[i % len(live)] for i in picks}) if picks else []
        if chosen:
            counter += 1
            t = compacted(t, "p", chosen, f"c{counter}")
        for i in range(12):
            cur = plan([t], nodes, p.placements, p.backoff, 100.0 + i, PlannerSettings())
            raw = compute_progress(t, cur.placements[t.key], nodes)
            assert raw.percent == 100, (i, chosen, [str(x) for x in cur.tasks])
            if not cur.tasks:
                break
            keep = tuple(x for x in cur.tasks if data.draw(st.booleans()))
            nodes = apply(nodes, replace(cur, tasks=keep or cur.tasks[:1]), [t])
            p = cur
            after = compute_progress(t, cur.placements[t.key], nodes)
            assert after.percent == 100 and after.complete_replicas == replicas
    final = plan([t], nodes, p.placements, p.backoff, 500.0, PlannerSettings())
    assert final.tasks == ()
    wanted = {t.ref(s) for s in t.segments}
    for n in nodes:
        assert set(n.segments) <= wanted  # no retired copy left anywhere
    assert all(
        sum(1 for n in nodes if t.ref(s) in n.segments) == replicas for s in t.segments
    )  # every live segment loaded once per replica
    assert TaskKind.RELEASE not in {x.kind for x in final.tasks}


def test_build_target_reads_lineage_retired_segments_and_generations_from_the_catalog() -> None:
    from vectorload.wire.querynode import CollectionCatalog, convert
    from vectorload_dev.testing.coresim import catalog_doc

    doc = catalog_doc("book", {"novel": [100, 100]})
    segs = doc["partitions"][0]["segments"]
    segs[1]["compactedFrom"] = ["old0", "old1"]
    segs[1]["generation"] = 9
    segs[1]["bytes"]["$ts"] = segs[1]["memoryBytes"]["$ts"] = 80
    doc["partitions"][0]["retired"] = [
        {"id": "old0", "rows": 5, "replacedBy": [segs[1]["id"]], "generation": 3},
        {"id": "old1", "rows": 5, "replacedBy": [segs[1]["id"]], "compactedFrom": ["older"]},
    ]
    doc["generation"] = 11
    cat = convert(doc, CollectionCatalog)
    t = target("ns/a", {"collection": "book", "loadFields": ["book_id", "embedding"]}, cat)
    assert t.generation == 11
    new = next(s for s in t.segments if s.id == segs[1]["id"])
    assert new.compacted_from == ("old0", "old1") and new.generation == 9
    assert (
        new.bytes == next(s for s in t.segments if s.id == segs[0]["id"]).bytes + 80
    )  # `$ts` is always read
    assert [(r.id, r.replaced_by, r.compacted_from, r.generation) for r in t.retired] == [
        ("old0", (segs[1]["id"],), (), 3),
        ("old1", (segs[1]["id"],), ("older",), 0),
    ]
    # retired segments of partitions the spec does not load are not the target's
    other = target("ns/a", {"collection": "book", "partitions": ["novel"]}, cat)
    assert len(other.retired) == 2
