"""Fixtures of the SDK tests: a Milvus API endpoint holding the seed collections, and the SDK
programs built against their pinned dependencies (cached, `vectorload_dev.e2e.sdk`).

Backends (`VECTORLOAD_SDK_BACKEND`, comma-separated; default `proxy`):

* `proxy`: the chart installed on the local system (control plane + process kubelet) with the
  proxy enabled, the seed collections in its storage root; the programs dial a proxy pod with the
  root token from the chart's credentials Secret.
* `milvus`: a real Milvus 2.3.5 (bench/milvus_env.py: its own venv, a private network namespace),
  filled by `milvus_setup.py`; the programs run inside its namespace (`nsenter`). Milvus 2.3.5
  predates REST v2 and `load_fields` (it ignores the field), so those checks are the proxy's only.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vectorload_dev.checkout import repo_root
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.e2e import sdk, seeds
from vectorload_dev.e2e.sdk import Endpoint
from vectorload_dev.e2e.system import LocalSystem
from vectorload_dev.testing import pod_network

BACKENDS = ("proxy", "milvus")


def selected_backends() -> list[str]:
    chosen = [b.strip() for b in os.environ.get("VECTORLOAD_SDK_BACKEND", "proxy").split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BACKENDS))
    if unknown or not chosen:
        raise pytest.UsageError(f"VECTORLOAD_SDK_BACKEND: {unknown or chosen} (known: {', '.join(BACKENDS)})")
    return chosen


def proxy_endpoint(
    crd_installed: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Endpoint]:
    import importlib.util

    if importlib.util.find_spec("vectorload_proxy") is None:
        pytest.fail("the proxy (vectorload_proxy, `vectorload proxy`) is not in this checkout")
    node_name = f"sdk-{uuid.uuid4().hex[:6]}"
    system = LocalSystem(
        crd_installed,
        tmp_path_factory.mktemp("sdk-system"),
        node_name=node_name,
        kubelet_args=("--delete-node-on-exit",),
        pod_network=pod_network(node_name),
    )
    root = tmp_path_factory.mktemp("sdk-root")
    seeds.write_storage(root)
    system.start()
    namespace = f"sdk-{uuid.uuid4().hex[:6]}"
    try:
        release = system.install("vl", namespace, root, proxy=1, querynodes=2)
        try:
            yield Endpoint(
                "proxy",
                release.proxy_address(),
                release.proxy_http_uri(),
                release.milvus_token(),
                None,
                rest_v2=True,
            )
        finally:
            for name in release.kubectl("get", "cload", "-o", "name", check=False).split():
                release.kubectl("delete", name, "--wait=true", "--timeout=30s", check=False)
            release.uninstall()
            crd_installed.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    finally:
        system.stop()


def milvus_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    import subprocess

    sys.path.insert(0, str(repo_root()))  # the bench package lives at the checkout's top
    from bench.milvus_env import DEFAULT_MILVUS_CACHE, PymilvusDriver, ensure_venv

    python = ensure_venv(DEFAULT_MILVUS_CACHE)
    work = tmp_path_factory.mktemp("sdk-milvus")
    driver = PymilvusDriver.serve(python, work / "data", DEFAULT_MILVUS_CACHE / "bin", work / "driver.log")
    try:
        pid = int(driver.hello["pid"])
        ports = driver.hello["ports"]
        data = seeds.save_npz(work / "seeds.npz")
        setup = Path(__file__).with_name("milvus_setup.py")
        proc = subprocess.run(
            ["nsenter", "-t", str(pid), "-n", "--", str(python), str(setup),
             "--port", str(ports["proxy_port"]), "--data", str(data)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, f"milvus_setup.py failed:\n{proc.stderr[-3000:]}"
        yield Endpoint(
            "milvus",
            f"127.0.0.1:{ports['proxy_port']}",
            f"http://127.0.0.1:{ports['metrics_port']}",
            "root:Milvus",
            pid,
            rest_v2=False,
        )
    finally:
        driver.close()


@pytest.fixture(scope="package", params=selected_backends())
def endpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    if request.param == "proxy":
        yield from proxy_endpoint(request.getfixturevalue("crd_installed"), tmp_path_factory)
    else:
        yield from milvus_endpoint(tmp_path_factory)


@pytest.fixture(scope="package")
def programs() -> dict[str, sdk.Program]:
    """Every SDK program, built (or found in the cache)."""
    return sdk.prepare_all()
