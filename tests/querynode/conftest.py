"""Fixtures for querynode tests: sample storage roots and real querynode processes.

`querynode_factory(root, **kwargs)` starts a `QuerynodeProcess` (see vectorload_dev.testing.querynode_harness)
on its own 127.0.0.x address and stops it at the end of the test; the operator tests reuse it.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.sample import write_sample
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing.querynode_harness import QuerynodeProcess

TOKEN = "querynode-test-token"
_HOSTS = itertools.cycle(range(20 + os.getpid() % 100, 250))


def next_host() -> str:
    """A distinct loopback address per querynode, so tests never share an address:port."""
    return f"127.0.0.{next(_HOSTS)}"


QuerynodeFactory = Callable[..., QuerynodeProcess]


def _start_factory(tmp_dir: Path) -> tuple[QuerynodeFactory, list[QuerynodeProcess]]:
    started: list[QuerynodeProcess] = []

    def start(root: Path, **kwargs: Any) -> QuerynodeProcess:
        kwargs.setdefault("token", TOKEN)
        kwargs.setdefault("host", next_host())
        kwargs.setdefault("log_path", tmp_dir / f"querynode-{len(started)}.log")
        qn = QuerynodeProcess(root, **kwargs)
        started.append(qn)
        return qn.start()

    return start, started


@pytest.fixture
def querynode_factory(tmp_path: Path) -> Iterator[QuerynodeFactory]:
    start, started = _start_factory(tmp_path)
    yield start
    for qn in started:
        qn.stop()


@pytest.fixture(scope="module")
def module_querynode_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuerynodeFactory]:
    start, started = _start_factory(tmp_path_factory.mktemp("qn-logs"))
    yield start
    for qn in started:
        qn.stop()


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    write_sample(root, size="tiny", seed=0, num_threads=1)
    return root


@pytest.fixture(scope="session")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `small` sample `book` plus the `metrics` collection (one vector field per metric)."""
    root = tmp_path_factory.mktemp("small")
    write_sample(root, size="small", seed=0, num_threads=1)
    write_metrics_collection(root)
    return root


METRICS_COLLECTION = "metrics"
METRICS_DIM = 24


def metrics_schema() -> CollectionSchema:
    return CollectionSchema(
        name=METRICS_COLLECTION,
        fields=(
            FieldSchema("pk", "int64", is_primary=True),
            FieldSchema("group", "int64"),
            FieldSchema("v_l2", "float_vector", dim=METRICS_DIM, metric="l2"),
            FieldSchema("v_ip", "float_vector", dim=METRICS_DIM, metric="ip"),
            FieldSchema("v_cos", "float_vector", dim=METRICS_DIM, metric="cosine"),
        ),
        dynamic_field=False,
    )


def metrics_data(segment: int, rows: int = 700) -> dict[str, Any]:
    rng = np.random.default_rng([7, segment])
    vectors = {
        name: rng.standard_normal((rows, METRICS_DIM)).astype(np.float32)
        for name in ("v_l2", "v_ip", "v_cos")
    }
    vectors["v_ip"] /= np.linalg.norm(vectors["v_ip"], axis=1, keepdims=True)  # ip on unit vectors
    first = segment * rows
    return {
        "vectors": vectors,
        "pks": np.arange(first, first + rows, dtype=np.int64),
        "scalars": {"group": (np.arange(first, first + rows) % 10).astype(np.int64)},
    }


def write_metrics_collection(root: Path) -> None:
    writer = CollectionWriter(root)
    writer.create_collection(metrics_schema())
    for segment in range(2):
        data = metrics_data(segment)
        writer.write_segment(
            METRICS_COLLECTION,
            "_default",
            f"seg-{segment}",
            data["vectors"],
            data["pks"],
            data["scalars"],
            None,
            M=16,
            ef_construction=100,
            num_threads=1,
        )


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def distribution(qn: QuerynodeProcess) -> dict[str, Any]:
    status, body = qn.request("GET", "/v1/distribution")
    assert status == 200, body
    return dict(body)


def segment_states(qn: QuerynodeProcess) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(s["collection"], s["partition"], s["segment"]): s for s in distribution(qn)["segments"]}


def load_all(qn: QuerynodeProcess, root: Path, collection: str, **body: Any) -> list[dict[str, Any]]:
    """Load every segment of every partition and wait until all are loaded."""
    status, catalog = qn.request("GET", f"/v1/catalog/{collection}")
    assert status == 200, catalog
    results = []
    expected = 0
    for partition in catalog["partitions"]:
        ids = [s["id"] for s in partition["segments"]]
        expected += len(ids)
        status, answer = qn.request(
            "POST",
            "/v1/segments/load",
            {"collection": collection, "partition": partition["name"], "segments": ids, **body},
        )
        assert status == 200, answer
        results += answer["results"]
    wait_for(
        lambda: (
            sum(
                1
                for s in distribution(qn)["segments"]
                if s["collection"] == collection and s["state"] == "loaded"
            )
            == expected
        )
    )
    return results
