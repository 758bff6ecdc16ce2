"""Hostile input against a real querynode process (issue 13): the data API is closed by default,
every bad input is a 4xx with the documented error shape (echoed input capped), every limit is a
setting whose refusal names it, work per request is bounded, tokens never reach the log, a client
that goes away is not an error, and /healthz stays prompt while the node is busy."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload_dev.testing.querynode_harness import (
    DATA_TOKEN,
    TOKEN,
    QuerynodeFactory,
    QuerynodeProcess,
    load_all,
)

VEC = [0.1] * 64
LIMIT_ARGS = [
    "--max-json-depth",
    "16",
    "--max-search-results",
    "5000",
    "--max-ids",
    "50",
    "--max-output-fields",
    "4",
    "--max-request-bytes",
    "2Mi",
]


@pytest.fixture(scope="module")
def node(module_querynode_factory: QuerynodeFactory, tiny_root: Path) -> QuerynodeProcess:
    qn = module_querynode_factory(tiny_root, memory_limit="1Gi", extra_args=LIMIT_ARGS)
    load_all(qn, tiny_root, "book")
    return qn


def post(
    qn: QuerynodeProcess,
    path: str,
    raw: bytes,
    token: str | None = DATA_TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(qn.host, qn.port, timeout=60)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    conn.request("POST", path, body=raw, headers=all_headers)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(payload)
    except ValueError:
        return resp.status, payload.decode("utf-8", "replace")


def error(status: int, answer: Any) -> tuple[int, str, str]:
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    assert set(answer["error"]) == {"reason", "message"}, answer
    return status, answer["error"]["reason"], answer["error"]["message"]


def raw_request(qn: QuerynodeProcess, data: bytes) -> bytes:
    with socket.create_connection((qn.host, qn.port), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_data_api_is_closed_by_default(
    node: QuerynodeProcess, querynode_factory: QuerynodeFactory, tiny_root: Path
) -> None:
    body = json.dumps({"collection": "book", "vectors": [VEC], "annsField": "book_intro"}).encode()
    for path in ("/v1/search", "/v1/query", "/v1/get"):
        for token in (None, "wrong", DATA_TOKEN + "x", DATA_TOKEN[:-1]):
            status, answer = post(node, path, body, token=token)
            assert (status, answer) == (401, {"error": {"reason": "Unauthorized", "message": "unauthorized"}})
    assert post(node, "/v1/search", body, token=DATA_TOKEN)[0] == 200
    assert post(node, "/v1/search", body, token=TOKEN)[0] == 200  # the control token may do more
    # the data token is not a control token
    assert node.request("GET", "/v1/distribution", token=DATA_TOKEN)[0] == 401
    # a non-UTF-8 byte in the header is a 401, not a 500
    answer = raw_request(
        node,
        b"POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dat\xff\xfea\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    assert answer.startswith(b"HTTP/1.1 401 ")
    # only an explicit flag opens it
    open_node = querynode_factory(tiny_root, extra_args=["--open-data-api"])
    load_all(open_node, tiny_root, "book")
    assert post(open_node, "/v1/search", body, token=None)[0] == 200


def _deep(depth: int) -> bytes:
    return b'{"collection": "book", "vectors": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


BAD_SEARCHES: list[tuple[Any, int, str, tuple[str, ...]]] = [
    # (body (dict, or raw bytes), status, reason, words the message names)
    ({"collection": "book", "vectors": [VEC], "top_k": 3}, 400, "UnknownKey", ("top_k", "topK")),
    (
        {"collection": "book", "vectors": [VEC], "annsfield": "x"},
        400,
        "UnknownKey",
        ("annsfield", "annsField"),
    ),
    ({"collection": "book", "vectors": [VEC], "topK": None}, 400, "InvalidRequest", ("topK", "null")),
    ({"collection": "book", "vectors": None}, 400, "InvalidVectors", ("vectors",)),
    ({"collection": None, "vectors": [VEC]}, 400, "InvalidName", ("collection",)),
    ({"collection": "book", "vectors": [VEC], "topK": "5"}, 400, "InvalidRequest", ("topK",)),
    ({"collection": "book", "vectors": [VEC], "topK": 10**30}, 400, "InvalidRequest", ("topK",)),
    ({"collection": "book", "vectors": [VEC], "ef": -(10**400)}, 400, "InvalidRequest", ("ef",)),
    ({"collection": "book", "vectors": [[10**400] * 64]}, 400, "InvalidVectors", ("vectors",)),
    ({"collection": "book", "vectors": [[1e30] * 64]}, 400, "InvalidVectors", ("overflow",)),
    ({"collection": "book", "vectors": [VEC], "filter": ["x"]}, 400, "InvalidFilter", ("filter",)),
    (
        {"collection": "book", "vectors": [VEC] * 100, "topK": 100},
        400,
        "LimitExceeded",
        ("--max-search-results", "5000"),
    ),
    (
        {"collection": "book", "vectors": [VEC], "outputFields": ["a", "b", "c", "d", "e"]},
        400,
        "LimitExceeded",
        ("--max-output-fields", "4"),
    ),
    ({"collection": "x" * 1_000_000, "vectors": [VEC]}, 400, "InvalidName", ("characters",)),
    (_deep(100_000), 400, "LimitExceeded", ("--max-json-depth", "16")),
    (
        b'{"collection": "book", "vectors": [[1]], "topK": 1' + b"0" * 5000 + b"}",
        400,
        "InvalidRequest",
        ("topK",),
    ),
    (b'{"collection": "bo\xffok", "vectors": [[1]]}', 400, "InvalidJSON", ()),
    (b'{"collection": "book", "vectors": [[NaN]]}', 400, "InvalidJSON", ()),
    (b"[]", 400, "InvalidRequest", ()),
    (b"", 400, "InvalidJSON", ()),
]


@pytest.mark.parametrize(("body", "status", "reason", "named"), BAD_SEARCHES)
def test_bad_search_bodies_are_4xx_naming_the_problem(
    node: QuerynodeProcess, body: Any, status: int, reason: str, named: tuple[str, ...]
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got = error(*post(node, "/v1/search", raw))
    assert got[:2] == (status, reason), got
    for word in named:
        assert word in got[2], (word, got)
    assert len(got[2]) <= 300  # echoed input is capped


@pytest.mark.parametrize(
    ("path", "body", "reason", "named"),
    [
        ("/v1/get", {"collection": "book", "ids": list(range(51))}, "LimitExceeded", ("--max-ids", "50")),
        ("/v1/get", {"collection": "book", "ids": [10**30]}, "InvalidRequest", ("int64",)),
        ("/v1/get", {"collection": "book", "ids": [2**63]}, "InvalidRequest", ("int64",)),
        ("/v1/get", {"collection": "book", "ids": [[1]]}, "InvalidRequest", ("ids",)),
        ("/v1/get", {"collection": "book", "ids": None}, "InvalidRequest", ("ids",)),
        ("/v1/query", {"collection": "book", "filter": None}, "InvalidFilter", ("filter",)),
        (
            "/v1/query",
            {"collection": "book", "filter": "in_print", "limit": None},
            "InvalidRequest",
            ("limit",),
        ),
        (
            "/v1/query",
            {"collection": "book", "filter": "in_print", "Limit": 3},
            "UnknownKey",
            ("Limit", "limit"),
        ),
    ],
)
def test_bad_query_and_get_bodies(
    node: QuerynodeProcess, path: str, body: Any, reason: str, named: tuple[str, ...]
) -> None:
    got = error(*post(node, path, json.dumps(body).encode()))
    assert got[:2] == (400, reason), got
    for word in named:
        assert word in got[2], (word, got)


def test_bad_control_bodies(node: QuerynodeProcess) -> None:
    cases: list[tuple[str, Any, str]] = [
        ("/v1/segments/load", {"collection": "book", "partition": "novel", "segment": ["x"]}, "UnknownKey"),
        ("/v1/segments/load", {"collection": "book", "partition": None, "segments": []}, "InvalidName"),
        (
            "/v1/segments/load",
            {"collection": "book", "partition": "novel", "segments": [1]},
            "InvalidRequest",
        ),
        ("/v1/segments/release", {"collection": "book", "segments": [{"partition": "p"}]}, "InvalidRequest"),
        (
            "/v1/segments/release",
            {"collection": "book", "segments": [{"segment": "s", "partition": "p", "x": 1}]},
            "UnknownKey",
        ),
    ]
    for path, body, reason in cases:
        got = error(*post(node, path, json.dumps(body).encode(), token=TOKEN))
        assert got[:2] == (400, reason), (path, body, got)


def test_encodings_and_sizes(node: QuerynodeProcess) -> None:
    good = json.dumps({"collection": "book", "vectors": [VEC], "annsField": "book_intro"}).encode()
    assert post(node, "/v1/search", gzip.compress(good), headers={"Content-Encoding": "gzip"})[0] == 200
    got = error(*post(node, "/v1/search", good, headers={"Content-Encoding": "gzip"}))
    assert got[:2] == (400, "InvalidContentEncoding")
    got = error(*post(node, "/v1/search", good, headers={"Content-Encoding": "rot13"}))
    assert got[:2] == (415, "UnsupportedContentEncoding") and "rot13" in got[2]
    # over the body limit, counted after decompression (a small gzip bomb)
    bomb = gzip.compress(b'{"collection": "book", "vectors": [[' + b"0," * 2_000_000 + b"0]]}")
    assert len(bomb) < 100_000
    got = error(*post(node, "/v1/search", bomb, headers={"Content-Encoding": "gzip"}))
    assert got[:2] == (413, "RequestTooLarge") and "--max-request-bytes 2097152" in got[2]


def test_large_query_vectors_give_finite_distances(node: QuerynodeProcess) -> None:
    body = {"collection": "book", "vectors": [[1e18] * 64], "annsField": "book_intro", "topK": 3}
    status, answer = post(node, "/v1/search", json.dumps(body).encode())
    assert status == 200, answer
    distances = [h["distance"] for h in answer["results"][0]]
    assert len(distances) == 3 and all(isinstance(d, float) and np.isfinite(d) for d in distances)


def test_request_time_budget(querynode_factory: QuerynodeFactory, tiny_root: Path) -> None:
    qn = querynode_factory(tiny_root, extra_args=["--request-timeout", "0.000001"])
    load_all(qn, tiny_root, "book")
    body = json.dumps({"collection": "book", "vectors": [VEC], "annsField": "book_intro"}).encode()
    got = error(*post(qn, "/v1/search", body))
    assert got[:2] == (408, "DeadlineExceeded") and "--request-timeout 1e-06" in got[2]
    got = error(*post(qn, "/v1/query", json.dumps({"collection": "book", "filter": "in_print"}).encode()))
    assert got[:2] == (408, "DeadlineExceeded")


def test_tokens_never_reach_the_log_and_disconnects_are_not_errors(
    querynode_factory: QuerynodeFactory, tiny_root: Path, tmp_path: Path
) -> None:
    log = tmp_path / "hostile.log"
    qn = querynode_factory(tiny_root, log_path=log)
    secret = "s3cr3t-t0ken-value"
    for header in (
        f"Authorization: Bearer {secret}\x01".encode(),
        f"Authorization Bearer {secret}".encode(),
        f"Authorization: Bearer {secret}".encode() + b"\xff\xfe",
        f"Authorization: {secret}".encode(),
    ):
        answer = raw_request(
            qn, b"POST /v1/search HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nConnection: close\r\n\r\n"
        )
        assert answer.split(b" ")[1] in (b"400", b"401"), answer[:80]
    # a client that sends half a body and goes away
    with socket.create_connection((qn.host, qn.port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DATA_TOKEN}\r\n".encode()
            + b'Content-Length: 1000\r\n\r\n{"collection": '
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while True:
        _, text = qn.request("GET", "/metrics", token=None)
        if 'vectorload_querynode_client_disconnects_total{route="/v1/search"} 1.0' in text:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert not re.search(r'requests_total\{code="5\d\d"', text)
    qn.stop()
    logged = log.read_text(encoding="utf-8", errors="replace")
    assert secret not in logged and DATA_TOKEN not in logged and TOKEN not in logged
    assert "Traceback" not in logged


def test_healthz_answers_promptly_while_searches_keep_the_node_busy(
    querynode_factory: QuerynodeFactory, small_root: Path
) -> None:
    qn = querynode_factory(small_root, memory_limit="2Gi")
    load_all(qn, small_root, "book")
    vectors = np.random.default_rng(0).standard_normal((400, 64)).astype(np.float32).tolist()
    body = json.dumps(
        {
            "collection": "book",
            "vectors": vectors,
            "annsField": "book_intro",
            "topK": 100,
            "outputFields": ["title"],
        }
    ).encode()
    stop = threading.Event()
    answers: list[int] = []

    def hammer() -> None:
        conn = http.client.HTTPConnection(qn.host, qn.port, timeout=120)
        headers = {"Authorization": f"Bearer {DATA_TOKEN}", "Content-Type": "application/json"}
        while not stop.is_set():
            conn.request("POST", "/v1/search", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            answers.append(resp.status)

    threads = [threading.Thread(target=hammer) for _ in range(2)]  # one per search worker
    for thread in threads:
        thread.start()
    latencies = []
    try:
        time.sleep(1.0)  # the searches are under way
        conn = http.client.HTTPConnection(qn.host, qn.port, timeout=10)
        for _ in range(200):
            started = time.perf_counter()
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read()) == {"status": "ok"}
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert answers and set(answers) == {200}
    p99 = float(np.percentile(latencies, 99))
    p50 = float(np.median(latencies))
    print(f"/healthz p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, {len(answers)} searches")
    assert p99 < 0.1, f"/healthz p99 {p99 * 1000:.0f} ms while searching (max {max(latencies) * 1000:.0f} ms)"
