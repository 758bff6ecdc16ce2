"""Fixtures for querynode tests: sample storage roots and real querynode processes.

`querynode_factory(root, **kwargs)` starts a `QuerynodeProcess` on its own address of this test
run's slot and stops it at the end of the test. The helpers (the `metrics` collection, views of
/v1/distribution, `load_all`) live in `vectorload_dev.testing.querynode_harness`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vectorload.storage.sample import write_sample
from vectorload_dev.testing.querynode_harness import (
    DATA_TOKEN,
    TOKEN,
    QuerynodeFactory,
    QuerynodeProcess,
    next_host,
    write_metrics_collection,
)


def _start_factory(tmp_dir: Path) -> tuple[QuerynodeFactory, list[QuerynodeProcess]]:
    started: list[QuerynodeProcess] = []

    def start(root: Path, **kwargs: Any) -> QuerynodeProcess:
        kwargs.setdefault("token", TOKEN)
        kwargs["env"] = {"VECTORLOAD_DATA_TOKEN": DATA_TOKEN, **kwargs.get("env", {})}
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
    write_sample(root, size="tiny", seed=0, num_threads=1, segment_rows=200)  # 3 segments per partition
    return root


@pytest.fixture(scope="session")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `small` sample `book` plus the `metrics` collection (one vector field per metric)."""
    root = tmp_path_factory.mktemp("small")
    write_sample(root, size="small", seed=0, num_threads=1, segment_rows=850)  # 4 segments per partition
    write_metrics_collection(root)
    return root
