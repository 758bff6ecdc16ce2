"""Fixtures for the operator's cluster tests (see operator_harness.py)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/operator has no __init__.py (a package named `operator` would shadow the stdlib)
sys.path.insert(0, str(Path(__file__).parent))

from operator_harness import TOKEN, OperatorProcess, Pool

from vectorload.devcluster.controlplane import ControlPlane
from vectorload.storage.sample import write_sample


@pytest.fixture(scope="session")
def op_workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vectorload-operator-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def sample_root(op_workdir: Path) -> Path:
    root = op_workdir / "storage"
    write_sample(root, size="tiny", seed=0)
    return root


@pytest.fixture(scope="session")
def operator_proc(crd_installed: ControlPlane, op_workdir: Path) -> Iterator[OperatorProcess]:
    token_file = op_workdir / "token"
    token_file.write_text(TOKEN)
    proc = OperatorProcess(crd_installed, op_workdir / "operator.log", token_file)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def operator(operator_proc: OperatorProcess) -> Iterator[OperatorProcess]:
    """The session's operator, running (restarted if a test stopped it); log tail on failure."""
    if operator_proc.proc is None or operator_proc.proc.poll() is not None:
        operator_proc.start()
    yield operator_proc


@pytest.fixture
def pool(
    operator: OperatorProcess,
    crd_installed: ControlPlane,
    namespace: str,
    sample_root: Path,
    op_workdir: Path,
) -> Iterator[Pool]:
    p = Pool(crd_installed, namespace, sample_root, op_workdir)
    yield p
    p.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "operator" in getattr(item, "funcargs", {}):
        op = item.funcargs["operator"]
        report.sections.append(("operator log (tail)", op.log_tail(120)))
