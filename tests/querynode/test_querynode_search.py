"""Data API against a real querynode process holding the `small` sample and `metrics` collection."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from vectorload.storage.sample import PARTITIONS, generate_segment, resolve_spec, sample_queries
from vectorload_dev.testing.querynode_harness import (
    DATA_TOKEN,
    METRICS_COLLECTION,
    METRICS_DIM,
    QuerynodeFactory,
    QuerynodeProcess,
    load_all,
    metrics_data,
)
from vectorload_querynode.metrics import METRIC_NAMES

REPO = Path(__file__).resolve().parents[2]
SPEC = resolve_spec("small", segment_rows=850)  # as conftest.small_root writes it


@pytest.fixture(scope="module")
def node(module_querynode_factory: QuerynodeFactory, small_root: Path) -> QuerynodeProcess:
    qn = module_querynode_factory(small_root, memory_limit="2Gi")
    load_all(qn, small_root, "book")
    load_all(qn, small_root, METRICS_COLLECTION)
    return qn


@pytest.fixture(scope="module")
def book() -> dict[str, Any]:
    """Ground truth of the small sample, concatenated in (partition, segment) order."""
    segs = [generate_segment(0, SPEC, p, s) for p in range(len(PARTITIONS)) for s in range(SPEC.segments)]
    return {
        "book_id": np.concatenate([s.primary_keys for s in segs]),
        "book_intro": np.concatenate([s.vectors["book_intro"] for s in segs]),
        "cover": np.concatenate([s.vectors["cover"] for s in segs]),
        "rating": np.concatenate([s.scalars["rating"] for s in segs]),
        "in_print": np.concatenate([s.scalars["in_print"] for s in segs]),
        "title": [t for s in segs for t in s.scalars["title"]],
        "genre": np.array([m["genre"] for s in segs for m in s.dynamic], dtype=object),
        "year": np.array([m["year"] for s in segs for m in s.dynamic]),
        "partition": np.array([s.partition for s in segs for _ in range(len(s.primary_keys))], dtype=object),
    }


def brute_force(
    data: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], metric: str, k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Row positions and distances of the exact top-k, in the documented convention."""
    if metric == "l2":
        d = ((queries[:, None, :] - data[None, :, :]) ** 2).sum(axis=2)
    elif metric == "ip":
        d = 1.0 - queries @ data.T
    else:
        qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        dn = data / np.linalg.norm(data, axis=1, keepdims=True)
        d = 1.0 - qn @ dn.T
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1).astype(np.float32)


def search(qn: QuerynodeProcess, **body: Any) -> list[list[dict[str, Any]]]:
    status, answer = qn.request("POST", "/v1/search", body, token=DATA_TOKEN)
    assert status == 200, answer
    return list(answer["results"])


def recall(got: list[list[Any]], truth: list[list[Any]]) -> float:
    return sum(len(set(g) & set(t)) for g, t in zip(got, truth, strict=True)) / sum(len(t) for t in truth)


@pytest.mark.parametrize(("field", "metric"), [("v_l2", "l2"), ("v_ip", "ip"), ("v_cos", "cosine")])
def test_recall_and_distances_per_metric(node: QuerynodeProcess, field: str, metric: str) -> None:
    data = np.concatenate([metrics_data(s)["vectors"][field] for s in range(2)])
    pks = np.concatenate([metrics_data(s)["pks"] for s in range(2)])
    queries = np.random.default_rng(11).standard_normal((25, METRICS_DIM)).astype(np.float32)
    if metric == "ip":
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    results = search(node, collection=METRICS_COLLECTION, vectors=queries.tolist(), annsField=field, topK=10)
    idx, _dist = brute_force(data, queries, metric, 10)
    got = [[h["id"] for h in hits] for hits in results]
    assert recall(got, pks[idx].tolist()) >= 0.95
    by_pk = {int(p): i for i, p in enumerate(pks)}
    for qi, hits in enumerate(results):
        distances = [h["distance"] for h in hits]
        assert distances == sorted(distances)
        for h in hits:  # each reported distance is the true one for that row
            row = by_pk[h["id"]]
            _, exact = brute_force(data[row : row + 1], queries[qi : qi + 1], metric, 1)
            assert h["distance"] == pytest.approx(float(exact[0, 0]), rel=1e-3, abs=1e-4)


@pytest.mark.parametrize(("field", "metric"), [("book_intro", "l2"), ("cover", "cosine")])
def test_recall_on_the_sample(node: QuerynodeProcess, book: dict[str, Any], field: str, metric: str) -> None:
    queries = sample_queries(5, 20, field, SPEC)
    results = search(node, collection="book", vectors=queries.tolist(), annsField=field, topK=10)
    idx, _ = brute_force(book[field], queries, metric, 10)
    got = [[h["id"] for h in hits] for hits in results]
    assert recall(got, book["book_id"][idx].tolist()) >= 0.95


@pytest.mark.parametrize(
    ("text", "mask_of"),
    [
        (
            "genre == 'haiku' and rating > 4",
            lambda b: (b["genre"] == "haiku") & (b["rating"] > 4),
        ),  # sparse: exact
        ("in_print", lambda b: b["in_print"]),  # broad: hnswlib filter callable
        (
            "year >= 1900 and year < 2000 or rating < 1.5",
            lambda b: ((b["year"] >= 1900) & (b["year"] < 2000)) | (b["rating"] < 1.5),
        ),
        (
            "title like 'Silent%' and not in_print",
            lambda b: np.array([t.startswith("Silent") for t in b["title"]]) & ~b["in_print"],
        ),
    ],
)
def test_filtered_search_is_correct(
    node: QuerynodeProcess, book: dict[str, Any], text: str, mask_of: Any
) -> None:
    mask = np.asarray(mask_of(book), dtype=bool)
    assert 0 < mask.sum() < len(mask)
    queries = sample_queries(9, 10, "book_intro", SPEC)
    results = search(
        node, collection="book", vectors=queries.tolist(), annsField="book_intro", topK=10, filter=text
    )
    allowed = set(book["book_id"][mask].tolist())
    for hits in results:
        assert hits and all(h["id"] in allowed for h in hits)
    idx, _ = brute_force(book["book_intro"][mask], queries, "l2", 10)
    truth = book["book_id"][mask][idx].tolist()
    assert recall([[h["id"] for h in hits] for hits in results], truth) >= 0.95


def test_filter_matching_nothing_returns_empty_lists(node: QuerynodeProcess) -> None:
    results = search(
        node, collection="book", vectors=[[0.0] * 16] * 2, annsField="cover", filter="book_id < 0"
    )
    assert results == [[], []]


def test_partitions_and_output_fields(node: QuerynodeProcess, book: dict[str, Any]) -> None:
    queries = sample_queries(3, 4, "book_intro", SPEC)
    results = search(
        node,
        collection="book",
        vectors=queries.tolist(),
        annsField="book_intro",
        topK=7,
        partitions=["poetry"],
        outputFields=["title", "genre", "rating", "in_print", "$meta"],
        ef=200,
    )
    by_id = {int(pk): i for i, pk in enumerate(book["book_id"])}
    for hits in results:
        assert len(hits) == 7
        for h in hits:
            row = by_id[h["id"]]
            assert h["partition"] == "poetry" == book["partition"][row]
            fields = h["fields"]
            assert fields["title"] == book["title"][row]
            assert fields["genre"] == book["genre"][row] == fields["$meta"]["genre"]
            assert fields["rating"] == pytest.approx(float(book["rating"][row]))
            assert fields["in_print"] is bool(book["in_print"][row])
    star = search(
        node,
        collection="book",
        vectors=queries[:1].tolist(),
        annsField="book_intro",
        topK=1,
        outputFields=["*"],
    )
    assert set(star[0][0]["fields"]) == {"title", "word_count", "rating", "in_print", "$meta"}


def test_partitions_partly_held_answer_for_what_is_held(node: QuerynodeProcess) -> None:
    results = search(node, collection="book", vectors=[[0.0] * 64], annsField="book_intro", topK=5,
                     partitions=["poetry", "not_here"])  # fmt: skip
    assert len(results[0]) == 5 and {h["partition"] for h in results[0]} == {"poetry"}


def test_vector_output_and_single_vector_field_default(node: QuerynodeProcess) -> None:
    data = metrics_data(0)
    results = search(node, collection=METRICS_COLLECTION, vectors=[data["vectors"]["v_l2"][3].tolist()],
                     annsField="v_l2", topK=1, outputFields=["v_l2", "group"])  # fmt: skip
    hit = results[0][0]
    assert hit["id"] == 3 and hit["distance"] == pytest.approx(0.0, abs=1e-5)
    assert hit["fields"]["v_l2"] == pytest.approx(data["vectors"]["v_l2"][3].tolist(), rel=1e-6)
    assert hit["fields"]["group"] == 3


def test_query_and_get(node: QuerynodeProcess, book: dict[str, Any]) -> None:
    status, answer = node.request(
        "POST",
        "/v1/query",
        {
            "collection": "book",
            "filter": "book_id in [3, 1, 2] or genre == 'nope'",
            "outputFields": ["title", "year"],
        },
    )
    assert status == 200, answer
    assert sorted(r["book_id"] for r in answer["rows"]) == [1, 2, 3]
    row = next(r for r in answer["rows"] if r["book_id"] == 1)
    assert row["title"] == book["title"][0] and row["year"] == int(book["year"][0])
    status, answer = node.request(
        "POST", "/v1/query", {"collection": "book", "filter": "in_print", "limit": 5}
    )
    assert status == 200 and len(answer["rows"]) == 5 and set(answer["rows"][0]) == {"book_id"}
    status, answer = node.request(
        "POST", "/v1/get", {"collection": "book", "ids": [2400, 5, 999999, 5], "outputFields": ["word_count"]}
    )
    assert status == 200, answer
    assert [r["book_id"] for r in answer["rows"]] == [2400, 5]
    status, answer = node.request("POST", "/v1/get", {"collection": "book", "ids": ["5"]})
    assert status == 400 and "book_id" in answer["error"]["message"]


def error_of(
    qn: QuerynodeProcess, path: str, body: Any = None, raw: bytes | None = None, method: str = "POST"
) -> tuple[int, str, str]:
    status, answer = qn.request(method, path, body, raw=raw)
    assert set(answer) == {"error"} and set(answer["error"]) == {"reason", "message"}, answer
    return status, answer["error"]["reason"], answer["error"]["message"]


def test_data_api_errors(node: QuerynodeProcess) -> None:
    vec = [0.0] * 64
    status, reason, message = error_of(
        node, "/v1/search", {"collection": "book", "vectors": [[0.0] * 10], "annsField": "book_intro"}
    )
    assert (
        (status, reason) == (400, "DimensionMismatch")
        and "book_intro" in message
        and "64" in message
        and "10" in message
    )
    status, reason, message = error_of(node, "/v1/search", {"collection": "book", "vectors": [vec]})
    assert (status, reason) == (400, "AnnsFieldRequired") and "book_intro" in message and "cover" in message
    assert error_of(node, "/v1/search", {"collection": "book", "vectors": [vec], "annsField": "title"})[
        :2
    ] == (400, "InvalidAnnsField")
    assert error_of(
        node,
        "/v1/search",
        {"collection": "book", "vectors": [vec], "annsField": "book_intro", "topK": 100000},
    )[:2] == (400, "InvalidRequest")
    assert error_of(node, "/v1/search", {"collection": "nope", "vectors": [vec]})[:2] == (
        404,
        "CollectionNotLoaded",
    )
    status, reason, message = error_of(
        node,
        "/v1/search",
        {"collection": "book", "vectors": [vec], "annsField": "book_intro", "partitions": ["nope"]},
    )
    assert (status, reason) == (409, "PartitionNotLoaded") and "nope" in message
    status, reason, message = error_of(
        node,
        "/v1/search",
        {"collection": "book", "vectors": [vec], "annsField": "book_intro", "filter": "rating >"},
    )
    assert (status, reason) == (400, "InvalidFilter") and "rating >" in message
    status, reason, message = error_of(
        node, "/v1/query", {"collection": METRICS_COLLECTION, "filter": "color == 1"}
    )
    assert (status, reason) == (400, "FieldNotFound") and "color" in message
    assert error_of(
        node, "/v1/query", {"collection": METRICS_COLLECTION, "filter": "group > 1", "outputFields": ["nope"]}
    )[:2] == (400, "FieldNotFound")
    assert error_of(node, "/v1/query", {"collection": "book"})[:2] == (400, "InvalidRequest")
    assert error_of(node, "/v1/search", raw=b'{"collection": "book", ')[:2] == (400, "InvalidJSON")
    assert error_of(node, "/v1/search", {"collection": "../book", "vectors": [vec]})[:2] == (
        400,
        "InvalidName",
    )
    assert error_of(node, "/v1/search", {"collection": "bo\x00ok", "vectors": [vec]})[:2] == (
        400,
        "InvalidName",
    )
    assert error_of(node, "/v1/catalog/bo..ok", method="GET")[:2] == (400, "InvalidName")
    assert error_of(node, "/v1/nothing", method="GET")[:2] == (404, "NotFound")
    assert error_of(node, "/v1/search", method="GET")[:2] == (405, "MethodNotAllowed")


def test_request_body_is_bounded(node: QuerynodeProcess) -> None:
    huge = b'{"collection": "book", "vectors": [' + b"[0.0]," * (12 * 1024 * 1024) + b"[0.0]]}"
    try:
        status, reason, message = error_of(node, "/v1/search", raw=huge)
    except ConnectionError:  # the server may close the connection while we still send
        return
    assert (status, reason) == (413, "RequestTooLarge") and "bytes" in message


def test_metrics_are_exposed_and_documented(node: QuerynodeProcess) -> None:
    status, text = node.request("GET", "/metrics", token=None)
    assert status == 200
    exposed = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))
    for name in METRIC_NAMES:
        assert name in exposed, name
    assert re.search(r'^vectorload_querynode_segments_loaded\{collection="book"\} 12\.0$', text, flags=re.M)
    assert re.search(r'^vectorload_querynode_rows_loaded\{collection="book"\} 10200\.0$', text, flags=re.M)
    docs = (REPO / "docs" / "querynode.md").read_text()
    for name in METRIC_NAMES:
        assert f"`{name}" in docs, f"{name} missing from docs/querynode.md"
