"""Control API against real querynode processes: auth, catalog, loads, failures, admission,
field subsets, reloads, releases (also during a slow load) and searches during loads."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from vectorload.storage.reader import FilesystemReader
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.querynode_harness import (
    DATA_TOKEN,
    TOKEN,
    QuerynodeFactory,
    QuerynodeProcess,
    distribution,
    segment_states,
)
from vectorload_querynode.loader import LoadSpec, predicted_bytes

CONTROL = [
    ("GET", "/v1/catalog", None),
    ("GET", "/v1/catalog/book", None),
    ("GET", "/v1/distribution", None),
    ("POST", "/v1/segments/load", {"collection": "book", "partition": "novel", "segments": ["novel-0000"]}),
    ("POST", "/v1/segments/release", {"collection": "book", "segments": None}),
]
SUBSET = ["book_id", "book_intro", "word_count"]


def load(qn: QuerynodeProcess, partition: str, segments: list[str], **extra: Any) -> tuple[int, Any]:
    body = {"collection": "book", "partition": partition, "segments": segments, **extra}
    return qn.request("POST", "/v1/segments/load", body)


def search(qn: QuerynodeProcess, **body: Any) -> tuple[int, Any]:
    return qn.request("POST", "/v1/search", {"collection": "book", **body}, token=DATA_TOKEN)


VEC = [0.1] * 64


@pytest.fixture(scope="module")
def node(module_querynode_factory: QuerynodeFactory, tiny_root: Path) -> QuerynodeProcess:
    return module_querynode_factory(tiny_root, memory_limit="1Gi")


def test_control_api_needs_the_token(node: QuerynodeProcess) -> None:
    for method, path, body in CONTROL:
        for token in (None, "wrong-token", TOKEN + "x", TOKEN[:-1]):
            status, answer = node.request(method, path, body, token=token)
            assert status == 401, (path, token)
            assert answer == {"error": {"reason": "Unauthorized", "message": "unauthorized"}}
    status, _ = node.request("GET", "/v1/catalog", raw=None, token=f"{TOKEN}")
    assert status == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert node.request("GET", path, token=None)[0] == 200


def test_catalog(node: QuerynodeProcess, tiny_root: Path) -> None:
    assert node.request("GET", "/v1/catalog") == (200, {"collections": ["book"]})
    status, catalog = node.request("GET", "/v1/catalog/book")
    assert status == 200
    assert catalog["name"] == "book"
    assert [f["name"] for f in catalog["schema"]["fields"]][:2] == ["book_id", "title"]
    assert [p["name"] for p in catalog["partitions"]] == ["_default", "novel", "poetry"]
    manifest = FilesystemReader(tiny_root).segment("book", "novel", "novel-0000")
    seg = next(s for s in catalog["partitions"][1]["segments"] if s["id"] == "novel-0000")
    memory = seg.pop("memoryBytes")
    assert seg.pop("compactedFrom") == [] and seg.pop("generation") == manifest.generation > 0
    assert seg == {
        "id": "novel-0000",
        "rows": 200,
        "bytes": {name: f.bytes for name, f in manifest.files.items()},
        "totalBytes": manifest.total_bytes,
    }
    assert set(memory) == set(seg["bytes"])
    status, answer = node.request("GET", "/v1/catalog/nope")
    assert (status, answer["error"]["reason"]) == (404, "CollectionNotFound")


def test_load_request_errors(node: QuerynodeProcess) -> None:
    status, answer = load(node, "nope", ["x"])
    assert (status, answer["error"]["reason"]) == (404, "PartitionNotFound")
    status, answer = node.request(
        "POST", "/v1/segments/load", {"collection": "nope", "partition": "p", "segments": []}
    )
    assert (status, answer["error"]["reason"]) == (404, "CollectionNotFound")
    status, answer = load(node, "novel", ["novel-0000"], fields=["title", "book_intro"])
    assert (status, answer["error"]["reason"]) == (400, "InvalidFields") and "book_id" in answer["error"][
        "message"
    ]
    status, answer = load(node, "novel", ["novel-0000"], fields=["book_id", "title"])
    assert (status, answer["error"]["reason"]) == (400, "InvalidFields")
    assert "vector field" in answer["error"]["message"] and "book_intro" in answer["error"]["message"]
    status, answer = load(node, "novel", ["novel-0000"], fields=["book_id", "book_intro", "colour"])
    assert (status, answer["error"]["reason"]) == (400, "FieldNotFound") and "colour" in answer["error"][
        "message"
    ]
    status, answer = load(node, "novel", ["missing-0"])
    assert status == 200 and answer["results"][0]["state"] == "refused"
    assert answer["results"][0]["reason"] == "SegmentNotFound"
    for bad in (
        {"collection": "book", "partition": "novel"},
        {"collection": "book", "partition": "novel", "segments": "x"},
    ):
        status, answer = node.request("POST", "/v1/segments/load", bad)
        assert (status, answer["error"]["reason"]) == (400, "InvalidRequest")
    status, answer = load(node, "novel", ["novel-0000"], skipDynamicField="yes")
    assert status == 400


def test_field_subset_and_skip_dynamic_field(node: QuerynodeProcess) -> None:
    status, answer = load(node, "novel", ["novel-0000", "novel-0001"], fields=SUBSET, skipDynamicField=True)
    assert status == 200 and [r["state"] for r in answer["results"]] == ["loading", "loading"]
    wait_for(
        "both segments loaded",
        lambda: (
            all(s["state"] == "loaded" for s in distribution(node)["segments"])
            and len(distribution(node)["segments"]) == 2
        ),
    )
    state = segment_states(node)[("book", "novel", "novel-0000")]
    assert state["fields"] == sorted(SUBSET) and state["dynamicField"] is False and state["rows"] == 200
    # same field set again: already loaded
    status, answer = load(node, "novel", ["novel-0000"], fields=list(reversed(SUBSET)), skipDynamicField=True)
    assert answer["results"][0]["state"] == "loaded"
    status, answer = search(node, vectors=[VEC], filter="word_count > 1000", outputFields=["word_count"])
    assert (
        status == 200
        and answer["results"][0]
        and all(h["fields"]["word_count"] > 1000 for h in answer["results"][0])
    )
    for body, named in [
        ({"filter": "rating > 1"}, "rating"),
        ({"outputFields": ["title"]}, "title"),
        ({"filter": "genre == 'mystery'"}, "$meta"),
        ({"outputFields": ["$meta"]}, "$meta"),
        ({"outputFields": ["year"]}, "year"),
        ({"annsField": "cover", "vectors": [[0.1] * 16]}, "cover"),
    ]:
        status, answer = search(node, **{"vectors": [VEC], **body})
        assert (status, answer["error"]["reason"]) == (400, "FieldNotLoaded"), body
        assert named in answer["error"]["message"]
    status, answer = node.request(
        "POST", "/v1/query", {"collection": "book", "filter": "in_print"}, token=DATA_TOKEN
    )
    assert (status, answer["error"]["reason"]) == (400, "FieldNotLoaded")
    assert node.request("POST", "/v1/segments/release", {"collection": "book", "segments": None}) == (
        200,
        {"released": 2},
    )
    assert distribution(node)["segments"] == []
    status, answer = search(node, vectors=[VEC])
    assert (status, answer["error"]["reason"]) == (404, "CollectionNotLoaded")


def test_reload_with_other_fields_swaps_while_serving(node: QuerynodeProcess) -> None:
    load(node, "poetry", ["poetry-0000"], fields=SUBSET, skipDynamicField=True)
    wait_for(
        "poetry-0000 loaded",
        lambda: segment_states(node).get(("book", "poetry", "poetry-0000"), {}).get("state") == "loaded",
    )
    errors: list[Any] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            status, answer = search(node, vectors=[VEC], annsField="book_intro", topK=3)
            if status != 200 or len(answer["results"][0]) != 3:
                errors.append(answer)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        status, answer = load(node, "poetry", ["poetry-0000"])  # all fields + $meta now
        assert answer["results"][0]["state"] in {"loading", "loaded"}
        wait_for(
            "poetry-0000 reloaded with title",
            lambda: "title" in segment_states(node)[("book", "poetry", "poetry-0000")]["fields"],
        )
    finally:
        stop.set()
        thread.join()
    assert errors == []
    state = segment_states(node)[("book", "poetry", "poetry-0000")]
    assert state["state"] == "loaded" and state["dynamicField"] is True and "reloading" not in state
    status, answer = search(
        node, vectors=[VEC], annsField="book_intro", topK=2, outputFields=["title", "genre"]
    )
    assert status == 200 and set(answer["results"][0][0]["fields"]) == {"title", "genre"}
    node.request(
        "POST",
        "/v1/segments/release",
        {"collection": "book", "segments": [{"partition": "poetry", "segment": "poetry-0000"}]},
    )
    wait_for("no memory reserved", lambda: distribution(node)["capacity"]["reservedBytes"] == 0)


@pytest.fixture
def broken_root(tmp_path: Path, tiny_root: Path) -> Path:
    root = tmp_path / "broken"
    shutil.copytree(tiny_root, root)
    seg = root / "book" / "_default"
    data = bytearray((seg / "default-0000" / "book_intro.hnsw").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    (seg / "default-0000" / "book_intro.hnsw").write_bytes(bytes(data))
    cover = seg / "default-0001" / "cover.hnsw"
    cover.write_bytes(cover.read_bytes()[:100])  # truncated
    (seg / "default-0002" / "rating.npy").unlink()  # missing
    return root


def test_corrupt_truncated_missing_files_fail_that_segment_only(
    querynode_factory: QuerynodeFactory, broken_root: Path
) -> None:
    qn = querynode_factory(broken_root)
    status, answer = qn.request("GET", "/v1/catalog/book")
    ids = [s["id"] for s in answer["partitions"][0]["segments"]]
    status, answer = qn.request(
        "POST", "/v1/segments/load", {"collection": "book", "partition": "_default", "segments": ids}
    )
    assert status == 200
    status, answer = qn.request(
        "POST", "/v1/segments/load", {"collection": "book", "partition": "novel", "segments": ["novel-0000"]}
    )
    wait_for("no segment loading", lambda: all(s["state"] != "loading" for s in distribution(qn)["segments"]))
    states = segment_states(qn)
    expected = {
        "default-0000": ("ChecksumMismatch", "book_intro.hnsw"),
        "default-0001": ("SizeMismatch", "cover.hnsw"),
        "default-0002": ("FileMissing", "rating.npy"),
    }
    for seg_id, (reason, file_name) in expected.items():
        state = states[("book", "_default", seg_id)]
        assert (state["state"], state["reason"]) == ("failed", reason)
        assert file_name in state["message"] and seg_id in state["message"]
    assert states[("book", "novel", "novel-0000")]["state"] == "loaded"
    assert qn.request("GET", "/healthz", token=None)[0] == 200
    status, answer = search(qn, vectors=[VEC], annsField="book_intro")
    assert status == 200 and answer["results"][0]
    assert distribution(qn)["capacity"]["reservedBytes"] == 0
    status, text = qn.request("GET", "/metrics", token=None)
    assert 'vectorload_querynode_segment_load_failures_total{reason="ChecksumMismatch"} 1.0' in text
    # a failed segment can be retried (it fails again) and released
    qn.request(
        "POST",
        "/v1/segments/load",
        {"collection": "book", "partition": "_default", "segments": ["default-0000"]},
    )
    wait_for(
        "default-0000 failed",
        lambda: segment_states(qn)[("book", "_default", "default-0000")]["state"] == "failed",
    )
    assert qn.request("POST", "/v1/segments/release", {"collection": "book", "segments": None}) == (
        200,
        {"released": 4},
    )


def test_memory_admission_refuses_with_numbers(querynode_factory: QuerynodeFactory, tiny_root: Path) -> None:
    qn = querynode_factory(tiny_root, memory_limit="8Mi", threshold=0.5)  # the process alone is bigger
    status, answer = qn.request(
        "POST", "/v1/segments/load", {"collection": "book", "partition": "novel", "segments": ["novel-0000"]}
    )
    assert status == 200
    result = answer["results"][0]
    assert (result["state"], result["reason"]) == ("refused", "InsufficientMemory")
    capacity = distribution(qn)["capacity"]
    reader = FilesystemReader(tiny_root)
    schema = reader.schema("book")
    spec = LoadSpec(frozenset(f.name for f in schema.fields), True)
    predicted = predicted_bytes(reader.segment("book", "novel", "novel-0000"), spec, schema)
    message = result["message"]
    assert f"predicted {predicted} bytes" in message
    assert f"used {capacity['usedBytes']}" in message and "reserved 0" in message
    assert f"capacity {8 * 2**20}" in message and "threshold 0.5" in message
    assert distribution(qn)["segments"] == []
    assert capacity["memoryLimitBytes"] == 8 * 2**20 and capacity["threshold"] == 0.5


def test_release_during_slow_load_is_prompt_and_data_token(
    querynode_factory: QuerynodeFactory, tiny_root: Path
) -> None:
    qn = querynode_factory(
        tiny_root, extra_args=["--load-step-delay", "3"], env={"VECTORLOAD_DATA_TOKEN": "data-secret"}
    )
    status, answer = qn.request(
        "POST",
        "/v1/segments/load",
        {"collection": "book", "partition": "novel", "segments": ["novel-0000", "novel-0001"]},
    )
    assert [r["state"] for r in answer["results"]] == ["loading", "loading"]
    time.sleep(0.5)  # both loads are inside their first (slow) step
    assert {s["state"] for s in distribution(qn)["segments"]} == {"loading"}
    assert distribution(qn)["capacity"]["reservedBytes"] > 0
    started = time.monotonic()
    status, answer = qn.request("POST", "/v1/segments/release", {"collection": "book", "segments": None})
    elapsed = time.monotonic() - started
    assert (status, answer) == (200, {"released": 2})
    assert elapsed < 1.0, f"release took {elapsed:.2f}s"
    assert distribution(qn)["segments"] == []
    wait_for("no memory reserved", lambda: distribution(qn)["capacity"]["reservedBytes"] == 0, timeout=5)
    status, text = qn.request("GET", "/metrics", token=None)
    assert "vectorload_querynode_segment_load_cancellations_total 2.0" in text
    assert "vectorload_querynode_segment_loads_total 0.0" in text
    # the data API wants the data token on this node
    status, answer = qn.request("POST", "/v1/search", {"collection": "book", "vectors": [VEC]}, token=None)
    assert status == 401
    status, answer = qn.request(
        "POST", "/v1/search", {"collection": "book", "vectors": [VEC]}, token="data-secret"
    )
    assert (status, answer["error"]["reason"]) == (404, "CollectionNotLoaded")


def test_searches_keep_working_while_loading_and_releasing(
    querynode_factory: QuerynodeFactory, small_root: Path
) -> None:
    qn = querynode_factory(small_root, extra_args=["--load-concurrency", "2"])
    _status, catalog = qn.request("GET", "/v1/catalog/book")
    parts = {p["name"]: [s["id"] for s in p["segments"]] for p in catalog["partitions"]}
    qn.request(
        "POST",
        "/v1/segments/load",
        {"collection": "book", "partition": "_default", "segments": parts["_default"]},
    )
    wait_for(
        "every _default segment loaded",
        lambda: (
            len(distribution(qn)["segments"]) == len(parts["_default"])
            and all(s["state"] == "loaded" for s in distribution(qn)["segments"])
        ),
    )
    errors: list[Any] = []
    count = [0]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            status, answer = search(
                qn, vectors=[VEC], annsField="book_intro", topK=5, partitions=["_default"], filter="in_print"
            )
            count[0] += 1
            if status != 200 or len(answer["results"][0]) != 5:
                errors.append(answer)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        for _ in range(2):
            for partition in ("novel", "poetry"):
                qn.request(
                    "POST",
                    "/v1/segments/load",
                    {"collection": "book", "partition": partition, "segments": parts[partition]},
                )
            time.sleep(0.3)
            targets = [{"partition": p, "segment": s} for p in ("novel", "poetry") for s in parts[p]]
            assert (
                qn.request("POST", "/v1/segments/release", {"collection": "book", "segments": targets})[0]
                == 200
            )
    finally:
        stop.set()
        thread.join()
    assert errors == [] and count[0] > 5
    wait_for("no memory reserved", lambda: distribution(qn)["capacity"]["reservedBytes"] == 0)
    assert {s["partition"] for s in distribution(qn)["segments"]} == {"_default"}


def test_boot_id_changes_per_start(querynode_factory: QuerynodeFactory, tiny_root: Path) -> None:
    first = querynode_factory(tiny_root)
    boot = distribution(first)["bootId"]
    first.stop()
    second = querynode_factory(tiny_root)
    dist = distribution(second)
    assert dist["bootId"] != boot and len(boot) >= 16
    assert dist["node"] == second.node_name


def test_refuses_to_start_without_token(tiny_root: Path) -> None:
    qn = QuerynodeProcess(tiny_root, token=None, port=1)
    cmd = [a for a in qn.command() if a != "--insecure-no-auth"]
    env = {k: v for k, v in os.environ.items() if k != "VECTORLOAD_TOKEN"}
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 2 and b"token" in done.stderr


def test_catalog_memory_bytes_match_what_admission_charges(node: QuerynodeProcess) -> None:
    """The operator places segments by the catalog's memoryBytes; they must be the bytes the
    querynode charges a load (file sizes alone undercount hnswlib's fixed per-index cost)."""
    status, catalog = node.request("GET", "/v1/catalog/book")
    assert status == 200
    novel = next(p for p in catalog["partitions"] if p["name"] == "novel")
    first = novel["segments"][0]
    assert set(first["memoryBytes"]) == set(first["bytes"])
    assert all(first["memoryBytes"][k] >= first["bytes"][k] for k in first["bytes"])
    assert sum(first["memoryBytes"].values()) > first["totalBytes"]
    status, _ = load(node, "novel", [first["id"]])
    assert status == 200
    wait_for(
        "the first novel segment loaded",
        lambda: segment_states(node).get(("book", "novel", first["id"]), {}).get("state") == "loaded",
    )
    held = segment_states(node)[("book", "novel", first["id"])]
    assert held["bytes"] == sum(first["memoryBytes"].values())
