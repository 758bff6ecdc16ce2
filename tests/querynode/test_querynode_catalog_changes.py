"""The catalog of changing data on a real querynode: compaction lineage, retired segments, the
deltas' summary, the generation, and `304 Not Modified` for `If-None-Match` with its ETag."""

from __future__ import annotations

import json
import shutil
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from vectorload.storage.compaction import compact
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing.querynode_harness import TOKEN, QuerynodeFactory, QuerynodeProcess


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def get_catalog(
    qn: QuerynodeProcess, collection: str = "book", if_none_match: str | None = None, token: str = TOKEN
) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(f"{qn.url}/v1/catalog/{collection}")  # noqa: S310 (loopback)
    req.add_header("Authorization", f"Bearer {token}")
    if if_none_match is not None:
        req.add_header("If-None-Match", if_none_match)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            status, headers, payload = resp.status, _lower(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, headers, payload = err.code, _lower(err.headers), err.read()
    return status, headers, json.loads(payload) if payload else None


@pytest.fixture
def root(tiny_root: Path, tmp_path: Path) -> Path:
    """A copy of the tiny sample this test may change."""
    copy = tmp_path / "storage"
    shutil.copytree(tiny_root, copy)
    return copy


def test_etag_304_and_the_change_data_in_the_catalog(querynode_factory: QuerynodeFactory, root: Path) -> None:
    qn = querynode_factory(root, memory_limit="1Gi")
    status, headers, first = get_catalog(qn)
    assert status == 200 and first["deltas"] == {"count": 0, "newestTs": 0}
    etag = headers["etag"]
    assert etag.startswith('"g') and etag.endswith('"') and first["generation"] > 0
    # unchanged: 304, no body, the same tag — in each form a client may send it
    for form in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, headers, body = get_catalog(qn, if_none_match=form)
        assert (status, body, headers["etag"]) == (304, None, etag), form
    assert get_catalog(qn, if_none_match='"stale"')[0] == 200
    # a delete changes it
    writer = CollectionWriter(root)
    delta = writer.write_delta("book", [3, 601, 602], 1000)  # novel holds keys 601-1200
    status, headers, after_delete = get_catalog(qn, if_none_match=etag)
    assert status == 200 and headers["etag"] != etag
    assert after_delete["deltas"] == {"count": 1, "newestTs": 1000}
    assert after_delete["generation"] == delta.seq
    # a compaction: the new segment names its sources, the sources are listed as retired
    result = compact(root, "book", "novel", ["novel-0000", "novel-0001"], num_threads=1)
    assert result.segment is not None
    status, headers2, after = get_catalog(qn, if_none_match=headers["etag"])
    assert status == 200 and headers2["etag"] != headers["etag"]
    novel = next(p for p in after["partitions"] if p["name"] == "novel")
    live = {s["id"]: s for s in novel["segments"]}
    assert set(live) == {"novel-0002", result.segment.segment_id}
    new = live[result.segment.segment_id]
    assert (
        new["compactedFrom"] == ["novel-0000", "novel-0001"]
        and new["generation"] == result.segment.generation
    )
    assert new["rows"] == 400 - 2  # 601 and 602 were deleted
    assert "$ts" in new["bytes"] and "$ts" in new["memoryBytes"]
    reader = FilesystemReader(root)
    assert novel["retired"] == [
        {
            "id": sid,
            "rows": 200,
            "replacedBy": [result.segment.segment_id],
            "compactedFrom": [],
            "generation": reader.segment("book", "novel", sid).generation,
        }
        for sid in ("novel-0000", "novel-0001")
    ]
    assert after["generation"] > after_delete["generation"]
    status, _, body = get_catalog(qn, "nope", if_none_match=etag)
    assert (status, body["error"]["reason"]) == (404, "CollectionNotFound")
    assert get_catalog(qn, if_none_match=etag, token="wrong")[0] == 401


def test_a_poll_that_finds_nothing_changed_costs_a_304(
    querynode_factory: QuerynodeFactory, tmp_path: Path
) -> None:
    """A collection of 60 segments: the 304 skips listing and parsing every manifest."""
    from vectorload.storage.sample import write_sample

    root = tmp_path / "many"
    write_sample(root, size="tiny", seed=0, num_threads=1, segment_rows=30)  # 20 segments per partition
    qn = querynode_factory(root, memory_limit="1Gi")
    status, headers, catalog = get_catalog(qn)
    assert status == 200 and sum(len(p["segments"]) for p in catalog["partitions"]) == 60
    etag = headers["etag"]

    def timed(tag: str | None) -> float:
        started = time.perf_counter()
        status, _, _ = get_catalog(qn, if_none_match=tag)
        assert status == (304 if tag else 200)
        return time.perf_counter() - started

    for _ in range(5):
        timed(None), timed(etag)
    full = statistics.median(timed(None) for _ in range(30))
    unchanged = statistics.median(timed(etag) for _ in range(30))
    print(
        f"catalog of 60 segments: 200 in {full * 1e3:.2f} ms, 304 in {unchanged * 1e3:.2f} ms (median of 30)"
    )
    assert unchanged < full


async def test_the_operator_catalog_cache_polls_with_304s_and_sees_a_new_segment_at_once(
    querynode_factory: QuerynodeFactory, root: Path
) -> None:
    """The operator's `CatalogCache` against a real querynode: unchanged polls are 304s (the
    cached catalog object is kept), a segment published meanwhile is seen by the next poll."""
    import asyncio

    import numpy as np

    from vectorload.storage.sample import generate_rows, resolve_spec
    from vectorload_operator.catalog import CatalogCache
    from vectorload_operator.clients import QuerynodeClients
    from vectorload_operator.core import NodeState
    from vectorload_operator.distribution import NodeView
    from vectorload_operator.pods import QuerynodePod

    qn = querynode_factory(root, memory_limit="1Gi")
    host, port = qn.url.removeprefix("http://").split(":")
    pod = QuerynodePod("ns", "qn-0", host, int(port), True, {})
    views = {pod.key: NodeView(pod, NodeState(pod.key, True, pod.url), 0.0)}
    clients = QuerynodeClients(lambda: TOKEN)
    cache = CatalogCache(clients, interval=0.05)
    changed = asyncio.Event()
    poller = asyncio.create_task(cache.run(lambda: {("ns", "book")}, lambda: views, changed.set))
    try:
        await asyncio.wait_for(changed.wait(), timeout=10)  # the first fetch
        changed.clear()
        first = cache.get(("ns", "book"))
        assert first is not None and first.found and first.etag
        fetches = cache.fetches
        await asyncio.sleep(0.5)
        assert not changed.is_set() and cache.unchanged >= 3 and cache.token_polls >= 3
        assert cache.fetches == fetches  # unchanged: one token request per poll, no catalog request
        assert cache.get(("ns", "book")).catalog is first.catalog  # type: ignore[union-attr]
        rows = generate_rows(0, resolve_spec("tiny"), 0, 0, 10)
        published = time.monotonic()
        CollectionWriter(root).write_segment(
            "book", "_default", "new-0000", rows.vectors, rows.primary_keys, rows.scalars, rows.dynamic,
            num_threads=1, timestamps=np.arange(1, 11),
        )  # fmt: skip
        await asyncio.wait_for(changed.wait(), timeout=10)
        seen = time.monotonic() - published
        entry = cache.get(("ns", "book"))
        assert entry is not None and entry.catalog is not None
        ids = [s.id for p in entry.catalog.partitions if p.name == "_default" for s in p.segments]
        assert "new-0000" in ids
        print(
            f"a published segment reached the catalog cache {seen * 1e3:.0f} ms later (poll interval 50 ms)"
        )
        assert seen < 1.0
    finally:
        poller.cancel()
        await clients.close()


def test_catalog_tokens_of_many_collections_at_once(querynode_factory: QuerynodeFactory, root: Path) -> None:
    qn = querynode_factory(root, memory_limit="1Gi")
    _, headers, _ = get_catalog(qn)
    status, answer = qn.request("POST", "/v1/catalog/tokens", {"collections": ["book", "nope", "book"]})
    assert status == 200 and answer == {"tokens": {"book": headers["etag"]}}
    CollectionWriter(root).write_delta("book", [5], 9)
    status, moved = qn.request("POST", "/v1/catalog/tokens", {"collections": ["book"]})
    assert status == 200 and moved["tokens"]["book"] != headers["etag"]
    assert moved["tokens"]["book"] == get_catalog(qn)[1]["etag"]
    status, answer = qn.request("POST", "/v1/catalog/tokens", {"collections": ["bad name"]})
    assert (status, answer["error"]["reason"]) == (400, "InvalidName")
    status, answer = qn.request("POST", "/v1/catalog/tokens", {"collections": ["c"] * 5000})
    assert (status, answer["error"]["reason"]) == (400, "InvalidRequest") and "4096" in answer["error"][
        "message"
    ]
    assert qn.request("POST", "/v1/catalog/tokens", {"collections": []}, token="wrong")[0] == 401
