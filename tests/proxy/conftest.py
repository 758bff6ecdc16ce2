"""Fixtures of the proxy tests: real processes all the way down, shared per session.

A control plane of its own (not the session's: tests/operator leaves an `--all-namespaces`
operator running on that one, and two operators must never reconcile the same resources), the
CRD, one operator, three querynode processes behind Pod objects in one namespace, the sample
collection `book` and the seeds' `my_collection` in storage, and two proxies: one with
authentication (`ROOT_TOKEN`), one started `--no-auth` for the seeds' commands as written (the
REST v1 curl of the seed sends no token). Each test leaves no CollectionLoad behind (`clean`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vectorload.storage.sample import write_sample
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import TEST_TOKEN, OperatorProcess, QuerynodePool
from vectorload_dev.testing.proxy_harness import NAMESPACE, ProxyProcess, start_plane, write_my_collection

OPERATOR_ARGS = [
    "--dist-pull-interval", "0.25",
    "--status-interval", "0.3",
    "--catalog-interval", "1",
    "--request-timeout", "1",
]  # fmt: skip


@pytest.fixture(scope="session")
def proxy_workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vectorload-proxy-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def proxy_plane(proxy_workdir: Path) -> Iterator[ControlPlane]:
    plane = start_plane(proxy_workdir / "control-plane", NAMESPACE)
    try:
        yield plane
    finally:
        plane.stop(remove_state=False)


@pytest.fixture(scope="session")
def storage_root(proxy_workdir: Path) -> Path:
    root = proxy_workdir / "storage"
    write_sample(root, size="tiny", seed=0, segment_rows=200)  # 3 partitions x 3 segments
    write_my_collection(root)
    return root


@pytest.fixture(scope="session")
def proxy_operator(proxy_plane: ControlPlane, proxy_workdir: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(proxy_plane, proxy_workdir, extra_args=OPERATOR_ARGS).start(timeout=60)
    yield op
    op.stop()


@pytest.fixture(scope="session")
def pool(
    proxy_plane: ControlPlane, proxy_operator: OperatorProcess, storage_root: Path, proxy_workdir: Path
) -> Iterator[QuerynodePool]:
    p = QuerynodePool(proxy_plane, NAMESPACE, storage_root, proxy_workdir)
    for i in range(3):
        p.add_node(f"qn-{i}", memory_limit="512Mi")
    yield p
    p.stop_all()


@pytest.fixture(scope="session")
def proxy(
    proxy_plane: ControlPlane, pool: QuerynodePool, storage_root: Path, proxy_workdir: Path
) -> Iterator[ProxyProcess]:
    p = ProxyProcess(proxy_plane, proxy_workdir, NAMESPACE, storage_root, data_token=TEST_TOKEN).start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def open_proxy(
    proxy_plane: ControlPlane, pool: QuerynodePool, storage_root: Path, proxy_workdir: Path
) -> Iterator[ProxyProcess]:
    p = ProxyProcess(proxy_plane, proxy_workdir, NAMESPACE, storage_root, data_token=TEST_TOKEN, no_auth=True)
    p.start()
    yield p
    p.stop()


@pytest.fixture
def clean(pool: QuerynodePool, proxy: ProxyProcess) -> Iterator[QuerynodePool]:
    """No CollectionLoad before or after the test (and every querynode running and Ready)."""

    def release_all() -> None:
        for obj in pool.collection_loads():
            pool.delete(obj["metadata"]["name"])
        wait_for("no CollectionLoad left", lambda: not pool.collection_loads(), timeout=60)

    release_all()
    yield pool
    release_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("proxy", "open_proxy"):
            p = getattr(item, "funcargs", {}).get(name)
            if p is not None:
                report.sections.append((f"{name} log (tail)", p.log_tail(60)))
        op = getattr(item, "funcargs", {}).get("proxy_operator")
        if op is not None:
            report.sections.append(("operator log (tail)", op.log_tail(60)))
