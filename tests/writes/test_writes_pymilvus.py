"""The write path with pymilvus against real processes: create → insert → index → load → search
finds the inserted rows; rows inserted into a loaded collection are found within the freshness
bound; upsert replaces; delete (ids and filter) hides; drop cleans storage; the quick-setup form."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import QuerynodePool
from vectorload_dev.testing.proxy_harness import ROOT_TOKEN, ProxyProcess

DIM = 8


def make_schema(client: MilvusClient, auto_id: bool = False, dynamic: bool = True) -> Any:
    schema = client.create_schema(auto_id=auto_id, enable_dynamic_field=dynamic)
    schema.add_field("id", DataType.INT64, is_primary=True, auto_id=auto_id)
    schema.add_field("title", DataType.VARCHAR, max_length=32)
    schema.add_field("count", DataType.INT64)
    schema.add_field("score", DataType.FLOAT)
    schema.add_field("flag", DataType.BOOL)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    return schema


def rows(first: int, n: int, seed: int = 0, title: str = "t") -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed + first)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    return [
        {
            "id": first + i,
            "title": f"{title}{first + i}",
            "count": first + i,
            "score": float(i) / 2,
            "flag": i % 2 == 0,
            "vec": [float(x) for x in vecs[i]],
            "genre": "poem" if i % 3 == 0 else "novel",
        }
        for i in range(n)
    ]


def index_params(client: MilvusClient, metric: str = "L2") -> Any:
    params = client.prepare_index_params()
    params.add_index(
        field_name="vec", index_type="HNSW", metric_type=metric, params={"M": 8, "efConstruction": 64}
    )
    return params


def top1(client: MilvusClient, name: str, vector: list[float], **kw: Any) -> Any:
    hits = client.search(name, data=[vector], limit=1, anns_field="vec", **kw)[0]
    return hits[0]["id"] if hits else None


def ids_of(client: MilvusClient, name: str, expr: str = "id >= 0") -> list[int]:
    return sorted(r["id"] for r in client.query(name, filter=expr, output_fields=["id"], limit=16384))


def test_create_insert_index_load_search_upsert_delete_drop(
    wclient: MilvusClient, write_proxy: ProxyProcess, writes_pool: QuerynodePool, write_root: Path
) -> None:
    client, name = wclient, "flow"
    client.create_collection(name, schema=make_schema(client))
    assert client.has_collection(name) and name in client.list_collections()
    described = client.describe_collection(name)
    assert [f["name"] for f in described["fields"]] == ["id", "title", "count", "score", "flag", "vec"]
    assert described["enable_dynamic_field"]
    client.create_partition(name, "extra")
    assert client.list_partitions(name) == ["_default", "extra"]
    first = rows(0, 300)
    result = client.insert(name, first)
    assert result["insert_count"] == 300 and list(result["ids"]) == list(range(300))
    client.insert(name, rows(1000, 20), partition_name="extra")
    # no index yet: loading fails as Milvus does
    with pytest.raises(MilvusException) as info:
        client.load_collection(name)
    assert info.value.code == 700 and "index not found" in info.value.message
    client.create_index(name, index_params(client))
    assert client.list_indexes(name) == ["vec"]
    described_index = client.describe_index(name, "vec")
    assert described_index["index_type"] == "HNSW" and described_index["metric_type"] == "L2"
    assert described_index["M"] == "8"
    client.flush(name)
    assert client.get_collection_stats(name)["row_count"] == 320
    client.load_collection(name)
    assert client.get_load_state(name)["state"].name == "Loaded"
    assert top1(client, name, first[17]["vec"]) == 17
    assert ids_of(client, name) == [*range(300), *range(1000, 1020)]
    got = client.get(name, ids=[5], output_fields=["title", "genre", "score"])
    assert got[0]["title"] == "t5" and got[0]["genre"] == "novel" and got[0]["score"] == 2.5

    # inserted into a loaded collection: searchable without any user action, within the bound
    fresh = rows(5000, 10, seed=7)
    started = time.monotonic()
    client.insert(name, fresh)
    wait_for(
        "inserted rows searchable",
        lambda: top1(client, name, fresh[3]["vec"]) == 5003,
        timeout=10,
        interval=0.05,
    )
    took = time.monotonic() - started
    assert took < 3.0, f"insert → visible took {took:.2f} s"
    assert client.get_load_state(name)["state"].name == "Loaded"

    # upsert replaces: one version of each key, the new one
    moved = rows(10, 3, seed=99, title="up")
    out = client.upsert(name, moved)
    assert out["upsert_count"] == 3
    wait_for(
        "upserted titles",
        lambda: (
            [r["title"] for r in client.get(name, ids=[10, 11, 12], output_fields=["title"])]
            == ["up10", "up11", "up12"]
        ),
        timeout=10,
        interval=0.05,
    )
    assert top1(client, name, moved[1]["vec"]) == 11
    hits = client.search(name, data=[moved[1]["vec"]], limit=400, anns_field="vec")[0]
    assert len({h["id"] for h in hits}) == len(hits)  # never a key twice

    # delete by ids, then by filter
    out = client.delete(name, ids=[1, 2, 3])
    assert out["delete_count"] == 3
    wait_for("deleted ids gone", lambda: client.get(name, ids=[1, 2, 3]) == [], timeout=10, interval=0.05)
    out = client.delete(name, filter="count >= 290 and count < 300")
    assert out["delete_count"] == 10
    wait_for(
        "filter-deleted rows gone",
        lambda: ids_of(client, name, "count >= 280 and count < 300") == list(range(280, 290)),
        timeout=10,
        interval=0.05,
    )
    assert top1(client, name, first[2]["vec"]) != 2
    assert len(ids_of(client, name)) == 300 + 20 + 10 - 3 - 10

    # dropping a partition of a loaded collection is refused; drop releases and removes storage
    with pytest.raises(MilvusException, match="partition is loaded"):
        client.drop_partition(name, "extra")
    with pytest.raises(MilvusException, match="release it first"):
        client.drop_index(name, "vec")
    client.drop_collection(name)
    assert not client.has_collection(name)
    assert not (write_root / name).exists()
    assert not writes_pool.collection_loads()


def test_quick_setup_auto_id_and_cosine(wclient: MilvusClient) -> None:
    client, name = wclient, "quick"
    client.create_collection(name, dimension=DIM)  # pymilvus creates an AUTOINDEX and loads
    try:
        assert client.get_load_state(name)["state"].name == "Loaded"
        idx = client.describe_index(name, "vector")
        assert (idx["metric_type"], idx["index_type"]) == ("COSINE", "HNSW")  # AUTOINDEX is HNSW
        rng = np.random.default_rng(3)
        data = [
            {"id": i, "vector": [float(x) for x in rng.normal(size=DIM)], "color": f"c{i}"} for i in range(50)
        ]
        client.insert(name, data)
        wait_for(
            "quick rows searchable",
            lambda: top1_v(client, name, data[20]["vector"]) == 20,
            timeout=10,
            interval=0.05,
        )
        hit = client.search(name, data=[data[20]["vector"]], limit=1, output_fields=["color"])[0][0]
        assert hit["entity"]["color"] == "c20" and hit["distance"] == pytest.approx(1.0, abs=1e-4)
    finally:
        client.drop_collection(name)

    auto = "autoid"
    client.create_collection(auto, schema=make_schema(client, auto_id=True, dynamic=False))
    try:
        assert client.describe_collection(auto)["auto_id"]
        data = rows(0, 5)
        for r in data:
            del r["id"], r["genre"]
        out = client.insert(auto, data)
        ids = list(out["ids"])
        assert len(set(ids)) == 5 and all(isinstance(i, int) and i > 0 for i in ids)
        client.create_index(auto, index_params(client, "IP"))
        client.load_collection(auto)
        wait_for(
            "auto ids queryable",
            lambda: ids_of(client, auto, "count >= 0") == sorted(ids),
            timeout=10,
            interval=0.05,
        )
    finally:
        client.drop_collection(auto)


def top1_v(client: MilvusClient, name: str, vector: list[float]) -> Any:
    hits = client.search(name, data=[vector], limit=1)[0]
    return hits[0]["id"] if hits else None


def test_insert_into_an_ingested_collection_builds_like_its_segments(
    wclient: MilvusClient, write_root: Path
) -> None:
    from vectorload.storage.reader import FilesystemReader
    from vectorload.storage.writer import CollectionWriter
    from vectorload_dev.testing.storage import segment_inputs, small_schema

    schema = small_schema(name="ingested")
    writer = CollectionWriter(write_root)
    writer.create_collection(schema)
    writer.write_segment(
        "ingested", "_default", "seg-0", **segment_inputs(rows=30), M=8, ef_construction=40, num_threads=1
    )
    try:
        assert sorted(wclient.list_indexes("ingested")) == ["cover", "intro"]
        rng = np.random.default_rng(1)
        row = {
            "book_id": 1000, "title": "new", "word_count": 1, "rating": 2.0, "in_print": True,
            "intro": [float(x) for x in rng.normal(size=8)], "cover": [0.1, 0.2, 0.3, 0.4],
        }  # fmt: skip
        assert wclient.insert("ingested", [row])["insert_count"] == 1
        wclient.flush("ingested")
        reader = FilesystemReader(write_root)
        segs = {m.segment_id: m for m in reader.segments("ingested", "_default")}
        new = [m for sid, m in segs.items() if sid != "seg-0"]
        assert len(new) == 1 and new[0].rows == 1 and new[0].has_timestamps
        assert new[0].index_params == segs["seg-0"].index_params  # so the compactor can merge them
    finally:
        wclient.drop_collection("ingested")


def test_an_upserted_key_never_vanishes_while_its_new_row_loads(
    wclient: MilvusClient, write_proxy: ProxyProcess
) -> None:
    """The old row's delete waits until every load holds the new row (status
    loadedCatalogGeneration): a reader polling the key across two querynodes never finds none."""
    import threading

    client, name = wclient, "upserts"
    client.create_collection(name, schema=make_schema(client))
    client.create_index(name, index_params(client))
    client.load_collection(name)
    try:
        for i in range(4):  # segments on both querynodes
            client.insert(name, rows(i * 10, 10))
            client.flush(name)
        wait_for("rows visible", lambda: len(ids_of(client, name)) == 40, timeout=20, interval=0.05)
        stop = threading.Event()
        empty: list[int] = []
        polls = [0]

        def reader() -> None:
            c = MilvusClient(uri=write_proxy.uri, token=ROOT_TOKEN)
            while not stop.is_set():
                if not c.get(name, ids=[5]):
                    empty.append(polls[0])
                polls[0] += 1
            c.close()

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for n in range(6):
                client.upsert(name, rows(5, 1, seed=100 + n, title=f"v{n}-"))
                client.flush(name)
            wait_for(
                "the last version",
                lambda: [r["title"] for r in client.get(name, ids=[5], output_fields=["title"])] == ["v5-5"],
                timeout=20,
                interval=0.05,
            )
        finally:
            stop.set()
            thread.join(30)
        assert polls[0] > 20 and not empty, f"key 5 missing in {len(empty)} of {polls[0]} reads"
    finally:
        client.drop_collection(name)


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample of the exposition (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def test_write_path_metrics(wclient: MilvusClient, write_proxy: ProxyProcess) -> None:
    """Rows by operation, group commits (fewer fsyncs than records under concurrency), the seal
    lag back at 0 once sealed, seal durations: what the dashboard's write-path row plots."""
    client, name = wclient, "metered"
    before = write_proxy.metrics()
    client.create_collection(name, schema=make_schema(client), index_params=index_params(client))
    try:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # concurrent inserts share fsyncs
            list(pool.map(lambda k: client.insert(name, rows(k * 10, 10)), range(40)))
        client.upsert(name, rows(0, 5))
        client.delete(name, ids=[1, 2, 3])
        client.flush(name)
        after = write_proxy.metrics()

        def delta(metric_name: str, labels: str = "") -> float:
            return metric(after, metric_name, labels) - metric(before, metric_name, labels)

        assert delta("vectorload_proxy_rows_written_total", 'op="insert"') == 400
        assert delta("vectorload_proxy_rows_written_total", 'op="upsert"') == 5
        assert delta("vectorload_proxy_rows_written_total", 'op="delete"') == 3
        records, fsyncs = (
            delta("vectorload_proxy_wal_records_total"),
            delta("vectorload_proxy_wal_fsyncs_total"),
        )
        assert records == 42 and 1 <= fsyncs <= records
        assert delta("vectorload_proxy_wal_fsync_duration_seconds_count") == fsyncs
        assert delta("vectorload_proxy_seal_duration_seconds_count") >= 1
        # the seal lag goes back to 0 (the upsert's deletes wait until its new rows are loaded)
        wait_for(
            "nothing unsealed",
            lambda: metric(write_proxy.metrics(), "vectorload_proxy_unsealed_records") == 0,
            timeout=30,
        )
    finally:
        client.drop_collection(name)
