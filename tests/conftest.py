"""Session-wide fixtures: a real local control plane (etcd + kube-apiserver +
kube-controller-manager) on 127.0.0.1, the CollectionLoad CRD, and fresh namespaces."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vectorload_dev.cluster.binaries import ensure_built
from vectorload_dev.cluster.cli import install_crds
from vectorload_dev.cluster.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[1]


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
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if control_plane.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0:
            break
        time.sleep(0.1)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
