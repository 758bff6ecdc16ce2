"""Session-wide fixtures: a real local control plane (etcd + kube-apiserver +
kube-controller-manager) on 127.0.0.1, the CollectionLoad CRD, and fresh namespaces.

Each run takes its own loopback slot at start (`vectorload_dev.loopback`: 127.N.0.0/16 for its pods,
querynodes and operator), so two runs on one machine never collide; the header names it.
`--parallel-runs` enables tests/parallel (`make test-parallel`), which starts two runs at once."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vectorload_dev.cluster.binaries import ensure_built
from vectorload_dev.cluster.cli import install_crds
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.testing import run_slot, wait_for

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--parallel-runs",
        action="store_true",
        help="run tests/parallel: two runs of the cluster-using packages at once (make test-parallel)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    slot = run_slot()  # taken here, at the start, and held until this run ends
    return f"vectorload loopback slot: {slot.index} ({slot.network})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--parallel-runs"):
        return
    skip = pytest.mark.skip(reason="starts two whole test runs: `make test-parallel` (--parallel-runs)")
    for item in items:
        if "parallel" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    state_dir = Path(tempfile.mkdtemp(prefix="vectorload-cp-"))
    plane = ControlPlane(state_dir, ensure_built(build=False))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop(remove_state=False)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def crd_installed(control_plane: ControlPlane) -> ControlPlane:
    install_crds(control_plane)
    return control_plane


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    # kube-controller-manager creates the default ServiceAccount; wait so pods can be created at once
    wait_for(
        f"ServiceAccount default in {name}",
        lambda: (
            control_plane.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0
        ),
        timeout=60,
    )
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
