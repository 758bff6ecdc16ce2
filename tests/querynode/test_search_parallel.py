"""Search on every core, binary (MessagePack) search bodies: the pieces, then a real querynode.

The parallel search and the binary path must not change an answer: the same indexes with the
same ef give the same hits whether segments are searched one after another or side by side, and
a MessagePack answer carries the same ids and (float32) distances as the JSON one.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import requests

from vectorload.storage.sample import resolve_spec, sample_queries
from vectorload.wire import querynode as wire
from vectorload.wire.hits import HitColumns
from vectorload_dev.testing.querynode_harness import DATA_TOKEN, QuerynodeFactory, QuerynodeProcess, load_all
from vectorload_querynode.app import _in_pool, search_formats
from vectorload_querynode.cpus import available_cpus, cgroup_cpu_quota
from vectorload_querynode.errors import ApiError
from vectorload_querynode.requests import SearchRequest, decode_packed_search
from vectorload_querynode.search import Parallelism
from vectorload_querynode.segment import EfGate
from vectorload_querynode.settings import SettingsError, parse_settings

SPEC = resolve_spec("small", segment_rows=850)
PACKED = wire.SEARCH_MSGPACK

# --------------------------------------------------------------------------------- the pieces


def test_cgroup_cpu_quota_v2_v1_and_none(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert cgroup_cpu_quota(tmp_path) == 3.0


def test_available_cpus_is_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    assert available_cpus(lambda: 8, tmp_path) == 8
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert available_cpus(lambda: 8, tmp_path) == 2  # 1.5 cores: two threads overlap their waits
    assert available_cpus(lambda: 1, tmp_path) == 1
    (tmp_path / "cpu.max").write_text("1000 100000\n")
    assert available_cpus(lambda: 8, tmp_path) == 1
    assert available_cpus() >= 1


def test_search_threads_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VECTORLOAD_TOKEN", "t")
    base = ["--root", str(tmp_path), "--memory-limit", "1Gi"]
    assert parse_settings(base).search_threads == available_cpus()
    assert parse_settings([*base, "--search-threads", "3"]).search_threads == 3
    for bad in ("0", "-2", "many"):
        with pytest.raises(SettingsError, match="--search-threads"):
            parse_settings([*base, "--search-threads", bad])


def test_parallelism_plan() -> None:
    pool = ThreadPoolExecutor(1)
    try:
        two = Parallelism(2, pool)
        assert two.plan(nq=1, segments=3, filtered=False) == (True, 1)  # segments side by side
        assert two.plan(nq=100, segments=3, filtered=False) == (False, 2)  # hnswlib splits the batch
        assert two.plan(nq=1, segments=1, filtered=False) == (False, 1)
        assert two.plan(nq=100, segments=3, filtered=True) == (False, 1)  # filters call Python
        assert Parallelism(1, pool).plan(nq=100, segments=3, filtered=False) == (False, 1)
    finally:
        pool.shutdown()


class FakeIndex:
    """Records set_ef calls and how many searches overlap."""

    def __init__(self) -> None:
        self.ef: int | None = None
        self.set_while_busy = 0
        self.busy = 0
        self.most_busy = 0
        self.lock = threading.Lock()

    def set_ef(self, ef: int) -> None:
        if self.busy:
            self.set_while_busy += 1
        self.ef = ef

    def search(self, gate: EfGate, ef: int, seen: list[int]) -> None:
        with gate.searching(ef):
            with self.lock:
                self.busy += 1
                self.most_busy = max(self.most_busy, self.busy)
            time.sleep(0.02)
            seen.append(int(self.ef or 0))
            with self.lock:
                self.busy -= 1


def test_ef_gate_shares_the_index_per_ef_and_never_changes_ef_under_a_search() -> None:
    index = FakeIndex()
    gate = EfGate(index)
    seen: list[int] = []
    efs = [64] * 6 + [128] * 6 + [64] * 3
    threads = [threading.Thread(target=index.search, args=(gate, ef, seen)) for ef in efs]
    for t in threads:
        t.start()
        time.sleep(0.001)
    for t in threads:
        t.join(10)
    assert len(seen) == len(efs)
    assert index.set_while_busy == 0
    assert sorted(seen) == sorted(efs)  # each search ran with its own ef
    assert index.most_busy > 1  # same-ef searches overlapped (a lock would have serialised them)


async def test_in_pool_gives_results_in_order_or_the_first_error() -> None:
    pool = ThreadPoolExecutor(2)
    try:

        def slow(value: int) -> int:
            time.sleep(0.01 * (3 - value))
            return value

        assert await _in_pool(pool, [lambda v=v: slow(v) for v in range(3)]) == [0, 1, 2]  # type: ignore[misc]

        def fails() -> int:
            raise ApiError(408, "DeadlineExceeded", "spent")

        with pytest.raises(ApiError, match="spent"):
            await _in_pool(pool, [lambda: slow(0), fails])
    finally:
        pool.shutdown()


def test_packed_search_request_validation() -> None:
    def packed(**body: Any) -> SearchRequest:
        return SearchRequest.from_packed(decode_packed_search(msgspec.msgpack.encode(body)))

    vectors = np.array([[1, -2.5, 3e-3], [0, 0.5, 7]], dtype="<f4")
    req = packed(collection="c", dim=3, vectors=vectors.tobytes(), topK=4, ef=32)
    assert req.vectors.tolist() == vectors.tolist() and req.top_k == 4 and req.ef == 32
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"dim": 3, "vectors": vectors.tobytes()[:-4]}, "InvalidVectors", "not a non-empty whole number"),
        ({"dim": 3, "vectors": b""}, "InvalidVectors", "0 bytes"),
        ({"dim": 0, "vectors": b""}, "InvalidVectors", "dim must be between 1"),
        ({"dim": 1, "vectors": np.array([np.nan], "<f4").tobytes()}, "InvalidVectors", "nan is not a finite"),
        ({"dim": 1, "vectors": np.array([3e38], "<f4").tobytes()}, "InvalidVectors", "squared norm"),
        ({"dim": 1, "vectors": b"\0" * 4 * 16385}, "InvalidRequest", "16385 query vectors"),
        ({"dim": 1, "vectors": b"\0" * 4, "topK": 0}, "InvalidRequest", "topK must be between"),
        ({"dim": 1, "vectors": b"\0" * 4, "filter": 3}, "InvalidFilter", "filter"),
        ({"dim": 1, "vectors": [1.0]}, "InvalidVectors", "vectors"),
        ({"dim": 1, "vectors": b"\0" * 4, "top_k": 1}, "UnknownKey", 'did you mean "topK"'),
    ]
    for body, reason, text in cases:
        with pytest.raises(ApiError) as info:
            packed(collection="c", **body)
        assert (info.value.status, info.value.reason) == (400, reason), body
        assert text in info.value.message, info.value.message
    with pytest.raises(ApiError) as info:
        decode_packed_search(b"\xc1")
    assert (info.value.status, info.value.reason) == (400, "InvalidBody")


def test_search_formats_follow_content_type_and_accept() -> None:
    assert search_formats(None, None) == (False, False)
    assert search_formats("application/json", "*/*") == (False, False)
    assert search_formats(PACKED, None) == (True, True)
    assert search_formats("application/msgpack; charset=binary", "application/json") == (True, False)
    assert search_formats("application/json", f"text/html, {PACKED};q=0.9") == (False, True)
    assert search_formats("Application/MsgPack", "*/*") == (True, True)


# --------------------------------------------------------------------------- a real querynode


def post(
    qn: QuerynodeProcess, data: bytes, content_type: str, accept: str | None = None
) -> requests.Response:
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {DATA_TOKEN}"}
    if accept is not None:
        headers["Accept"] = accept
    return requests.post(f"{qn.url}/v1/search", data=data, headers=headers, timeout=30)


def json_search(qn: QuerynodeProcess, **body: Any) -> list[list[dict[str, Any]]]:
    status, answer = qn.request("POST", "/v1/search", body, token=DATA_TOKEN)
    assert status == 200, answer
    return list(answer["results"])


def packed_search(qn: QuerynodeProcess, vectors: np.ndarray[Any, Any], **body: Any) -> HitColumns:
    data = wire.encode_msgpack(
        wire.PackedSearchRequest(
            collection="book", dim=vectors.shape[1], vectors=vectors.astype("<f4").tobytes(), **body
        )
    )
    resp = post(qn, data, PACKED)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith(PACKED)
    return HitColumns.unpack(wire.decode_msgpack(resp.content, wire.PackedSearchAnswer))


@pytest.fixture(scope="module")
def nodes(
    module_querynode_factory: QuerynodeFactory, small_root: Path
) -> tuple[QuerynodeProcess, QuerynodeProcess]:
    """The small sample (12 segments) on a node searching with 2 threads and on one with 1."""
    parallel = module_querynode_factory(small_root, memory_limit="2Gi", extra_args=["--search-threads", "2"])
    serial = module_querynode_factory(small_root, memory_limit="2Gi", extra_args=["--search-threads", "1"])
    for qn in (parallel, serial):
        load_all(qn, small_root, "book")
    return parallel, serial


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("ef", [16, 96])
def test_parallel_binary_and_json_answers_are_identical(
    nodes: tuple[QuerynodeProcess, QuerynodeProcess], batch: int, ef: int
) -> None:
    parallel, serial = nodes
    queries = sample_queries(7, 64, "book_intro", SPEC)[:batch]
    body = {"annsField": "book_intro", "topK": 10, "ef": ef}
    want = json_search(serial, collection="book", vectors=queries.tolist(), **body)
    assert json_search(parallel, collection="book", vectors=queries.tolist(), **body) == want
    columns = packed_search(parallel, queries, anns_field="book_intro", top_k=10, ef=ef)
    assert columns.distances.dtype == np.float32
    got = [[{"id": h.id, "distance": h.distance, "partition": h.partition, "fields": h.fields} for h in q]
           for q in columns.hits()]  # fmt: skip
    assert got == want  # JSON distances are the float32 values, printed exactly
    assert [len(q) for q in want] == [10] * batch


def test_binary_search_with_filter_and_output_fields(
    nodes: tuple[QuerynodeProcess, QuerynodeProcess],
) -> None:
    parallel, _ = nodes
    queries = sample_queries(3, 4, "book_intro", SPEC)
    body = {
        "annsField": "book_intro",
        "topK": 5,
        "filter": "word_count > 50000",
        "outputFields": ["title", "year"],
    }
    want = json_search(parallel, collection="book", vectors=queries.tolist(), **body)
    columns = packed_search(
        parallel, queries, anns_field="book_intro", top_k=5, filter="word_count > 50000",
        output_fields=("title", "year"),
    )  # fmt: skip
    assert [[(h.id, h.distance, h.partition, h.fields) for h in q] for q in columns.hits()] == [
        [(h["id"], h["distance"], h["partition"], h["fields"]) for h in q] for q in want
    ]
    assert all(set(h.fields) == {"title", "year"} for q in columns.hits() for h in q)


def test_accept_picks_the_answer_format(nodes: tuple[QuerynodeProcess, QuerynodeProcess]) -> None:
    parallel, _ = nodes
    vector = sample_queries(5, 1, "book_intro", SPEC)
    packed_body = msgspec.msgpack.encode(
        {
            "collection": "book",
            "dim": vector.shape[1],
            "vectors": vector.astype("<f4").tobytes(),
            "topK": 3,
            "annsField": "book_intro",
        }
    )
    as_json = post(parallel, packed_body, wire.MSGPACK, accept="application/json")
    assert as_json.status_code == 200 and as_json.headers["Content-Type"].startswith("application/json")
    json_body = msgspec.json.encode(
        {"collection": "book", "vectors": vector.tolist(), "topK": 3, "annsField": "book_intro"}
    )
    as_packed = post(parallel, json_body, "application/json", accept=PACKED)
    assert as_packed.status_code == 200 and as_packed.headers["Content-Type"].startswith(PACKED)
    hits = HitColumns.unpack(wire.decode_msgpack(as_packed.content, wire.PackedSearchAnswer)).hits()
    assert [h.id for h in hits[0]] == [h["id"] for h in as_json.json()["results"][0]]


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"\xc1\x00", 400, "InvalidBody"),
        (b'{"collection": "book", "vectors": [[1.0]]}', 400, "InvalidRequest"),  # JSON sent as MessagePack
        (
            msgspec.msgpack.encode({"collection": "book", "dim": 3, "vectors": b"\0" * 10}),
            400,
            "InvalidVectors",
        ),
        (
            msgspec.msgpack.encode(
                {"collection": "book", "dim": 3, "vectors": b"\0" * 12, "annsField": "book_intro"}
            ),
            400,
            "DimensionMismatch",
        ),
        (
            msgspec.msgpack.encode({"collection": "nope", "dim": 3, "vectors": b"\0" * 12}),
            404,
            "CollectionNotLoaded",
        ),
    ],
)
def test_bad_binary_bodies_are_json_errors(
    nodes: tuple[QuerynodeProcess, QuerynodeProcess], data: bytes, status: int, reason: str
) -> None:
    resp = post(nodes[0], data, PACKED)
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["error"]["reason"] == reason
