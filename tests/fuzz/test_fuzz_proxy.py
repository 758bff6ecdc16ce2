"""The fuzz suite against a real proxy process (issue 13): the Milvus front door's REST v2 (main
port, shared with gRPC: raw bytes and HTTP/2 prefaces too), REST v1 (second port) and gRPC
(every MilvusService method from its descriptor), in front of a control plane, the operator and
a querynode serving the `book` sample.

CI runs a short bounded run (`VECTORLOAD_FUZZ_PROXY_REQUESTS`, default 3000 planned cases, at most
`VECTORLOAD_FUZZ_SECONDS`); the full run is `VECTORLOAD_FUZZ_PROXY_REQUESTS=10000` (the README's
figures). It fails on any 5xx, gRPC INTERNAL/UNKNOWN or Milvus "unexpected error" (seen by the
client or counted by the proxy), any undocumented code or uncapped message, any token accepted
that is not configured (or a configured one refused), any request left without an answer, a
`/healthz` answer slower than 0.5 s (p99 100 ms), RSS growth over 10 % from the end of the warm-up,
a token in the proxy's log, or a valid search that fails afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator

import grpc
import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vectorload_dev.testing import wait_for
from vectorload_dev.testing.fuzz import http, runner
from vectorload_dev.testing.fuzz.targets.proxy import (
    CREDENTIALS,
    ProxyTarget,
    proxy_stack,
    valid_search,
)
from vectorload_dev.testing.proxy_harness import ROOT_TOKEN, ProxyProcess
from vectorload_proxy.grpc_service import SERVICE
from vectorload_proxy.rest import V2_ROUTES

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REQUESTS = int(
    os.environ.get("VECTORLOAD_FUZZ_PROXY_REQUESTS", os.environ.get("VECTORLOAD_FUZZ_REQUESTS", "3000"))
)
SECONDS = float(os.environ.get("VECTORLOAD_FUZZ_SECONDS", str(max(100.0, REQUESTS * 0.03))))
SEED = int(os.environ.get("VECTORLOAD_FUZZ_SEED", "1"))


# what the `method` label of the proxy's metrics may hold: the service's methods, the REST
# endpoints, "unknown" — a label per name a client sends would grow memory without bound
KNOWN_METHODS = (
    {m.name for m in SERVICE.methods}
    | set(V2_ROUTES)
    | {"collection/load", "collection/release", "partitions/load", "partitions/release", "unknown"}
)


def metric_methods(proxy: ProxyProcess) -> set[str]:
    status, body, _ = http.get(proxy.host, proxy.http_port, "/metrics", 10)
    assert status == 200
    return set(re.findall(r'method="([^"]*)"', body.decode()))


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with proxy_stack(tmp_path_factory.mktemp("fuzz-proxy")) as p:
        yield p


def _post(
    proxy: ProxyProcess, path: str, body: bytes, headers: list[tuple[str | bytes, str | bytes]]
) -> http.Answer:
    sock = http.open_socket(proxy.host, proxy.port)
    try:
        request = http.RawRequest.of("POST", path, [("Content-Type", "application/json"), *headers], body)
        return http.exchange(sock, request.encode(proxy.host, keep_alive=False))
    finally:
        sock.close()


@pytest.mark.parametrize("name", ["\\u0000", "../storage/book", "a\\u0000b", ""])  # JSON escapes
def test_get_checks_the_collection_name_before_storage(proxy: ProxyProcess, name: str) -> None:
    """Found by the fuzz run: `entities/get` handed the name to the storage catalog unchecked (a
    NUL made `os.stat` raise: HTTP 500; `../x` named a path outside the storage root)."""
    body = b'{"collectionName": "' + name.encode() + b'", "id": [1, 2]}'
    answer = _post(proxy, "/v2/vectordb/entities/get", body, [("Authorization", f"Bearer {ROOT_TOKEN}")])
    assert answer.status == 200, answer
    assert json.loads(answer.body)["code"] == 1100, answer.body


def test_malformed_requests_log_one_line_without_the_token(proxy: ProxyProcess) -> None:
    """Found by the fuzz run: aiohttp logged a traceback for every request it could not parse,
    quoting the offending header lines (the Authorization header among them)."""
    marker = "Bearer root:Milvus-marker-of-this-test"
    for bad in (("Content-Length", "abc"), ("Transfer-Encoding", "chunked")):
        headers: list[tuple[str | bytes, str | bytes]] = [
            ("Authorization", marker),
            bad,
            ("Content-Length", "5"),
        ]
        answer = _post(proxy, "/v2/vectordb/collections/list", b"{}{}{", headers)
        assert answer.status == 400, answer
    wait_for(
        "the refusals in the proxy log",
        lambda: proxy.log_path.read_text(errors="replace").count("refused a malformed request") >= 2,
        timeout=10,
    )
    logged = proxy.log_path.read_text(errors="replace")
    assert "root:Milvus-marker" not in logged
    assert "Traceback" not in logged, logged[logged.index("Traceback") - 500 :][:3000]


def test_load_fields_errors_are_capped(proxy: ProxyProcess) -> None:
    """Found by the fuzz run: a LoadCollection naming 20,000 unknown load_fields answered a
    message naming every one of them (26,696 characters)."""
    request = milvus_pb2.LoadCollectionRequest(
        collection_name="book", load_fields=[f"f{i}" for i in range(20_000)]
    )
    with grpc.insecure_channel(f"{proxy.host}:{proxy.port}") as channel:
        answer = channel.unary_unary(
            "/milvus.proto.milvus.MilvusService/LoadCollection",
            request_serializer=milvus_pb2.LoadCollectionRequest.SerializeToString,
            response_deserializer=common_pb2.Status.FromString,
        )(request, metadata=(("authorization", base64.b64encode(ROOT_TOKEN.encode()).decode()),), timeout=30)
    assert answer.code == 1100, answer
    assert "f0" in answer.reason and len(answer.reason) < 1000, len(answer.reason)


def test_metrics_still_render(proxy: ProxyProcess) -> None:
    """/metrics is rendered off the event loop (bursts of it held /healthz): it still answers the
    exposition, in OpenMetrics when asked."""
    status, body, _ = http.get(proxy.host, proxy.http_port, "/metrics", 10)
    assert status == 200 and b"vectorload_proxy_requests_total" in body
    sock = http.open_socket(proxy.host, proxy.http_port)
    try:
        request = http.RawRequest.of(
            "GET", "/metrics", [("Accept", "application/openmetrics-text; version=1.0.0")]
        )
        answer = http.exchange(sock, request.encode(proxy.host, keep_alive=False), b"GET")
    finally:
        sock.close()
    assert answer.status == 200 and answer.content_type.startswith("application/openmetrics-text")
    assert answer.body.rstrip().endswith(b"# EOF")


@pytest.mark.timeout(SECONDS + 300)
def test_fuzz_proxy(proxy: ProxyProcess) -> None:
    before = valid_search(proxy)
    report = runner.run(ProxyTarget(proxy), requests=REQUESTS, seconds=SECONDS, seed=SEED)
    print("\n" + report.summary())
    failures = report.failures(runner.Bounds(healthz_p99=0.1))
    assert report.requests >= min(REQUESTS, 1000), report.summary()
    assert not failures, "\n".join(failures) + "\n" + report.summary()
    assert valid_search(proxy) == before, "the proxy no longer answers a valid search as before"
    labels = metric_methods(proxy)
    assert labels <= KNOWN_METHODS, (
        f"metric labels from input (memory per name): {sorted(labels - KNOWN_METHODS)[:5]}"
    )
    proxy.stop()
    logged = proxy.log_path.read_text(encoding="utf-8", errors="replace")
    for secret in CREDENTIALS:
        for form in (secret, base64.b64encode(secret.encode()).decode(), secret.split(":")[-1]):
            assert form not in logged, "a token reached the proxy log"
    assert "Traceback" not in logged, logged[logged.index("Traceback") - 500 :][:3000]
