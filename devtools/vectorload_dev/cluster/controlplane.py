"""Start and stop a real control plane (etcd, kube-apiserver, kube-controller-manager) on 127.0.0.1.

Everything a run needs lives in one state directory: certificates, the admin token file, etcd's
data, logs, the kubeconfig and `state.json` (ports and pids), so `vectorload-dev cluster down` can
find and stop what `vectorload-dev cluster up` started, and removes the directory afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from vectorload_dev.cluster import pki as pki_mod
from vectorload_dev.cluster.binaries import Binaries, ensure_built
from vectorload_dev.loopback import free_port
from vectorload_dev.procutil import die_with_parent

SERVICE_CIDR = "10.0.0.0/24"
ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "vectorload-admin"


class ControlPlaneError(RuntimeError):
    pass


@dataclass
class State:
    etcd_port: int = 0
    etcd_peer_port: int = 0
    api_port: int = 0
    token: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)


class ControlPlane:
    """One local control plane. `start()` returns when `/readyz` answers ok."""

    def __init__(
        self,
        state_dir: Path,
        binaries: Binaries | None = None,
        *,
        controller_manager: bool = True,
        die_with_parent: bool = True,
        log_stream: IO[str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.binaries = binaries or ensure_built()
        self.controller_manager = controller_manager
        self.die_with_parent = die_with_parent
        self.log_stream = log_stream
        self.state = State()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # ----- paths -------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.state.api_port}"

    @property
    def helm_bin(self) -> Path:
        return self.binaries.helm

    @property
    def kubectl_bin(self) -> Path:
        return self.binaries.kubectl

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def token(self) -> str:
        return self.state.token

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        self._say("generating certificates")
        pki = pki_mod.generate(self.pki_dir)
        self.state.token = secrets.token_hex(24)
        token_file = self.pki_dir / "tokens.csv"
        token_file.write_text(f'{self.state.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        token_file.chmod(0o600)
        self.state.etcd_port = free_port()
        self.state.etcd_peer_port = free_port()
        self.state.api_port = free_port()
        try:
            self._start_etcd()
            self._wait_etcd(deadline=started + timeout)
            self._start_apiserver(pki)
            self._write_kubeconfig(pki)
            self.wait_ready(deadline=started + timeout)
            if self.controller_manager:
                self._start_controller_manager(pki)
            self._save()
        except BaseException:
            self.stop(remove_state=False)
            raise
        self._say(f"control plane ready at {self.server} in {time.monotonic() - started:.1f} s")

    def stop(self, remove_state: bool = True) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and remove the state directory."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop_process(name)
        if remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def restart_apiserver(self, down_for: float = 0.0) -> None:
        """Kill kube-apiserver and start it again on the same port (fault tests)."""
        self._stop_process("kube-apiserver")
        time.sleep(down_for)
        self._spawn("kube-apiserver", self.state.commands["kube-apiserver"])
        self.wait_ready(deadline=time.monotonic() + 60)
        self._save()

    def is_running(self, name: str) -> bool:
        pid = self.state.pids.get(name)
        return pid is not None and _pid_runs(pid, self.state.commands.get(name, [""])[0])

    # ----- reattach (CLI) ----------------------------------------------------------------------
    @classmethod
    def load(cls, state_dir: Path, binaries: Binaries | None = None) -> ControlPlane:
        state_file = state_dir / "state.json"
        if not state_file.exists():
            raise ControlPlaneError(f"no control plane state in {state_dir}")
        plane = cls(state_dir, binaries, die_with_parent=False)
        data: dict[str, Any] = json.loads(state_file.read_text())
        plane.state = State(**data)
        return plane

    def _save(self) -> None:
        (self.state_dir / "state.json").write_text(json.dumps(asdict(self.state), indent=2))

    # ----- clients -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["HELM_CACHE_HOME"] = str(self.state_dir / "helm" / "cache")
        env["HELM_CONFIG_HOME"] = str(self.state_dir / "helm" / "config")
        env["HELM_DATA_HOME"] = str(self.state_dir / "helm" / "data")
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.kubectl_bin), *args], input=input, check=check, timeout=timeout)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.helm_bin), *args], input=input, check=check, timeout=timeout)

    def _run(
        self, cmd: list[str], *, input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env()
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"{Path(cmd[0]).name} {' '.join(cmd[1:])} failed ({result.returncode}):\n"
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET an API path as the admin; returns (status, body)."""
        request = urllib.request.Request(  # noqa: S310 (https to our own 127.0.0.1 server)
            self.server + path, headers={"Authorization": f"Bearer {self.state.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context()) as resp:  # noqa: S310
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def wait_ready(self, deadline: float) -> None:
        last = "no answer"
        while time.monotonic() < deadline:
            if "kube-apiserver" in self._procs and self._procs["kube-apiserver"].poll() is not None:
                raise ControlPlaneError(
                    "kube-apiserver exited during startup:\n" + self._log_tail("kube-apiserver")
                )
            try:
                status, body = self.get("/readyz", timeout=2)
                if status == 200:
                    return
                last = f"HTTP {status}: {body.strip()[-300:]}"
            except (OSError, ssl.SSLError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise ControlPlaneError(
            f"kube-apiserver not ready in time ({last})\n{self._log_tail('kube-apiserver')}"
        )

    # ----- processes ---------------------------------------------------------------------------
    def _start_etcd(self) -> None:
        data = self.state_dir / "etcd"
        peer = f"http://127.0.0.1:{self.state.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.state.etcd_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={data}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
        )

    def _wait_etcd(self, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.state.etcd_port}/health"
        while time.monotonic() < deadline:
            if self._procs["etcd"].poll() is not None:
                raise ControlPlaneError("etcd exited during startup:\n" + self._log_tail("etcd"))
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
                if b'"health":"true"' in resp.read():
                    return
            time.sleep(0.05)
        raise ControlPlaneError("etcd not healthy in time\n" + self._log_tail("etcd"))

    def _start_apiserver(self, pki: pki_mod.Pki) -> None:
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{self.state.etcd_port}",
                f"--cert-dir={self.pki_dir}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--secure-port={self.state.api_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--api-audiences={ISSUER}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={self.pki_dir / 'tokens.csv'}",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                "--event-ttl=1h",
                "--v=0",
            ],
        )

    def _start_controller_manager(self, pki: pki_mod.Pki) -> None:
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--authentication-skip-lookup=true",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=false",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route,-bootstrapsigner,-tokencleaner",
                "--concurrent-gc-syncs=5",
                "--v=0",
            ],
        )

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = (self.logs_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            die_with_parent(cmd) if self.die_with_parent else cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self._procs[name] = proc
        self.state.pids[name] = proc.pid
        self.state.commands[name] = cmd

    def _stop_process(self, name: str, grace: float = 5.0) -> None:
        proc = self._procs.pop(name, None)
        pid = self.state.pids.pop(name, None)
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            return
        if pid is None or not _pid_runs(pid, self.state.commands.get(name, [""])[0]):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + grace
        while time.monotonic() < end and _pid_runs(pid, ""):
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def _write_kubeconfig(self, pki: pki_mod.Pki) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "vectorload-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64encode(pki.ca_cert.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.state.token}}],
            "contexts": [
                {
                    "name": "vectorload-local",
                    "context": {"cluster": "vectorload-local", "user": ADMIN_USER, "namespace": "default"},
                }
            ],
            "current-context": "vectorload-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def _log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _say(self, message: str) -> None:
        if self.log_stream is not None:
            self.log_stream.write(f"  {message}\n")
            self.log_stream.flush()


def _pid_runs(pid: int, executable: str) -> bool:
    """True when `pid` is alive (and, if given, runs `executable`) — guards against pid reuse."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.split(") ", 1)[-1].startswith("Z"):
        return False
    return not executable or cmdline.split(b"\0", 1)[0].decode(errors="replace") == executable
