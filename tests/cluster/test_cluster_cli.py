"""`vectorload-dev cluster up | status | kubeconfig | down` as a user runs it: a second control plane,
started by the CLI, that leaves no process and no directory behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vectorload_dev", "cluster", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.split(") ", 1)[-1].startswith("Z")


def test_up_status_down_leaves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    env = dict(os.environ, VECTORLOAD_CLUSTER_DIR=str(state_dir))
    started = time.monotonic()
    up = _cli("up", "--crds", env=env)
    took = time.monotonic() - started
    assert up.returncode == 0, up.stderr
    assert "export KUBECONFIG=" in up.stdout
    assert took < 30, f"warm `cluster up` took {took:.1f} s"
    pids = json.loads((state_dir / "state.json").read_text())["pids"]
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    try:
        status = _cli("status", env=env)
        assert status.returncode == 0
        assert status.stdout.count("running") == 3
        kubeconfig = _cli("kubeconfig", env=env).stdout.strip()
        version = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "version", "-o", "json"], capture_output=True, text=True
        )
        assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == "v1.33.13"
        # a second `up` notices the running cluster instead of starting another
        again = _cli("up", env=env)
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        down = _cli("down", env=env)
    assert down.returncode == 0, down.stderr
    assert not state_dir.exists()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.1)
    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert "not running" in _cli("status", env=env).stdout


def test_down_when_nothing_runs_is_harmless(tmp_path: Path) -> None:
    env = dict(os.environ, VECTORLOAD_CLUSTER_DIR=str(tmp_path / "none"))
    result = _cli("down", env=env)
    assert result.returncode == 0
    assert "not running" in result.stdout
