"""Fixtures of the write-path tests: a control plane of their own, the operator polling catalogs
every 0.2 s (its default), two querynodes, an empty storage root and a proxy with the write path
(a short compaction interval so compaction happens within a test). Each test leaves no
CollectionLoad behind; collections are named per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import TEST_TOKEN, OperatorProcess, QuerynodePool
from vectorload_dev.testing.proxy_harness import NAMESPACE, ROOT_TOKEN, ProxyProcess, start_plane

OPERATOR_ARGS = [
    "--dist-pull-interval", "0.2",
    "--status-interval", "0.2",
    "--catalog-interval", "0.2",
    "--request-timeout", "1",
]  # fmt: skip
PROXY_ARGS = ["--seal-interval", "0.2", "--compaction-interval", "1", "--compaction-small-rows", "1000"]


@pytest.fixture(scope="session")
def writes_workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vectorload-writes-tests-"))
    yield path
    if not os.environ.get("VECTORLOAD_KEEP_TEST_DIRS"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def writes_plane(writes_workdir: Path) -> Iterator[ControlPlane]:
    plane = start_plane(writes_workdir / "control-plane", NAMESPACE)
    try:
        yield plane
    finally:
        plane.stop(remove_state=False)


@pytest.fixture(scope="session")
def write_root(writes_workdir: Path) -> Path:
    root = writes_workdir / "storage"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def writes_operator(writes_plane: ControlPlane, writes_workdir: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(writes_plane, writes_workdir, extra_args=OPERATOR_ARGS).start(timeout=60)
    yield op
    op.stop()


@pytest.fixture(scope="session")
def writes_pool(
    writes_plane: ControlPlane, writes_operator: OperatorProcess, write_root: Path, writes_workdir: Path
) -> Iterator[QuerynodePool]:
    p = QuerynodePool(writes_plane, NAMESPACE, write_root, writes_workdir)
    for i in range(2):
        p.add_node(f"wqn-{i}", memory_limit="512Mi")
    yield p
    p.stop_all()


@pytest.fixture(scope="session")
def write_proxy(
    writes_plane: ControlPlane, writes_pool: QuerynodePool, write_root: Path, writes_workdir: Path
) -> Iterator[ProxyProcess]:
    p = ProxyProcess(
        writes_plane, writes_workdir, NAMESPACE, write_root, data_token=TEST_TOKEN, extra_args=PROXY_ARGS
    ).start()
    yield p
    p.stop()


@pytest.fixture
def wclient(write_proxy: ProxyProcess, writes_pool: QuerynodePool) -> Iterator[MilvusClient]:
    def release_all() -> None:
        for obj in writes_pool.collection_loads():
            writes_pool.delete(obj["metadata"]["name"])
        wait_for("no CollectionLoad left", lambda: not writes_pool.collection_loads(), timeout=60)

    release_all()
    client = MilvusClient(uri=write_proxy.uri, token=ROOT_TOKEN)
    yield client
    client.close()
    release_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        p = getattr(item, "funcargs", {}).get("write_proxy")
        if p is not None:
            report.sections.append(("proxy log (tail)", p.log_tail(80)))
        op = getattr(item, "funcargs", {}).get("writes_operator")
        if op is not None:
            report.sections.append(("operator log (tail)", op.log_tail(40)))
