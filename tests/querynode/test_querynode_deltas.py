"""A real querynode follows the deltas of what it holds: a delete published in storage
(`write_delta`) hides the row from search, query and get within the follower's poll; an upsert
(a delete plus a newer row in a new segment) shows only the new version once both are held; a
segment loaded after a delete never shows the deleted row."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from vectorload_dev.testing import wait_for
from vectorload_dev.testing.querynode_harness import DATA_TOKEN, QuerynodeFactory, QuerynodeProcess, load_all
from vectorload_dev.testing.storage import segment_inputs, writer_with_collection


def _search(qn: QuerynodeProcess, vector: list[float], k: int, **extra: Any) -> list[int]:
    body = {"collection": "book", "vectors": [vector], "topK": k, "annsField": "intro", **extra}
    status, answer = qn.request("POST", "/v1/search", body, token=DATA_TOKEN)
    assert status == 200, answer
    return [hit["id"] for hit in answer["results"][0]]


def _query(qn: QuerynodeProcess, expr: str, **extra: Any) -> list[dict[str, Any]]:
    body = {"collection": "book", "filter": expr, "limit": 1000, **extra}
    status, answer = qn.request("POST", "/v1/query", body, token=DATA_TOKEN)
    assert status == 200, answer
    return list(answer["rows"])


def _get(qn: QuerynodeProcess, ids: list[int], **extra: Any) -> list[dict[str, Any]]:
    body = {"collection": "book", "ids": ids, **extra}
    status, answer = qn.request("POST", "/v1/get", body, token=DATA_TOKEN)
    assert status == 200, answer
    return list(answer["rows"])


def test_deletes_and_upserts_hide_rows_from_search_query_and_get(
    querynode_factory: QuerynodeFactory, tmp_path: Path
) -> None:
    root = tmp_path / "storage"
    writer = writer_with_collection(root)
    inputs = segment_inputs(rows=300, first_pk=0)
    writer.write_segment("book", "_default", "s0", **inputs, num_threads=1, timestamps=np.full(300, 10))
    qn = querynode_factory(root, memory_limit="1Gi")
    load_all(qn, root, "book")
    vectors = inputs["vectors"]["intro"]
    target = [float(x) for x in vectors[7]]
    assert _search(qn, target, 5)[0] == 7
    assert [r["book_id"] for r in _get(qn, [7, 8])] == [7, 8]

    started = time.monotonic()
    writer.write_delta("book", [7, 8], 20)
    wait_for("the deleted row leaves search", lambda: 7 not in _search(qn, target, 5), interval=0.02)
    took = time.monotonic() - started
    assert took < 2.0, took
    # every path: unfiltered search (over-fetch), filtered search, query, get
    hits = _search(qn, target, 10)
    assert 7 not in hits and 8 not in hits and len(hits) == 10
    filtered = _search(qn, target, 10, filter="book_id < 20")
    assert 7 not in filtered and 8 not in filtered and len(filtered) == 10
    assert {r["book_id"] for r in _query(qn, "book_id < 10")} == {0, 1, 2, 3, 4, 5, 6, 9}
    assert [r["book_id"] for r in _get(qn, [6, 7, 8, 9])] == [6, 9]
    # a delete older than the rows' $ts hides nothing
    writer.write_delta("book", [9], 5)
    time.sleep(0.5)
    assert [r["book_id"] for r in _get(qn, [9])] == [9]

    # an upsert of 3: a delete at 30 and a new row at 30 in a new segment, far from the old vector
    moved = segment_inputs(rows=1, first_pk=3, seed=9)
    moved["scalars"]["title"] = ["upserted"]
    writer.write_segment("book", "_default", "s1", **moved, num_threads=1, timestamps=[30])
    writer.write_delta("book", [3], 30)
    load_all(qn, root, "book")
    wait_for(
        "only the new version of 3",
        lambda: [r["title"] for r in _get(qn, [3], outputFields=["title"])] == ["upserted"],
        interval=0.02,
    )
    assert [r["book_id"] for r in _query(qn, "book_id == 3")] == [3]
    new_vector = [float(x) for x in moved["vectors"]["intro"][0]]
    hits = _search(qn, new_vector, 300)
    assert hits.count(3) == 1 and len(hits) == len(set(hits)) == 298  # 7, 8 deleted; 3 once

    # many hidden rows: the filter path (more than the over-fetch bound) gives the same rule
    writer.write_delta("book", list(range(100, 300)), 40)
    wait_for("200 more rows hidden", lambda: len(_query(qn, "book_id >= 0")) == 98)
    hits = _search(qn, target, 50)
    assert len(hits) == 50 and not any(100 <= h < 300 or h in (7, 8) for h in hits)

    # a node that loads after the deletes never shows the deleted rows
    late = querynode_factory(root, memory_limit="1Gi")
    load_all(late, root, "book")
    assert [r["book_id"] for r in _get(late, [3, 7, 8, 150])] == [3]
    assert 7 not in _search(late, target, 5)
