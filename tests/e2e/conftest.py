"""Fixtures of the end-to-end suite: the session control plane plus one process kubelet for
this package (`LocalSystem`), the sample collection `book` on disk."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vectorload.storage.sample import write_sample
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.e2e.system import LocalSystem
from vectorload_dev.testing import pod_network


@pytest.fixture(scope="package")
def local_system(
    crd_installed: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalSystem]:
    # package scope: the kubelet binds every default-scheduler pod, so it must not outlive
    # this package (tests/helm expects its pods to stay Pending)
    node_name = f"e2e-{uuid.uuid4().hex[:6]}"
    system = LocalSystem(
        crd_installed,
        tmp_path_factory.mktemp("e2e"),
        node_name=node_name,
        kubelet_args=("--delete-node-on-exit",),
        pod_network=pod_network(node_name),  # this run's own addresses: a second run never meets them
    )
    system.start()
    try:
        yield system
    finally:
        system.stop()


@pytest.fixture(scope="package")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    write_sample(root, "small", seed=0, num_threads=1, segment_rows=850)  # 4 segments per partition
    return root


@pytest.fixture
def private_root(sample_root: Path, tmp_path: Path) -> Path:
    """A copy of the sample a test may damage."""
    root = tmp_path / "root"
    shutil.copytree(sample_root, root)
    return root
