"""`vectorload-dev kubelet` as a background process of a local cluster.

The kubelet keeps its state in `<cluster state dir>/kubelet/` and records itself in
`kubelet.pid` there (pid and process start time, so a reused pid is never signalled).
`vectorload-dev cluster down` calls `stop_background_kubelet()` before it stops the API server, so
`make down` also ends the kubelet and, with it, every pod process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.kubelet.ipam import DEFAULT_POD_NETWORK
from vectorload_dev.procutil import die_with_parent
from vectorload_dev.testing.wait import WaitTimeout, wait_for

PID_FILE = "kubelet.pid"
KUBELET_DIR = "kubelet"


class KubeletError(RuntimeError):
    pass


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(") ", 1)[-1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def _recorded(state_dir: Path) -> int | None:
    """The pid recorded in `state_dir/kubelet.pid` if that process still runs."""
    try:
        data = json.loads((state_dir / PID_FILE).read_text())
    except (OSError, ValueError):
        return None
    pid = int(data.get("pid", 0))
    if pid <= 0 or _start_time(pid) != data.get("start"):
        return None
    return pid


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        wait_for(f"kubelet {pid} to exit", lambda: _start_time(pid) is None, timeout)
    except WaitTimeout:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_background_kubelet(cluster_state_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the kubelet recorded under `cluster_state_dir`; True when one was running."""
    state_dir = cluster_state_dir / KUBELET_DIR
    pid = _recorded(state_dir)
    if pid is None:
        return False
    _terminate(pid, timeout)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    return True


class BackgroundKubelet:
    """One `vectorload-dev kubelet` process serving `node_name` of `plane`.

    `detached=True` (the demo) lets it outlive this Python process; otherwise it gets SIGTERM
    when this process dies (a killed test run leaves no kubelet or pod process behind)."""

    def __init__(
        self,
        plane: ControlPlane,
        state_dir: Path,
        node_name: str = "local-process-node",
        *,
        extra_args: tuple[str, ...] = (),
        detached: bool = False,
        pod_network: str | None = None,
    ) -> None:
        self.plane = plane
        self.state_dir = state_dir
        self.node_name = node_name
        self.extra_args = extra_args
        self.detached = detached
        self.pod_network = pod_network
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    @property
    def pod_prefix(self) -> str:
        """What every pod IP of this kubelet starts with: `127.x.y.` of its pod network."""
        network = self.pod_network or DEFAULT_POD_NETWORK
        return network.rsplit(".", 1)[0] + "."

    @property
    def log(self) -> Path:
        return self.state_dir / "kubelet.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def running(self) -> bool:
        return _recorded(self.state_dir) is not None

    def start(self, timeout: float = 30.0) -> bool:
        """Start it unless the recorded kubelet still runs; False when it was already running."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        existing = _recorded(self.state_dir)
        if existing is not None:
            self.pid = existing
            self.wait_node_ready(timeout)
            return False
        # the kubelet reads its own kubeconfig; containers never inherit the environment
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        cmd = [
            sys.executable, "-m", "vectorload_dev", "kubelet",
            "--kubeconfig", str(self.plane.kubeconfig),
            "--state-dir", str(self.state_dir),
            "--node-name", self.node_name,
            "--heartbeat-interval", "5",
            "--backoff-base", "0.5",
            "--backoff-max", "5",
            "--max-grace-period", "10",
            *(("--pod-network", self.pod_network) if self.pod_network else ()),
            *self.extra_args,
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                # SIGTERM, not SIGKILL: a clean kubelet shutdown that stops its pods
                cmd if self.detached else die_with_parent(cmd, signal.SIGTERM),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.pid = self.proc.pid
        start = _start_time(self.pid)
        (self.state_dir / PID_FILE).write_text(json.dumps({"pid": self.pid, "start": start}))
        try:
            self.wait_node_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return True

    def wait_node_ready(self, timeout: float) -> None:
        wait_for(
            f"node {self.node_name} Ready",
            self._node_ready,
            timeout,
            interval=0.2,
            details=lambda: f"kubelet log:\n{self.log_tail()}",
        )

    def _node_ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise KubeletError(f"kubelet exited ({self.proc.returncode}):\n{self.log_tail()}")
        status, body = self.plane.get(f"/api/v1/nodes/{self.node_name}")
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        elif self.pid is not None and _recorded(self.state_dir) == self.pid:
            _terminate(self.pid, timeout)
        (self.state_dir / PID_FILE).unlink(missing_ok=True)
