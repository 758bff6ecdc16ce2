"""The proxy's pure parts: names, load state from status, the lifecycle mapping, replica routing,
errors. No cluster, no processes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from vectorload_proxy import errors, lifecycle, names, routing, state
from vectorload_proxy.errors import MilvusError
from vectorload_proxy.lifecycle import LoadSpec
from vectorload_proxy.state import PodView, load_view

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PARTS = ("_default", "novel", "poetry")


def cload(
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    generation: int = 1,
    name: str = "book",
    created: str = "2026-01-01T00:00:00Z",
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "uid": f"uid-{name}",
        "generation": generation,
        "creationTimestamp": created,
        "resourceVersion": "1",
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    return {"metadata": meta, "spec": {"collection": "book", **(spec or {})}, "status": status or {}}


def loaded_status(
    generation: int = 1, replicas: int = 1, nodes: tuple[str, ...] = ("qn-0",)
) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "loadState": "Loaded",
        "loadProgress": 100,
        "partitions": [{"name": p, "loadProgress": 100} for p in PARTS],
        "replicas": [
            {"id": i, "nodes": [nodes[i % len(nodes)]], "loadedSegments": 9, "totalSegments": 9}
            for i in range(replicas)
        ],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Loaded", "message": "100% loaded"}],
    }


# ---------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("collection", "expected"),
    [("book", "book"), ("my_collection", None), ("Book", None), ("_x", None), ("___", None)],
)
def test_collection_load_names_are_dns_1123_and_keep_plain_names(
    collection: str, expected: str | None
) -> None:
    got = names.collection_load_name(collection)
    assert DNS_1123.fullmatch(got) and len(got) <= 253
    if expected is not None:
        assert got == expected
    else:
        assert got.endswith(names.name_hash(collection))  # changed names carry the real name's hash


MILVUS_NAMES = st.from_regex(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$", fullmatch=True)


@given(MILVUS_NAMES, MILVUS_NAMES)
def test_every_collection_name_maps_to_valid_distinct_object_names(a: str, b: str) -> None:
    for collection in (a, b):
        first, second = names.collection_load_name(collection), names.alternative_name(collection)
        assert DNS_1123.fullmatch(first) and len(first) <= 253
        assert DNS_1123.fullmatch(second) and len(second) <= 253
        assert first != second
    if a != b:
        assert names.collection_load_name(a) != names.collection_load_name(b)


def test_databases_are_namespaces() -> None:
    dbs = names.Databases("vl", ("vl", "team-a"))
    assert dbs.namespace("") == dbs.namespace("default") == "vl"
    assert dbs.namespace("team-a") == "team-a"
    assert dbs.names() == ["default", "team-a"]
    with pytest.raises(MilvusError) as info:
        dbs.namespace("vl")  # the own namespace is only `default`
    assert info.value.code == errors.DATABASE_NOT_FOUND
    with pytest.raises(MilvusError) as info:
        dbs.namespace("x" * 1000)
    assert len(info.value.message) < 300


def test_the_database_a_call_names_the_request_first_then_its_metadata_or_header() -> None:
    class Context:
        def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
            self.metadata = metadata

        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return self.metadata

    class Request:
        def __init__(self, db_name: str) -> None:
            self.db_name = db_name

    with_metadata = Context((("authorization", "x"), ("dbname", "team-a")))
    assert names.grpc_database(Request(""), with_metadata) == "team-a"
    assert names.grpc_database(Request("b"), with_metadata) == "b"
    assert names.grpc_database(object(), Context(())) == ""
    rest = make_mocked_request("POST", "/", headers={"DB-Name": "team-a"})
    assert names.rest_database(rest, "") == "team-a"
    assert names.rest_database(rest, "b") == "b"
    assert names.rest_database(make_mocked_request("POST", "/"), "") == ""


def test_invalid_names_are_1100_naming_them() -> None:
    for bad in ("", "1abc", "a-b", "x" * 256, "a b"):
        with pytest.raises(MilvusError) as info:
            names.check_collection_name(bad)
        assert info.value.code == errors.PARAMETER_INVALID and len(info.value.message) < 500


# ---------------------------------------------------------------------------------------- errors


def test_errors_carry_milvus_codes_texts_and_old_codes() -> None:
    e = errors.collection_not_found("book")
    assert (e.code, e.message, e.error_code) == (100, "collection not found[collection=book]", 4)
    assert (
        errors.parameter_invalid("x").message == "x: invalid parameter"
        and errors.parameter_invalid("x").error_code == 5
    )
    assert errors.collection_not_loaded("book").error_code == errors.OLD_UNEXPECTED_ERROR
    assert errors.partition_not_found("novel").code == 200
    assert (
        errors.node_not_enough(1, 2, "d").message
        == "resource group node not enough[currentNodeNum=1][expectedNodeNum=2]: d"
    )
    assert len(errors.collection_not_found("x" * 10**6).message) < 300  # echoed input is capped


# ------------------------------------------------------------------------------------ load state


def test_load_state_from_status() -> None:
    assert state.load_state(None) == state.NOT_LOAD
    assert state.load_state(load_view(cload(status=loaded_status()))) == state.LOADED
    assert state.load_state(load_view(cload(deleting=True, status=loaded_status()))) == state.NOT_LOAD
    not_observed = load_view(cload(generation=2, status=loaded_status(generation=1)))
    assert state.load_state(not_observed) == state.LOADING and state.loading_progress(not_observed) == 0
    loading = load_view(
        cload(
            status={
                "observedGeneration": 1,
                "loadState": "Loading",
                "loadProgress": 40,
                "partitions": [{"name": "novel", "loadProgress": 80}, {"name": "poetry", "loadProgress": 0}],
            }
        )
    )
    assert state.load_state(loading) == state.LOADING and state.loading_progress(loading) == 40
    assert (
        state.loading_progress(loading, ["novel", "poetry"]) == 40
        and state.loading_progress(loading, ["novel"]) == 80
    )
    waiting = load_view(cload(status={"observedGeneration": 1, "loadState": "NotLoad"}))
    assert state.load_state(waiting) == state.LOADING  # asked for, not yet loaded
    partial = load_view(cload(spec={"partitions": ["poetry"]}, status=loaded_status()))
    assert state.load_state(partial, ["poetry"], PARTS) == state.LOADED
    assert state.load_state(partial, ["novel"], PARTS) == state.NOT_LOAD


def test_status_garbage_reads_as_absent() -> None:
    view = load_view(
        {
            "metadata": {"name": "x"},
            "spec": {"collection": 5, "partitions": "nope", "replicas": True},
            "status": {
                "conditions": ["x", {"type": 3}],
                "replicas": [None, {"id": "a"}],
                "loadProgress": 1e9,
            },
        }
    )
    assert view.partitions == () and view.replicas == 1 and view.conditions == {} and view.progress == 0
    assert state.load_state(view) == state.LOADING


def test_load_failures_and_whether_they_last() -> None:
    message = (
        'nodes not enough to load 5 replica(s) of collection "book": currentNodeNum=3, expectedNodeNum=5'
    )
    status = {
        "observedGeneration": 2,
        "loadState": "Loading",
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "InsufficientNodes", "message": message},
            {"type": "Degraded", "status": "True", "reason": "InsufficientNodes", "message": message},
        ],
    }
    view = load_view(cload(generation=2, status=status))
    failure = state.load_failure(view)
    assert failure is not None and failure.code == errors.RESOURCE_GROUP_NODE_NOT_ENOUGH
    assert "[currentNodeNum=3][expectedNodeNum=5]" in failure.message and state.failure_settled(view)
    waiting = dict(
        status,
        conditions=[
            status["conditions"][0],
            {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": ""},
        ],
    )  # type: ignore[index]
    assert not state.failure_settled(load_view(cload(generation=2, status=waiting)))
    assert state.load_failure(load_view(cload(generation=3, status=status))) is None  # not observed yet
    retrying = dict(
        status, conditions=[{"type": "Ready", "status": "False", "reason": "Loading", "message": ""}]
    )
    assert state.load_failure(load_view(cload(generation=2, status=retrying))) is None
    bad_fields = dict(
        status, conditions=[{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "m"}]
    )
    assert state.load_failure(load_view(cload(generation=2, status=bad_fields))).code == 1100  # type: ignore[union-attr]


def test_the_oldest_collectionload_wins_as_in_the_operator() -> None:
    old = load_view(cload(name="b", created="2026-01-01T00:00:00Z"))
    new = load_view(cload(name="a", created="2026-01-02T00:00:00Z"))
    gone = load_view(cload(name="c", created="2025-01-01T00:00:00Z", deleting=True))
    assert state.winner([new, old, gone]) == old
    assert state.winner([gone]) == gone and state.winner([]) is None


def test_pod_views() -> None:
    pod = {
        "metadata": {"name": "qn-0"},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 1234}]}]},
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.5",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    assert state.pod_view(pod) == PodView("qn-0", "http://127.0.0.5:1234")
    pod["status"]["conditions"][0]["status"] = "False"
    assert not state.pod_view(pod).serving


# ------------------------------------------------------------------------------------- lifecycle


def test_load_calls_map_to_specs() -> None:
    new = lifecycle.load_collection(None, "book")
    assert new == LoadSpec("book", (), (), False, 1)
    fields = lifecycle.load_collection(None, "book", 2, ["book_intro", "book_id", "$meta"], True)
    assert fields == LoadSpec(
        "book", (), ("book_id", "book_intro"), False, 2
    )  # $meta = load the dynamic field
    again = lifecycle.load_collection(fields, "book")
    assert again == fields  # replica_number 0 and no load_fields keep the current ones
    assert lifecycle.spec_patch(fields, again) == {}  # so a repeated load writes nothing
    parts = lifecycle.load_partitions(None, "book", ["novel"])
    assert parts.partitions == ("novel",)
    assert lifecycle.load_partitions(parts, "book", ["poetry"]).partitions == ("novel", "poetry")
    assert lifecycle.load_partitions(new, "book", ["poetry"]).partitions == ()  # whole collection already
    assert lifecycle.load_collection(parts, "book").partitions == ()


def test_release_partitions() -> None:
    whole = LoadSpec("book")
    assert lifecycle.release_partitions(whole, ["novel"], PARTS) == LoadSpec("book", ("_default", "poetry"))
    assert lifecycle.release_partitions(LoadSpec("book", ("novel",)), ["novel"], PARTS) is None
    assert lifecycle.release_partitions(whole, list(PARTS), PARTS) is None
    assert lifecycle.release_partitions(LoadSpec("book", ("novel",)), ["poetry"], PARTS) == LoadSpec(
        "book", ("novel",)
    )


@given(
    st.sets(st.sampled_from(PARTS)),
    st.sets(st.sampled_from(PARTS), min_size=1),
    st.sets(st.sampled_from(PARTS), min_size=1),
)
def test_load_then_release_partitions_is_set_algebra(
    held: set[str], added: set[str], released: set[str]
) -> None:
    current = LoadSpec("book", tuple(sorted(held))) if held else None
    loaded = lifecycle.load_partitions(current, "book", sorted(added))
    asked = set(loaded.partitions) if loaded.partitions else set(PARTS)
    assert asked >= added
    after = lifecycle.release_partitions(loaded, sorted(released), PARTS)
    left = asked - released
    if not left:
        assert after is None
    else:
        assert after is not None and (set(after.partitions) if after.partitions else set(PARTS)) == left


# --------------------------------------------------------------------------------------- routing


PODS = {f"qn-{i}": PodView(f"qn-{i}", f"http://127.0.0.{i + 2}:1") for i in range(3)}


def test_routing_uses_complete_replicas_round_robin() -> None:
    view = load_view(cload(spec={"replicas": 2}, status=loaded_status(replicas=2, nodes=("qn-0", "qn-1"))))
    chosen = routing.plan(view, PODS, PARTS, [])
    assert [r.replica for r in chosen.routes] == [0, 1] and chosen.partitions is None
    rr = routing.RoundRobin()
    firsts = [rr.order(("ns", "book"), chosen.routes)[0].replica for _ in range(4)]
    assert firsts == [0, 1, 0, 1]
    only_one = {k: v for k, v in PODS.items() if k != "qn-1"}
    assert [r.replica for r in routing.plan(view, only_one, PARTS, []).routes] == [0]


def test_routing_keeps_loaded_partitions_searchable_while_another_loads() -> None:
    status = loaded_status()
    status.update(
        loadState="Loading",
        loadProgress=66,
        partitions=[
            {"name": "novel", "loadProgress": 30},
            {"name": "poetry", "loadProgress": 100},
            {"name": "_default", "loadProgress": 100},
        ],
    )
    status["replicas"][0]["loadedSegments"] = 7
    view = load_view(cload(spec={"partitions": list(PARTS)}, status=status))
    chosen = routing.plan(view, PODS, PARTS, ["poetry"])
    assert chosen.partitions == ("poetry",) and chosen.routes
    assert routing.plan(view, PODS, PARTS, []).partitions == ("_default", "poetry")  # the loaded ones
    with pytest.raises(MilvusError) as info:
        routing.plan(view, PODS, PARTS, ["novel"])
    assert info.value.code == errors.PARTITION_NOT_FULLY_LOADED


def test_routing_refuses_what_cannot_be_searched() -> None:
    fresh = load_view(
        cload(
            status={
                "observedGeneration": 1,
                "loadState": "Loading",
                "loadProgress": 0,
                "replicas": [{"id": 0, "nodes": ["qn-0"], "loadedSegments": 0, "totalSegments": 9}],
            }
        )
    )
    with pytest.raises(MilvusError) as info:
        routing.plan(fresh, PODS, PARTS, [])
    assert info.value.code == errors.COLLECTION_NOT_LOADED
    half = load_view(
        cload(
            status={
                "observedGeneration": 1,
                "loadState": "Loading",
                "loadProgress": 50,
                "replicas": [{"id": 0, "nodes": ["qn-0"], "loadedSegments": 4, "totalSegments": 9}],
            }
        )
    )
    with pytest.raises(MilvusError) as info:
        routing.plan(half, PODS, PARTS, [])
    assert info.value.code == errors.COLLECTION_NOT_FULLY_LOADED
    degraded = load_view(
        cload(
            status=dict(
                loaded_status(),
                replicas=[{"id": 0, "nodes": ["qn-0"], "loadedSegments": 8, "totalSegments": 9}],
            )
        )
    )
    assert routing.plan(degraded, PODS, PARTS, []).routes  # Loaded but refilling: keeps serving
