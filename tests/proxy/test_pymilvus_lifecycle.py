"""The seeds' load lifecycle through the real pymilvus against a real proxy, operator, control plane
and querynodes: what pymilvus prints, what the CollectionLoad says, and that both agree."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pymilvus import Collection, MilvusClient, MilvusException, Partition, connections
from pymilvus.client.types import LoadState

from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import QuerynodePool, collection_load, is_loaded
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


def test_seed_load_collection_then_get_load_state_prints_loaded(
    client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection(collection_name=MY_COLLECTION)
    res = client.get_load_state(collection_name=MY_COLLECTION)
    assert str(res) == "{'state': <LoadState: Loaded>}"
    obj = cload_of(clean, MY_COLLECTION)
    assert is_loaded(obj)  # kubectl get cload tells the same story
    assert obj["metadata"]["name"] == "my-collection-" + obj["metadata"]["name"].rsplit("-", 1)[1]
    assert obj["metadata"]["annotations"]["vectorload.io/collection"] == MY_COLLECTION


def test_seed_load_fields_and_skip_dynamic_field_then_filter_on_an_unloaded_field_errors(
    client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection(
        collection_name=MY_COLLECTION, load_fields=["my_id", "my_vector"], skip_load_dynamic_field=True
    )
    assert str(client.get_load_state(collection_name=MY_COLLECTION)) == "{'state': <LoadState: Loaded>}"
    spec = cload_of(clean, MY_COLLECTION)["spec"]
    assert spec["loadFields"] == ["my_id", "my_vector"] and spec["skipLoadDynamicField"] is True
    vector = [0.1] * MY_DIM
    assert len(client.search(MY_COLLECTION, [vector], limit=3)[0]) == 3
    with pytest.raises(MilvusException) as info:
        client.search(MY_COLLECTION, [vector], limit=3, filter='color == "red"')
    assert info.value.code == 1100 and "color" in info.value.message and "not loaded" in info.value.message
    with pytest.raises(MilvusException) as info:
        client.search(MY_COLLECTION, [vector], limit=3, filter="weight > 3")  # a dynamic key: $meta skipped
    assert info.value.code == 1100 and "not loaded" in info.value.message
    with pytest.raises(MilvusException) as info:
        client.query(MY_COLLECTION, filter="my_id < 5", output_fields=["color"])
    assert info.value.code == 1100 and "color" in info.value.message


def test_load_fields_without_primary_key_or_vector_field_is_refused_naming_them(
    client: MilvusClient, clean: QuerynodePool
) -> None:
    with pytest.raises(MilvusException) as info:
        client.load_collection(MY_COLLECTION, load_fields=["my_vector", "color"])
    assert info.value.code == 1100 and '"my_id"' in info.value.message
    with pytest.raises(MilvusException) as info:
        client.load_collection(MY_COLLECTION, load_fields=["my_id", "color"])
    assert info.value.code == 1100 and "vector field" in info.value.message
    with pytest.raises(MilvusException) as info:
        client.load_collection(MY_COLLECTION, load_fields=["my_id", "my_vector", "nope"])
    assert info.value.code == 1100 and '"nope"' in info.value.message
    assert client.get_load_state(MY_COLLECTION)["state"] == LoadState.NotLoad
    assert clean.collection_loads() == []


def test_seed_release_collection_then_get_load_state_prints_notload(
    client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection(collection_name=MY_COLLECTION)
    client.release_collection(collection_name=MY_COLLECTION)
    res = client.get_load_state(collection_name=MY_COLLECTION)
    assert str(res) == "{'state': <LoadState: NotLoad>}"
    assert clean.collection_loads() == []  # released = the CollectionLoad is gone (memory first)
    for node in clean.nodes:
        assert not clean.held(node, state=None, collection=MY_COLLECTION)
    with pytest.raises(MilvusException) as info:
        client.search(MY_COLLECTION, [[0.1] * MY_DIM], limit=3)
    assert info.value.code == 101
    assert client.get_load_state("no_such_collection")["state"] == LoadState.NotExist


def test_seed_orm_release_partition_novel_while_a_search_loop_on_poetry_never_fails(
    proxy: ProxyProcess, client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection("book")
    novel_ids = {
        r["book_id"]
        for r in client.query("book", filter="book_id >= 0", partition_names=["novel"], limit=1000)
    }
    assert len(novel_ids) == 600
    with SearchLoop(proxy.uri, "book", "book_intro", 64, partition_names=["poetry"]) as loop:
        connections.connect(uri=proxy.uri, token=ROOT_TOKEN)
        try:
            partition = Partition(Collection("book"), "novel")  # an existing partition
            partition.release()
        finally:
            connections.disconnect("default")
        time.sleep(0.5)
    assert loop.errors == [] and loop.count > 3
    assert client.get_load_state("book", partition_name="novel")["state"] == LoadState.NotLoad
    assert client.get_load_state("book", partition_name="poetry")["state"] == LoadState.Loaded
    obj = cload_of(clean, "book")
    assert obj["spec"]["partitions"] == ["_default", "poetry"]  # every other partition kept
    hits = client.search("book", [[0.0] * 64], anns_field="book_intro", limit=100)
    assert len(hits[0]) == 100 and not {h["book_id"] for h in hits[0]} & novel_ids
    wait_for(
        "novel's segments released from every querynode",
        lambda: not any(p == "novel" for n in clean.nodes for p, _ in clean.held(n, state=None)),
        timeout=30,
    )
    with pytest.raises(MilvusException) as info:
        client.search("book", [[0.0] * 64], anns_field="book_intro", limit=5, partition_names=["novel"])
    assert info.value.code == 201


def test_load_partitions_adds_to_a_load_and_releasing_the_last_is_notload(
    proxy: ProxyProcess, client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_partitions("book", ["novel"])
    assert client.get_load_state("book", partition_name="novel")["state"] == LoadState.Loaded
    assert client.get_load_state("book", partition_name="poetry")["state"] == LoadState.NotLoad
    with SearchLoop(proxy.uri, "book", "book_intro", 64, partition_names=["novel"]) as loop:
        client.load_partitions("book", ["poetry"])  # union, while novel keeps serving
    assert loop.errors == []
    assert cload_of(clean, "book")["spec"]["partitions"] == ["novel", "poetry"]
    assert client.get_load_state("book")["state"] == LoadState.Loaded
    client.release_partitions("book", ["novel"])
    assert cload_of(clean, "book")["spec"]["partitions"] == ["poetry"]
    client.release_partitions("book", ["poetry"])
    assert client.get_load_state("book")["state"] == LoadState.NotLoad
    assert clean.collection_loads() == []
    with pytest.raises(MilvusException) as info:
        client.load_partitions("book", ["no_such_partition"])
    assert info.value.code == 200


def test_replicas_change_online_and_describe_replica_follows(
    proxy: ProxyProcess, client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection("book", replica_number=1)
    assert len(client.describe_replica("book")) == 1
    with SearchLoop(proxy.uri, "book", "book_intro", 64) as loop:
        client.load_collection("book", replica_number=2)
        replicas = client.describe_replica("book")
        assert len(replicas) == 2
        assert not set(replicas[0].group_nodes) & set(replicas[1].group_nodes)  # disjoint node sets
        assert cload_of(clean, "book")["status"]["replicaText"] == "2/2"
        client.load_collection("book", replica_number=1)
        assert len(client.describe_replica("book")) == 1
    assert loop.errors == []
    assert cload_of(clean, "book")["spec"]["replicas"] == 1
    client.load_collection("book")  # loading a loaded collection succeeds (replicas kept)
    assert cload_of(clean, "book")["spec"]["replicas"] == 1


def test_load_fields_change_on_a_loaded_collection_reloads_replica_by_replica_without_failed_searches(
    proxy: ProxyProcess, client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection("book", replica_number=2, load_fields=["book_id", "book_intro", "title"])
    with SearchLoop(proxy.uri, "book", "book_intro", 64, output_fields=["title"]) as loop:
        client.load_collection(
            "book", replica_number=2, load_fields=["book_id", "book_intro", "title", "word_count"]
        )
        time.sleep(0.5)
    assert loop.errors == []
    obj = cload_of(clean, "book")
    assert is_loaded(obj) and "word_count" in obj["status"]["loadedFields"]
    hits = client.search("book", [[0.0] * 64], anns_field="book_intro", limit=3, filter="word_count > 0",
                         output_fields=["word_count"])  # fmt: skip
    assert all(h["entity"]["word_count"] > 0 for h in hits[0])


def test_insufficient_nodes_fails_the_call_with_the_message_and_keeps_what_is_loaded(
    client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection("book", replica_number=1)
    before = cload_of(clean, "book")
    with pytest.raises(MilvusException) as info:
        client.load_collection("book", replica_number=5)
    message = info.value.message
    assert "resource group node not enough[currentNodeNum=3][expectedNodeNum=5]" in message, message
    after = cload_of(clean, "book")
    assert after["spec"]["replicas"] == 1 and is_loaded(after)
    assert before["metadata"]["uid"] == after["metadata"]["uid"]
    assert client.get_load_state("book")["state"] == LoadState.Loaded
    assert len(client.search("book", [[0.0] * 64], anns_field="book_intro", limit=3)[0]) == 3
    # a new load that cannot be met leaves nothing behind
    with pytest.raises(MilvusException) as info:
        client.load_collection(MY_COLLECTION, replica_number=4)
    assert "currentNodeNum=3" in info.value.message
    assert client.get_load_state(MY_COLLECTION)["state"] == LoadState.NotLoad


def test_a_collectionload_made_with_kubectl_is_the_collections_load_state(
    client: MilvusClient, clean: QuerynodePool
) -> None:
    clean.kubectl_apply([collection_load("books-by-hand", {"collection": "book", "partitions": ["poetry"]})])
    clean.wait_state("books-by-hand", "Loaded")
    assert client.get_load_state("book")["state"] == LoadState.Loaded
    assert client.get_load_state("book", partition_name="novel")["state"] == LoadState.NotLoad
    client.load_partitions("book", ["novel"])  # edits that object, creates none
    assert [o["metadata"]["name"] for o in clean.collection_loads()] == ["books-by-hand"]
    assert clean.get("books-by-hand")["spec"]["partitions"] == ["novel", "poetry"]
    client.release_collection("book")
    assert clean.collection_loads() == []


def test_a_load_made_unmeetable_with_kubectl_fails_pymilvus_wait_with_the_condition(
    client: MilvusClient, clean: QuerynodePool
) -> None:
    clean.kubectl_apply([collection_load("too-many", {"collection": "book", "replicas": 6})])
    wait_for(
        "InsufficientNodes at the current generation",
        lambda: clean.condition("too-many", "Ready").get("reason") == "InsufficientNodes",
        timeout=30,
    )
    conn = client._get_connection()
    assert conn.get_load_state("book") == LoadState.Loading  # GetLoadState: asked for, not loaded
    with pytest.raises(MilvusException) as info:
        conn.wait_for_loading_collection("book", timeout=10)  # GetLoadingProgress fails
    assert "expectedNodeNum=6" in info.value.message
    with pytest.raises(MilvusException) as info:
        client.get_load_state("book")  # MilvusClient asks for the progress of a Loading collection
    assert info.value.code == 304
    with pytest.raises(MilvusException):
        client.load_collection("book")  # keeps 6 replicas: fails the same way, changes nothing
    assert clean.get("too-many")["spec"]["replicas"] == 6
