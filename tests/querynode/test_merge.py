"""Client-side fan-out merge, table output and Kubernetes resolution helpers (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from vectorload.client.cli import format_table
from vectorload.client.http import QuerynodeError
from vectorload.client.kube import Replica, ResolveError, choose_replica, pod_url, replicas_from_status
from vectorload.client.merge import merge_hits, merge_node_answers
from vectorload.wire.querynode import Hit


def hit(pk: Any, distance: float, partition: str = "_default") -> Hit:
    return Hit(id=pk, distance=distance, partition=partition, fields={})


def test_merge_hits_sorts_dedupes_and_cuts() -> None:
    node_a = [hit(1, 0.5), hit(2, 0.7), hit(3, 0.9)]
    node_b = [hit(4, 0.1), hit(2, 0.6), hit(5, 0.8)]
    merged = merge_hits([node_a, node_b], top_k=4)
    assert [(h.id, h.distance) for h in merged] == [(4, 0.1), (1, 0.5), (2, 0.6), (5, 0.8)]


def test_merge_hits_ties_are_deterministic() -> None:
    merged = merge_hits([[hit("b", 1.0)], [hit("a", 1.0)]], top_k=2)
    assert [h.id for h in merged] == ["a", "b"]
    assert merge_hits([], 3) == []


def test_merge_node_answers_per_query() -> None:
    answers: list[list[list[Hit]] | QuerynodeError] = [
        [[hit(1, 0.3)], [hit(7, 0.2)]],
        [[hit(2, 0.1)], []],
        QuerynodeError(404, "CollectionNotLoaded", "node holds nothing"),
        QuerynodeError(409, "PartitionNotLoaded", "node holds other partitions"),
    ]
    merged = merge_node_answers(answers, nq=2, top_k=5)
    assert [[h.id for h in q] for q in merged] == [[2, 1], [7]]


def test_merge_node_answers_errors() -> None:
    with pytest.raises(QuerynodeError) as info:
        merge_node_answers([[[hit(1, 0.1)]], QuerynodeError(0, "Unreachable", "down")], nq=1, top_k=3)
    assert info.value.reason == "Unreachable"  # a missing node would silently lose results
    with pytest.raises(QuerynodeError) as info:
        merge_node_answers([QuerynodeError(404, "CollectionNotLoaded", "x")], nq=1, top_k=3)
    assert info.value.reason == "CollectionNotLoaded"
    with pytest.raises(QuerynodeError, match="2 result lists"):
        merge_node_answers([[[], []]], nq=1, top_k=3)
    with pytest.raises(QuerynodeError):
        merge_node_answers([], nq=1, top_k=3)


def test_format_table() -> None:
    text = format_table([[Hit(id=7, distance=0.25, partition="novel", fields={"title": "X"})]], ["title"])
    lines = text.splitlines()
    assert lines[0].split() == ["rank", "id", "distance", "partition", "title"]
    assert lines[1].split() == ["1", "7", "0.25", "novel", '"X"']
    assert "(no results)" in format_table([[]], [])


def test_replicas_and_pod_urls() -> None:
    status = {"status": {"replicas": [{"id": 0, "nodes": ["qn-0", "qn-1"]}, {"id": 1, "nodes": []}]}}
    assert replicas_from_status(status) == [Replica(0, ["qn-0", "qn-1"])]
    pod: dict[str, Any] = {
        "metadata": {"annotations": {}},
        "spec": {
            "containers": [
                {"ports": [{"name": "metrics", "containerPort": 9}, {"name": "http", "containerPort": 8080}]}
            ]
        },
        "status": {"podIP": "10.0.0.5"},
    }
    assert pod_url(pod) == "http://10.0.0.5:8080"
    pod["metadata"]["annotations"]["vectorload.io/port"] = "19531"
    assert pod_url(pod) == "http://10.0.0.5:19531"
    assert pod_url({"status": {"podIP": "127.0.0.3"}}) == "http://127.0.0.3:19530"
    assert pod_url({"status": {}}) is None


def test_choose_replica() -> None:
    replicas = [Replica(0, ["a", "b"]), Replica(1, ["c"])]
    assert choose_replica(replicas, {"a": "u", "b": None, "c": "u"}, None).id == 1
    assert choose_replica(replicas, {}, 0).id == 0
    with pytest.raises(ResolveError):
        choose_replica(replicas, {"a": None}, None)
    with pytest.raises(ResolveError):
        choose_replica(replicas, {}, 5)
