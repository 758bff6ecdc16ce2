"""Run real querynode processes from tests (used by tests/querynode and the operator's tests).

    with QuerynodeProcess(root, host="127.0.0.2", token="t", memory_limit="1Gi") as qn:
        qn.url            # http://127.0.0.2:<free port>
        qn.pid            # for /proc/<pid>/status
        qn.request("POST", "/v1/segments/load", {...})  # -> (status, json body)

Only loopback addresses (127.0.0.0/8) are accepted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from vectorload_dev.procutil import die_with_parent

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class QuerynodeProcess:
    """A `python -m vectorload_querynode` child process bound to a loopback address."""

    def __init__(
        self,
        root: Path | str,
        host: str = "127.0.0.1",
        port: int | None = None,
        token: str | None = "test-token",  # noqa: S107 (a throwaway test token)
        memory_limit: str | int = "2Gi",
        node_name: str | None = None,
        threshold: float = 0.9,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | str | None = None,
    ) -> None:
        if ipaddress.ip_address(host) not in LOOPBACK:
            raise ValueError(f"test querynodes bind loopback addresses only, not {host}")
        self.root = Path(root)
        self.host = host
        self.port = port
        self.token = token
        self.memory_limit = str(memory_limit)
        self.node_name = node_name or f"qn-{host.replace('.', '-')}"
        self.threshold = threshold
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("querynode not started")
        return self.proc.pid

    def command(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "vectorload_querynode",
            "--root",
            str(self.root),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--node-name",
            self.node_name,
            "--memory-limit",
            self.memory_limit,
            "--threshold",
            str(self.threshold),
        ]
        if self.token is None:
            args.append("--insecure-no-auth")
        return args + self.extra_args

    def start(self, timeout: float = 30.0) -> QuerynodeProcess:
        if self.port is None:
            self.port = free_port(self.host)
        env = {**os.environ, **self.env}
        env.pop("VECTORLOAD_TOKEN", None)
        if self.token is not None:
            env["VECTORLOAD_TOKEN"] = self.token
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            env=env,
            stdout=self._log if self._log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log is not None else subprocess.DEVNULL,
            preexec_fn=die_with_parent(),  # a killed test run leaves no querynode behind
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"querynode exited with code {self.proc.returncode} (log: {self.log_path})"
                )
            with contextlib.suppress(OSError):
                status, _ = self.request("GET", "/readyz", timeout=2.0)
                if status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"querynode at {self.url} not ready after {timeout}s")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | bool | None = True,
        timeout: float = 60.0,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """One HTTP request; `token=True` sends this node's token, a string sends that, None none.
        Returns (status, parsed JSON or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 (http to loopback)
        req.add_header("Content-Type", "application/json")
        bearer = self.token if token is True else token if isinstance(token, str) else None
        if bearer:
            req.add_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, payload = err.code, err.read()
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode("utf-8", "replace")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> QuerynodeProcess:
        return self.start() if self.proc is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
