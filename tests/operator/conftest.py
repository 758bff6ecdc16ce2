"""Fixtures for the operator's cluster tests (harness: `vectorload_dev.testing.operator_harness`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vectorload.storage.sample import write_sample
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.testing.operator_harness import OperatorProcess, QuerynodePool

# short intervals: a test sees a change within a fraction of a second
TEST_OPERATOR_ARGS = [
    "--dist-pull-interval", "0.25",
    "--status-interval", "0.3",
    "--catalog-interval", "0.2",
    "--request-timeout", "1",
]  # fmt: skip


@pytest.fixture(scope="session")
def op_workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vectorload-operator-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def sample_root(op_workdir: Path) -> Path:
    root = op_workdir / "storage"
    write_sample(root, size="tiny", seed=0, segment_rows=200)  # 3 segments per partition
    return root


HERE = Path(__file__).resolve().parent
_SESSION_OPERATORS: list[OperatorProcess] = []


@pytest.fixture(scope="session")
def operator_proc(crd_installed: ControlPlane, op_workdir: Path) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(crd_installed, op_workdir, extra_args=TEST_OPERATOR_ARGS)
    proc.start(timeout=30)
    _SESSION_OPERATORS.append(proc)
    yield proc
    proc.stop()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """The session's operator watches every namespace of the shared control plane: after this
    package's last test it is stopped, or it would also reconcile the CollectionLoads of the
    packages that run next (tests/sdk and tests/e2e install their own operator). A later test of
    this package restarts it (the `operator` fixture)."""
    if nextitem is not None and HERE in Path(nextitem.path).resolve().parents:
        return
    for proc in _SESSION_OPERATORS:
        proc.stop()


@pytest.fixture
def operator(operator_proc: OperatorProcess) -> Iterator[OperatorProcess]:
    """The session's operator, running (restarted if a test stopped it); log tail on failure."""
    if not operator_proc.running:
        operator_proc.start(timeout=30)
    yield operator_proc


@pytest.fixture
def pool(
    operator: OperatorProcess,
    crd_installed: ControlPlane,
    namespace: str,
    sample_root: Path,
    op_workdir: Path,
) -> Iterator[QuerynodePool]:
    p = QuerynodePool(crd_installed, namespace, sample_root, op_workdir)
    yield p
    p.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "operator" in getattr(item, "funcargs", {}):
        op = item.funcargs["operator"]
        report.sections.append(("operator log (tail)", op.log_tail(120)))
