"""Regression tests of the querynode bugs tests/fuzz found (issue 13), one per bug:

- a token followed or preceded by Unicode whitespace (NBSP, U+3000, vertical tab, ...) was
  accepted: `str.strip()` removed it before the constant-time compare;
- the JSON depth scan's regex built 200,000 objects for a body like `{"a":` × 100,000, and every
  worker thread's allocator kept that high-water mark (+70 MB RSS after a few deep bodies);
- every release ran a full garbage collection, even of nothing, so a burst of releases held the
  GIL back to back and `/healthz` waited 0.7 s;
- `/metrics` rendered every collector on the event loop, so a burst of (unauthenticated)
  scrapes delayed `/healthz` by the sum of their renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vectorload_dev.testing import free_port
from vectorload_dev.testing.querynode_harness import DATA_TOKEN, TOKEN, QuerynodeFactory, next_host
from vectorload_querynode import auth
from vectorload_querynode import node as node_module
from vectorload_querynode import requests as requests_module
from vectorload_querynode.app import build_app
from vectorload_querynode.errors import ApiError
from vectorload_querynode.memory import resident_bytes
from vectorload_querynode.node import QueryNode
from vectorload_querynode.requests import ReleaseRequest, json_depth_exceeds
from vectorload_querynode.settings import parse_settings

# ------------------------------------------------------------------------------------- tokens

UNICODE_SPACES = ["\u00a0", "\u3000", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u2028", "\u2009", "\ufeff"]


@pytest.mark.parametrize("space", UNICODE_SPACES)
def test_a_token_with_unicode_whitespace_is_not_the_token(space: str) -> None:
    for header in (f"Bearer secret{space}", f"Bearer {space}secret", f"{space}Bearer secret"):
        with pytest.raises(ApiError) as info:
            auth.check("secret", header)
        assert info.value.status == 401, repr(header)
    # what HTTP itself allows around a value stays allowed
    for header in ("Bearer secret ", "Bearer  secret", " Bearer secret\t", "bearer secret"):
        auth.check("secret", header)


def test_querynode_refuses_a_token_with_a_trailing_nbsp(
    querynode_factory: QuerynodeFactory, tiny_root: Path
) -> None:
    qn = querynode_factory(tiny_root, memory_limit="1Gi")
    for token, path in ((TOKEN, "/v1/distribution"), (DATA_TOKEN, "/v1/search")):
        for value in (f"Bearer {token}\u00a0", f"Bearer \u3000{token}", f"Bearer {token}\x0b"):
            with socket.create_connection((qn.host, qn.port), timeout=10) as sock:
                method = "GET" if path == "/v1/distribution" else "POST"
                head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n"
                sock.sendall(head.encode() + b"Authorization: " + value.encode("utf-8") + b"\r\n\r\n{}")
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.split(b" ", 2)[1] in (b"400", b"401"), (value, answer[:200])
    assert qn.request("GET", "/v1/distribution")[0] == 200


# ------------------------------------------------------------------------------ JSON depth scan


def _reference_depth(raw: bytes) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


JSON_VALUES = st.recursive(
    st.none() | st.integers() | st.text(alphabet='ab[]{}"\\', max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='k[{"\\', max_size=4), inner, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=JSON_VALUES, chunk=st.sampled_from([1, 2, 3, 7, 1 << 16]))
def test_depth_scan_agrees_with_a_json_reading_across_chunk_boundaries(value: object, chunk: int) -> None:
    raw = json.dumps(value).encode()
    deepest = _reference_depth(raw)
    saved = requests_module._DEPTH_CHUNK
    requests_module._DEPTH_CHUNK = chunk
    try:
        for limit in {0, max(deepest - 1, 0), deepest, deepest + 1}:
            assert json_depth_exceeds(raw, limit) == (deepest > limit), (raw, limit, deepest)
    finally:
        requests_module._DEPTH_CHUNK = saved


def test_depth_scan_memory_is_bounded() -> None:
    bodies = [
        b'{"collection": "book", "vectors": ' + opener * depth + b"1" + closer * depth + b"}"
        for depth in (10_000, 100_000)
        for opener, closer in ((b"[", b"]"), (b'{"a":', b"}"))
    ]
    pool = ThreadPoolExecutor(4)
    try:
        for body in bodies:  # settle the threads' arenas with one of each first
            list(pool.map(lambda b: json_depth_exceeds(b, 32), [body] * 4))
        before = resident_bytes()
        for _ in range(5):
            for body in bodies:
                assert all(pool.map(lambda b: json_depth_exceeds(b, 32), [body] * 4))
        growth = resident_bytes() - before
    finally:
        pool.shutdown()
    assert growth < 8 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB scanning deep bodies"


# ------------------------------------------------------------------------ releases and trimming


@pytest.fixture
def in_process_node(tmp_path: Path) -> Iterator[QueryNode]:
    args = ["--root", str(tmp_path), "--memory-limit", "1Gi", "--insecure-no-auth", "--open-data-api"]
    node = QueryNode(parse_settings([*args, "--verify-in-process"]))
    yield node
    node.close()


def test_a_release_of_nothing_collects_nothing_and_trims_coalesce(
    in_process_node: QueryNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    collections: list[float] = []

    def slow_collect() -> int:
        collections.append(time.monotonic())
        time.sleep(0.2)  # a full collection of a big process, holding the caller
        return 0

    monkeypatch.setattr(node_module.gc, "collect", slow_collect)
    assert in_process_node.release(ReleaseRequest("nothing_here", None)).released == 0
    assert collections == []
    # 16 callers at once (a burst of releases that did free something): two trims, not sixteen
    threads = [threading.Thread(target=node_module.trim_memory) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= len(collections) <= 2, len(collections)
    node_module.trim_memory()  # nothing running: a caller collects at once
    assert len(collections) <= 3


# ---------------------------------------------------------------------------------- /metrics


class _SlowCollector(Collector):
    def collect(self) -> list[GaugeMetricFamily]:
        time.sleep(0.3)  # an expensive render (the sleep releases the GIL: only the loop is blocked)
        return [GaugeMetricFamily("slow_render_seconds", "A collector that takes its time", value=0.3)]


@contextlib.contextmanager
def serving(node: QueryNode) -> Iterator[tuple[str, int]]:
    """The node's app on its own event loop in a thread (a client on the same loop would be
    blocked with it and could not tell)."""
    host = next_host()
    port = free_port(host)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(node))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, host, port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield host, port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _get(host: str, port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_metrics_render_off_the_event_loop(in_process_node: QueryNode) -> None:
    in_process_node.metrics.registry.register(_SlowCollector())
    with serving(in_process_node) as (host, port), ThreadPoolExecutor(4) as pool:
        scrapes = [pool.submit(_get, host, port, "/metrics") for _ in range(4)]
        time.sleep(0.1)  # the scrapes are being rendered
        started = time.monotonic()
        status, _ = _get(host, port, "/healthz")
        waited = time.monotonic() - started
        for scrape in scrapes:
            scrape_status, text = scrape.result()
            assert scrape_status == 200 and "slow_render_seconds 0.3" in text
    # on the loop, /healthz waited for the renders queued before it (0.9 s); off it, for none
    assert status == 200 and waited < 0.25, f"/healthz waited {waited:.2f} s behind /metrics"
