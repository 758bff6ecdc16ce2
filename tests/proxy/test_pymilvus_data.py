"""Search, query and get through the proxy with the real pymilvus: the answers are the querynodes'
own (fanned out and merged with the one merge), scores as Milvus reports them, and a querynode
killed mid-search-loop costs no failed search."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pymilvus import MilvusClient, MilvusException

from vectorload.client import QuerynodeClient, QuerynodeError, merge_node_answers
from vectorload.wire.querynode import Hit
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import TEST_TOKEN, QuerynodePool
from vectorload_dev.testing.proxy_harness import (
    MY_COLLECTION,
    MY_DIM,
    ROOT_TOKEN,
    ProxyProcess,
    SearchLoop,
    cload_of,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def client(proxy: ProxyProcess, clean: QuerynodePool) -> Iterator[MilvusClient]:
    c = MilvusClient(uri=proxy.uri, token=ROOT_TOKEN)
    yield c
    c.close()


def direct_search(
    pool: QuerynodePool, collection: str, vectors: list[list[float]], top_k: int, **kw: Any
) -> list[list[Hit]]:
    """What the querynodes of the (single) replica answer, merged: the reference."""

    async def run() -> list[list[Hit]]:
        async def one(url: str) -> Any:
            async with QuerynodeClient(url, TEST_TOKEN) as qn:
                try:
                    return await qn.search(collection, vectors, top_k, **kw)
                except Exception as exc:
                    return exc

        answers = await asyncio.gather(*(one(qn.url) for qn in pool.nodes.values()))
        return merge_node_answers(answers, len(vectors), top_k)

    return asyncio.run(run())


def direct_query(
    pool: QuerynodePool, collection: str, filter: str, output_fields: list[str]
) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for qn in pool.nodes.values():
            async with QuerynodeClient(qn.url, TEST_TOKEN) as c:
                try:
                    rows += await c.query(collection, filter, output_fields=output_fields, limit=16384)
                except QuerynodeError as exc:
                    if exc.reason != "CollectionNotLoaded":  # a node holding none of its segments
                        raise
        return rows

    return asyncio.run(run())


def test_search_equals_the_querynodes_own_answer_with_milvus_scores(
    client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection("book")
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((4, 64)).astype(np.float32).tolist()
    got = client.search(
        "book", vectors, anns_field="book_intro", limit=7, filter="word_count > 20000",
        output_fields=["title", "word_count", "genre"], search_params={"params": {"ef": 128}},
    )  # fmt: skip
    want = direct_search(
        clean, "book", vectors, 7, anns_field="book_intro", filter="word_count > 20000",
        output_fields=["title", "word_count", "genre"], ef=128,
    )  # fmt: skip
    assert len(got) == 4
    for hits, expected in zip(got, want, strict=True):
        assert [h["book_id"] for h in hits] == [e.id for e in expected]
        assert [h["distance"] for h in hits] == pytest.approx([e.distance for e in expected], rel=1e-6)  # L2
        for h, e in zip(hits, expected, strict=True):
            assert h["entity"]["title"] == e.fields["title"] and h["entity"]["word_count"] > 20000
            assert h["entity"]["genre"] == e.fields["genre"]  # a dynamic key, lifted out of $meta
    # COSINE: Milvus reports similarity (larger is closer); the querynode answers 1 - cosine
    cover = rng.standard_normal((1, 16)).astype(np.float32).tolist()
    got_cos = client.search("book", cover, anns_field="cover", limit=5)
    want_cos = direct_search(clean, "book", cover, 5, anns_field="cover")
    assert [h["book_id"] for h in got_cos[0]] == [e.id for e in want_cos[0]]
    assert [h["distance"] for h in got_cos[0]] == pytest.approx(
        [1 - e.distance for e in want_cos[0]], abs=1e-5
    )
    assert got_cos[0][0]["distance"] >= got_cos[0][-1]["distance"]
    # offset and round_decimal as Milvus applies them
    page = client.search("book", vectors[:1], anns_field="book_intro", limit=3, offset=2)
    assert [h["book_id"] for h in page[0]] == [h["book_id"] for h in client.search(
        "book", vectors[:1], anns_field="book_intro", limit=5)[0]][2:5]  # fmt: skip


def test_ip_search_and_query_and_get_equal_the_querynodes_rows(
    client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection(MY_COLLECTION)
    vector = np.random.default_rng(5).standard_normal((1, MY_DIM)).astype(np.float32).tolist()
    got = client.search(MY_COLLECTION, vector, limit=10, output_fields=["color", "$meta"])
    want = direct_search(clean, MY_COLLECTION, vector, 10, output_fields=["color", "$meta"])
    assert [h["my_id"] for h in got[0]] == [e.id for e in want[0]]
    assert [h["distance"] for h in got[0]] == pytest.approx([1 - e.distance for e in want[0]], abs=1e-5)  # IP
    assert [h["entity"]["shape"] for h in got[0]] == [e.fields["$meta"]["shape"] for e in want[0]]
    rows = client.query(
        MY_COLLECTION, filter='color == "blue" and weight < 60', output_fields=["color", "weight"]
    )
    expected = direct_query(clean, MY_COLLECTION, 'color == "blue" and weight < 60', ["color", "weight"])
    assert sorted((r["my_id"], r["color"], r["weight"]) for r in rows) == sorted(
        (r["my_id"], r["color"], r["weight"]) for r in expected
    )
    assert rows and all(r["color"] == "blue" for r in rows)
    fetched = client.get(MY_COLLECTION, ids=[3, 150, 999999], output_fields=["color"])
    assert sorted(r["my_id"] for r in fetched) == [3, 150]
    assert {r["my_id"]: r["color"] for r in fetched} == {3: "red", 150: "red"}
    limited = client.query(MY_COLLECTION, filter="", output_fields=["my_id"], limit=7)
    assert len(limited) == 7
    with pytest.raises(MilvusException) as info:
        client.query(MY_COLLECTION, filter="")  # no filter, no limit: Milvus refuses it
    assert info.value.code == 1100


def test_search_errors_are_milvus_errors_naming_the_problem(
    client: MilvusClient, clean: QuerynodePool
) -> None:
    with pytest.raises(MilvusException) as info:
        client.search("no_such_collection", [[0.0] * 8], limit=3)
    assert (
        info.value.code == 100 and "collection not found[collection=no_such_collection]" in info.value.message
    )
    with pytest.raises(MilvusException) as info:
        client.search(MY_COLLECTION, [[0.0] * MY_DIM], limit=3)
    assert info.value.code == 101
    client.load_collection(MY_COLLECTION)
    cases = [
        ({"data": [[0.0] * 3], "limit": 3}, "dim"),
        ({"data": [[0.0] * MY_DIM], "limit": 3, "filter": "color =="}, "filter"),
        ({"data": [[0.0] * MY_DIM], "limit": 20000}, "topk"),
        ({"data": [[0.0] * MY_DIM], "limit": 3, "search_params": {"metric_type": "L2"}}, "metric type"),
        (
            {"data": [[0.0] * MY_DIM], "limit": 3, "search_params": {"params": {"radius": 0.5}}},
            "range search",
        ),
        ({"data": [[0.0] * MY_DIM], "limit": 3, "partition_names": ["nope"]}, "partition"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(MilvusException) as info:
            client.search(MY_COLLECTION, **kwargs)
        assert info.value.code in (1100, 200), (kwargs, info.value)
        assert needle in info.value.message, (kwargs, info.value.message)


def test_a_querynode_killed_mid_search_loop_fails_no_search(
    proxy: ProxyProcess, client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection("book", replica_number=2)
    replicas = cload_of(clean, "book")["status"]["replicas"]
    assert len(replicas) == 2
    victim = replicas[0]["nodes"][0]
    with SearchLoop(proxy.uri, "book", "book_intro", 64) as loop:
        before = loop.count
        clean.nodes[victim].kill()
        wait_for("50 more searches", lambda: loop.count >= before + 50, timeout=60)
        clean.restart_node(victim)  # an empty querynode on the same address: the operator refills it
        wait_for(
            "book Loaded on 2 complete replicas again",
            lambda: cload_of(clean, "book")["status"].get("replicaText") == "2/2",
            timeout=60,
        )
        after = loop.count
        wait_for("20 more searches", lambda: loop.count >= after + 20, timeout=60)
    assert loop.errors == [], loop.errors[:3]
    assert "vectorload_proxy_replica_retries_total" in proxy.metrics()
