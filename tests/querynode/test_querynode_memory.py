"""Memory behaviour of a real querynode with a few hundred MB of indexes: RSS comes back after a
release (free + malloc_trim), and admission admits only what fits."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.querynode_harness import (
    QuerynodeFactory,
    QuerynodeProcess,
    distribution,
    segment_states,
)
from vectorload_querynode.loader import LoadSpec, predicted_bytes
from vectorload_querynode.memory import resident_bytes

pytestmark = pytest.mark.slow

BIG = "big"
SEGMENTS = 4
ROWS = 20_000
DIM = 1024  # ~4 KiB per vector: ~85 MB per segment index, built in about a second


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big")
    writer = CollectionWriter(root)
    writer.create_collection(
        CollectionSchema(
            BIG,
            (
                FieldSchema("id", "int64", is_primary=True),
                FieldSchema("v", "float_vector", dim=DIM, metric="l2"),
            ),
            dynamic_field=False,
        )
    )
    rng = np.random.default_rng(1)
    for s in range(SEGMENTS):
        writer.write_segment(
            BIG,
            "_default",
            f"seg-{s}",
            {"v": rng.random((ROWS, DIM), dtype=np.float32)},
            np.arange(s * ROWS, (s + 1) * ROWS, dtype=np.int64),
            {},
            None,
            M=4,
            ef_construction=8,
            num_threads=-1,
        )
    return root


def file_bytes(root: Path) -> int:
    return sum(
        p.stat().st_size for p in (root / BIG / "_default" / "seg-0").iterdir() if p.name != "manifest.json"
    )


def segment_bytes(root: Path, segment: str = "seg-0") -> int:
    """What admission predicts for one segment (files + hnswlib's fixed overheads)."""
    reader = FilesystemReader(root)
    schema = reader.schema(BIG)
    return predicted_bytes(
        reader.segment(BIG, "_default", segment), LoadSpec(frozenset({"id", "v"}), False), schema
    )


def load(qn: QuerynodeProcess, segments: list[str]) -> list[dict[str, str]]:
    status, answer = qn.request(
        "POST", "/v1/segments/load", {"collection": BIG, "partition": "_default", "segments": segments}
    )
    assert status == 200, answer
    return list(answer["results"])


def test_rss_returns_after_release(querynode_factory: QuerynodeFactory, big_root: Path) -> None:
    qn = querynode_factory(big_root, memory_limit="4Gi")
    distribution(qn)
    baseline = resident_bytes(qn.pid)
    ids = [f"seg-{s}" for s in range(SEGMENTS)]
    load(qn, ids)
    wait_for(
        f"{SEGMENTS} segments loaded",
        lambda: sum(s["state"] == "loaded" for s in distribution(qn)["segments"]) == SEGMENTS,
        timeout=60,
    )
    status, answer = qn.request(
        "POST", "/v1/search", {"collection": BIG, "vectors": [[0.5] * DIM], "topK": 3}
    )
    assert status == 200 and len(answer["results"][0]) == 3
    loaded = resident_bytes(qn.pid)
    total = SEGMENTS * file_bytes(big_root)
    assert loaded - baseline >= 0.8 * total, (baseline, loaded, total)
    assert qn.request("POST", "/v1/segments/release", {"collection": BIG, "segments": None}) == (
        200,
        {"released": SEGMENTS},
    )
    allowed = baseline + max(0.10 * baseline, 64 * 2**20)
    try:
        wait_for(
            f"RSS back within {allowed:.0f} bytes", lambda: resident_bytes(qn.pid) <= allowed, timeout=10
        )
    except AssertionError:
        pytest.fail(f"RSS {resident_bytes(qn.pid)} after release; baseline {baseline}, allowed {allowed:.0f}")
    assert distribution(qn)["capacity"]["reservedBytes"] == 0


def test_admission_admits_what_fits(querynode_factory: QuerynodeFactory, big_root: Path) -> None:
    probe = querynode_factory(big_root, memory_limit="4Gi")
    overhead = distribution(probe)["capacity"]["usedBytes"]
    probe.stop()
    seg = segment_bytes(big_root)
    limit = int((overhead + 2.5 * seg) / 0.9)  # room for two segments and a half
    qn = querynode_factory(big_root, memory_limit=str(limit), threshold=0.9)
    results = load(qn, [f"seg-{s}" for s in range(SEGMENTS)])
    assert [r["state"] for r in results] == ["loading", "loading", "refused", "refused"]
    refused = results[2]
    assert refused["reason"] == "InsufficientMemory"
    numbers = re.search(r"predicted (\d+) bytes \+ used (\d+) \+ reserved (\d+)", refused["message"])
    assert numbers is not None, refused["message"]
    predicted, used, reserved = (int(n) for n in numbers.groups())
    assert predicted == segment_bytes(big_root, "seg-2")
    assert f"capacity {limit}" in refused["message"]
    wait_for(
        "2 segments loaded",
        lambda: sum(s["state"] == "loaded" for s in distribution(qn)["segments"]) == 2,
        timeout=60,
    )
    capacity = distribution(qn)["capacity"]
    assert capacity["reservedBytes"] == 0
    # seg-0 and seg-1 were reserved (or already used) when seg-2 was refused; now both are used
    assert used + reserved == capacity["usedBytes"]
    held = {s["segment"]: s["bytes"] for s in distribution(qn)["segments"]}
    assert held == {name: segment_bytes(big_root, name) for name in ("seg-0", "seg-1")}
    assert load(qn, ["seg-2"])[0]["state"] == "refused"  # still no room once loaded
    qn.request(
        "POST",
        "/v1/segments/release",
        {"collection": BIG, "segments": [{"partition": "_default", "segment": "seg-0"}]},
    )
    assert load(qn, ["seg-2"])[0]["state"] == "loading"
    wait_for(
        "seg-2 loaded",
        lambda: segment_states(qn).get((BIG, "_default", "seg-2"), {}).get("state") == "loaded",
        timeout=60,
    )
