"""The async client against real querynodes, and `vectorload search --nodes` fanning out to two
nodes that hold different partitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vectorload.client import QuerynodeClient, QuerynodeError
from vectorload.client.cli import search_main
from vectorload.storage.sample import PARTITIONS, generate_segment, resolve_spec, sample_queries
from vectorload_dev.testing import free_port, wait_for
from vectorload_dev.testing.querynode_harness import DATA_TOKEN, TOKEN, QuerynodeFactory, QuerynodeProcess

SPEC = resolve_spec("tiny", segment_rows=200)  # as conftest.tiny_root writes it


@pytest.fixture(scope="module")
def two_nodes(
    module_querynode_factory: QuerynodeFactory, tiny_root: Path
) -> tuple[QuerynodeProcess, QuerynodeProcess]:
    a = module_querynode_factory(tiny_root)
    b = module_querynode_factory(tiny_root)
    for qn, partitions in ((a, ["_default", "novel"]), (b, ["poetry"])):
        for p in partitions:
            prefix = p.strip("_")
            ids = [f"{prefix}-{i:04d}" for i in range(SPEC.segments)]
            qn.request("POST", "/v1/segments/load", {"collection": "book", "partition": p, "segments": ids})
    for qn, n in ((a, 6), (b, 3)):
        wait_for(
            f"{n} segments loaded on {qn.node_name}",
            lambda qn=qn, n=n: (
                sum(s["state"] == "loaded" for s in qn.request("GET", "/v1/distribution")[1]["segments"]) == n
            ),
        )
    return a, b


async def test_async_client_covers_every_endpoint(
    querynode_factory: QuerynodeFactory, tiny_root: Path
) -> None:
    qn = querynode_factory(tiny_root)
    async with QuerynodeClient(qn.url, TOKEN) as client:
        assert await client.healthz() and await client.readyz()
        assert "vectorload_querynode_memory_capacity_bytes" in await client.metrics()
        assert await client.collections() == ["book"]
        catalog = await client.catalog("book")
        assert [p.name for p in catalog.partitions] == list(PARTITIONS)
        assert catalog.schema.primary_key.name == "book_id"  # typed by storage's schema parser
        results = await client.load(
            "book", "novel", ["novel-0000", "nope"], fields=None, skip_dynamic_field=False
        )
        assert [r.state for r in results] == ["loading", "refused"]
        for _ in range(200):
            dist = await client.distribution()
            if dist.segments and dist.segments[0].state == "loaded":
                break
        assert dist.segments[0].state == "loaded" and dist.node == qn.node_name
        hits = await client.search(
            "book", [[0.0] * 64], top_k=3, anns_field="book_intro", output_fields=["title"]
        )
        assert len(hits[0]) == 3 and "title" in hits[0][0].fields
        rows = await client.query("book", "book_id < 605", output_fields=["genre"], limit=2)
        assert [r["book_id"] for r in rows] == [601, 602]
        assert [r["book_id"] for r in await client.get("book", [603])] == [603]
        with pytest.raises(QuerynodeError) as info:
            await client.search("book", [[0.0] * 3], anns_field="book_intro")
        assert (info.value.status, info.value.reason) == (400, "DimensionMismatch")
        assert await client.release("book", [("novel", "novel-0000")]) == 1
        assert await client.release("book") == 0
    async with QuerynodeClient(qn.url, "wrong") as client:
        with pytest.raises(QuerynodeError) as info:
            await client.distribution()
        assert (info.value.status, info.value.reason) == (401, "Unauthorized")
    async with QuerynodeClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=2) as client:
        with pytest.raises(QuerynodeError) as info:
            await client.collections()
        assert (info.value.status, info.value.reason) == (0, "Unreachable")
        assert not await client.healthz()


def truth() -> dict[str, np.ndarray]:
    segs = [generate_segment(0, SPEC, p, s) for p in range(len(PARTITIONS)) for s in range(SPEC.segments)]
    return {
        "ids": np.concatenate([s.primary_keys for s in segs]),
        "vectors": np.concatenate([s.vectors["book_intro"] for s in segs]),
        "partition": np.array([s.partition for s in segs for _ in s.primary_keys]),
    }


def test_search_cli_fans_out_and_merges(
    two_nodes: tuple[QuerynodeProcess, QuerynodeProcess],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = two_nodes
    data = truth()
    query = sample_queries(1, 1, "book_intro", SPEC)[0]
    nodes = f"{a.url},{b.url}"
    argv = [
        "--nodes",
        nodes,
        "--collection",
        "book",
        "--vector",
        json.dumps(query.tolist()),
        "--anns-field",
        "book_intro",
    ]
    # the data API is closed: without a token the search is refused
    monkeypatch.delenv("VECTORLOAD_TOKEN", raising=False)
    monkeypatch.delenv("VECTORLOAD_DATA_TOKEN", raising=False)
    assert search_main(argv) == 1
    assert "Unauthorized" in capsys.readouterr().err
    monkeypatch.setenv("VECTORLOAD_DATA_TOKEN", DATA_TOKEN)
    assert search_main([*argv, "--top-k", "10", "--json", "--output-fields", "title"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"][0]
    exact = data["ids"][np.argsort(((data["vectors"] - query) ** 2).sum(axis=1))[:10]]
    assert len({h["id"] for h in hits}) == 10
    assert len({h["id"] for h in hits} & set(exact.tolist())) >= 9
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    assert {h["partition"] for h in hits} <= set(PARTITIONS)
    # only node b holds poetry: node a's PartitionNotLoaded counts as "nothing here"
    assert search_main([*argv, "--top-k", "5", "--partition", "poetry", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"][0]
    assert len(hits) == 5 and {h["partition"] for h in hits} == {"poetry"}
    # table output with a filter, and --random with the dimension from the catalog
    monkeypatch.setenv("VECTORLOAD_TOKEN", TOKEN)  # --random reads the dimension from the catalog
    random_argv = [
        "--nodes",
        nodes,
        "--collection",
        "book",
        "--random",
        "--seed",
        "3",
        "--anns-field",
        "cover",
    ]
    assert (
        search_main([*random_argv, "--top-k", "4", "--filter", "genre like 's%'", "--output-fields", "genre"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "id", "distance", "partition", "genre"] and len(lines) == 5
    assert all(line.rstrip().split("  ")[-1].strip().startswith('"s') for line in lines[1:])
    # errors come out as a message and exit code 1
    assert (
        search_main(
            ["--nodes", nodes, "--collection", "book", "--vector", "[1, 2]", "--anns-field", "book_intro"]
        )
        == 1
    )
    assert "DimensionMismatch" in capsys.readouterr().err
    assert search_main(["--nodes", nodes, "--vector", "[1]"]) == 1
    assert "--collection" in capsys.readouterr().err
