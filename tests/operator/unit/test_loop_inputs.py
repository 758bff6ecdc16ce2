"""The loop's pure parts without a querynode: per-resource inputs (`inputs`), deletion tracking
(`release`) and the event policy (`event_policy`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.schema_json import schema_to_dict
from vectorload.wire.querynode import CollectionCatalog, convert
from vectorload_operator import event_policy, inputs, release
from vectorload_operator.catalog import CatalogEntry
from vectorload_operator.clock import Clock
from vectorload_operator.core import (
    CONFLICT,
    BackoffState,
    HeldSegment,
    NodeState,
    PlannerSettings,
    Problem,
    ReplicaPlacement,
    SegmentFailure,
    SegmentRef,
    SegmentState,
    SpecProblem,
    Task,
    TaskKind,
    conflict_losers,
    plan,
)
from vectorload_operator.distribution import NodeView
from vectorload_operator.observe import Inputs, observe
from vectorload_operator.pods import QuerynodePod
from vectorload_operator.registry import Entry, Registry

SCHEMA = schema_to_dict(
    CollectionSchema(
        name="c",
        fields=(
            FieldSchema("id", "int64", is_primary=True),
            FieldSchema("v", "float_vector", dim=8, metric="l2"),
        ),
        dynamic_field=False,
    )
)
CATALOG = convert(
    {
        "name": "c",
        "schema": SCHEMA,
        "partitions": [
            {
                "name": "_default",
                "segments": [
                    {
                        "id": "s0",
                        "rows": 10,
                        "bytes": {"id": 80, "v": 920},
                        "totalBytes": 1000,
                        "memoryBytes": {"id": 80, "v": 920},
                    }
                ],
            }
        ],
    },
    CollectionCatalog,
)
GOLD = {"app.kubernetes.io/component": "querynode", "pool": "gold"}
PLAIN = {"app.kubernetes.io/component": "querynode"}
WALL = 1.7e9


def _entry(name: str = "a", spec: dict[str, Any] | None = None, **meta: Any) -> Entry:
    registry = Registry(Clock(monotonic=lambda: 0.0, wall=lambda: WALL))
    body = {
        "metadata": {"namespace": "ns", "name": name, "uid": f"u-{name}", "generation": 1, **meta},
        "spec": spec if spec is not None else {"collection": "c"},
    }
    return registry.upsert(body)


def _view(name: str, labels: dict[str, str], ready: bool = True) -> NodeView:
    pod = QuerynodePod("ns", name, "127.0.0.9", 19530, ready, labels)
    return NodeView(pod, NodeState(pod.key, ready, capacity_bytes=1 << 30), 0.0)


VIEWS = {"ns/qn-0": _view("qn-0", GOLD), "ns/qn-1": _view("qn-1", PLAIN)}
FOUND = CatalogEntry(True, CATALOG, 0.0)


# ------------------------------------------------------------------------------ inputs


def test_a_valid_spec_becomes_a_target_on_the_nodes_its_selector_matches() -> None:
    spec = {"collection": "c", "querynodeSelector": {"matchLabels": {"pool": "gold"}}}
    request = inputs.resolve(_entry(spec=spec), VIEWS, FOUND)
    assert request.target is not None and not request.retain
    assert request.target.key == "ns/a" and request.target.eligible_nodes == frozenset({"ns/qn-0"})
    everyone = inputs.resolve(_entry(), VIEWS, FOUND).target
    assert everyone is not None and everyone.eligible_nodes == frozenset(VIEWS)


def test_problems_fail_the_resource_and_keep_what_is_loaded_except_for_a_conflict_loser() -> None:
    bad_selector = {"collection": "c", "querynodeSelector": {"matchExpressions": [{"key": "x"}]}}
    r = inputs.resolve(_entry(spec=bad_selector), VIEWS, FOUND)
    assert r.failure is not None and r.failure.reason == "InvalidSpec" and r.retain
    assert r.failure.message.startswith("querynodeSelector: ")
    missing = inputs.resolve(_entry(spec={"collection": "nope"}), VIEWS, CatalogEntry(False, None, 0.0))
    assert missing.failure is not None and missing.failure.reason == "CollectionNotFound" and missing.retain
    no_vector = inputs.resolve(_entry(spec={"collection": "c", "loadFields": ["id"]}), VIEWS, FOUND)
    assert no_vector.failure is not None and no_vector.failure.reason == "InvalidSpec" and no_vector.retain
    lost = SpecProblem(CONFLICT, "taken")
    loser = inputs.resolve(_entry(), VIEWS, FOUND, conflict=lost)
    assert loser.failure is lost and loser.target is None and not loser.retain


def test_without_a_catalog_the_resource_waits_and_keeps_what_is_loaded() -> None:
    views = {**VIEWS, "ns/qn-1": _view("qn-1", PLAIN, ready=False)}
    r = inputs.resolve(_entry(spec={"collection": "c", "replicas": 3}), views, None)
    assert r.target is None and r.failure is None and r.retain
    assert r.waiting is not None and r.waiting.reason == "InsufficientNodes"
    assert "[currentNodeNum=1][expectedNodeNum=3]" in r.waiting.message
    odd = inputs.resolve(_entry(spec={"collection": "c", "replicas": "many"}), views, None)
    assert odd.waiting is not None and "[expectedNodeNum=1]" in odd.waiting.message


def test_a_deleted_resource_asks_for_nothing() -> None:
    assert inputs.resolve(_entry(deletionTimestamp="2026-01-01T00:00:00Z"), VIEWS, FOUND) == inputs.Request()


def test_claims_carry_the_creation_time_so_the_older_wins() -> None:
    old = _entry("old", creationTimestamp="2026-01-01T00:00:00Z")
    new = _entry("new", creationTimestamp="2026-01-01T00:00:01Z")
    gone = _entry("gone", creationTimestamp="2025-01-01T00:00:00Z", deletionTimestamp="2026-01-02T00:00:00Z")
    losers = conflict_losers(inputs.claims([new, old, gone]))
    assert list(losers) == ["ns/new"] and "ns/old" in losers["ns/new"].message


def test_placement_is_read_back_from_status_skipping_rows_that_do_not_parse() -> None:
    e = _entry()
    e.status = {"replicas": [{"id": 2, "nodes": ["qn-1"]}, {"nodes": ["x"]}, "junk", {"id": "z"}]}
    assert inputs.placement_from_status(e) == (ReplicaPlacement(2, ("ns/qn-1",)),)


def test_the_observation_carries_the_plans_answer_with_wall_times() -> None:
    e = _entry()
    request = inputs.resolve(e, VIEWS, FOUND)
    assert request.target is not None
    nodes = [v.state for v in VIEWS.values()]
    result = plan([request.target], nodes, {}, BackoffState(), 50.0, PlannerSettings())
    failure = SegmentFailure("ns/qn-0", SegmentRef("c", "_default", "s0"), "Bad", "bad", 1, 40.0, 41.0)
    result = replace(result, failures={"ns/a": (failure,)})
    obs = inputs.observation(e, request, {}, False, result, nodes, WALL, lambda mono: WALL - (50.0 - mono))
    assert obs.placement == result.placements["ns/a"] and obs.failures == (failure,)
    assert obs.failure_walls == (WALL - 10.0,) and obs.nodes == tuple(nodes)
    status = observe(obs).status
    assert status["lastFailure"]["time"] == "2023-11-14T22:13:10Z"


# ------------------------------------------------------------------------------ release


def test_a_deleted_collection_is_released_once_nothing_holds_or_loads_it() -> None:
    ref = SegmentRef("c", "_default", "s0")
    holding = {"n": NodeState("n", True, segments={ref: HeldSegment(SegmentState.LOADED)})}
    down = {"n": NodeState("n", False, segments={ref: HeldSegment(SegmentState.LOADED)})}
    empty = {"n": NodeState("n", True)}
    load = Task(TaskKind.LOAD, "n", "c", "_default", "s0")
    assert release.releasing_segments("c", holding, set()) == 1
    assert not release.is_released("c", holding, set(), ())
    assert release.is_released("c", down, set(), ())  # a node that is down holds nothing
    assert not release.is_released("c", empty, set(), (load,))  # a load still being sent
    assert release.is_released("c", empty, set(), ())
    # another live CollectionLoad owns the collection: released at once, nothing counted
    assert release.is_released("c", holding, {"c"}, (load,))
    assert release.releasing_segments("c", holding, {"c"}) == 0


# ------------------------------------------------------------------------------ event policy


def _decide(
    inp: Inputs, memory: event_policy.Memory, generation: int = 1
) -> tuple[list[tuple[str, str | None]], event_policy.Decision]:
    decision = event_policy.decide("c", generation, inp, observe(inp), memory, since_seen=2.5)
    return [(t.topic, t.reason) for t in decision.transitions], decision


def _target_inputs(generation: int = 1, **kw: Any) -> Inputs:
    request = inputs.resolve(_entry(), VIEWS, FOUND)
    return Inputs(generation=generation, previous={}, now_wall=WALL, target=request.target, **kw)


def test_load_started_once_per_generation_then_loaded_once_with_its_duration() -> None:
    memory = event_policy.Memory()
    topics, d = _decide(_target_inputs(), memory)
    assert topics == [("state", "LoadStarted"), ("capacity", None), ("degraded", None)]
    assert d.load_duration is None and d.memory.started_gen == 1
    topics, d = _decide(_target_inputs(), d.memory)
    assert ("state", "LoadStarted") not in topics
    # a generation with nothing to load is Loaded at once: the Loaded event, the duration metric
    empty = _target_inputs(2)
    assert empty.target is not None
    done = Inputs(2, {}, WALL, target=replace(empty.target, segments=()))
    topics, d = _decide(done, d.memory, generation=2)
    assert topics[0] == ("state", "Loaded") and d.load_duration == 2.5 and d.memory.loaded_gen == 2
    assert "(generation 2, 2.5s)" in d.transitions[0].message
    topics, _ = _decide(done, d.memory, generation=2)
    assert ("state", "Loaded") not in topics


def test_a_status_loaded_before_a_restart_posts_no_second_loaded_event() -> None:
    memory = event_policy.recall(event_policy.Memory(), {"observedGeneration": 3, "loadState": "Loaded"}, 3)
    assert memory.was_loaded(3) and not memory.was_loaded(4)
    assert event_policy.recall(
        event_policy.Memory(), {"observedGeneration": 2, "loadState": "Loaded"}, 3
    ) == (event_policy.Memory())


def test_failed_waiting_and_deleted_resources_post_their_reason() -> None:
    problem = SpecProblem("InvalidSpec", "bad field")
    topics, d = _decide(Inputs(1, {}, WALL, failure=problem), event_policy.Memory())
    assert topics == [("state", "InvalidSpec"), ("capacity", None), ("degraded", None)]
    assert d.transitions[0].warning and d.transitions[0].message == "bad field"
    waiting = Problem("InsufficientNodes", "no ready querynode")
    topics, d = _decide(Inputs(1, {}, WALL, waiting=waiting), event_policy.Memory())
    assert ("capacity", "InsufficientNodes") in topics
    topics, _ = _decide(Inputs(1, {}, WALL, deleting=True, releasing_segments=2), event_policy.Memory())
    assert topics == [("state", "Releasing")]


def test_segment_failures_open_a_topic_each_and_close_it_when_forgotten() -> None:
    f = SegmentFailure("ns/qn-0", SegmentRef("c", "_default", "s0"), "IndexCorrupt", "bad magic", 1, 5.0, 6.0)
    topics, d = _decide(_target_inputs(failures=(f,), failure_walls=(WALL,)), event_policy.Memory())
    assert ("fail/ns/qn-0/_default/s0", "SegmentLoadFailed") in topics and ("degraded", "Degraded") in topics
    message = next(t.message for t in d.transitions if t.reason == "SegmentLoadFailed")
    assert message == "segment s0 (partition _default) on node qn-0: IndexCorrupt: bad magic"
    topics, d = _decide(_target_inputs(), d.memory)
    assert ("fail/ns/qn-0/_default/s0", None) in topics and d.memory.failure_topics == frozenset()


def test_partition_release_messages() -> None:
    assert event_policy.partitions_released("book", ["a", "b", "c"], ["b"]) == (
        "releasing partitions a, c of collection book"
    )
    assert event_policy.partitions_released("book", ["a"], []) is None  # all of them: a full release
    assert event_policy.partitions_released("book", None, ["a"]) is None
