"""Run real querynode processes from tests (tests/querynode, the operator harness, benchmarks).

    with QuerynodeProcess(root, host=next_host(), token="t", memory_limit="1Gi") as qn:
        qn.url            # http://127.N.10.2:<free port>
        qn.pid            # for /proc/<pid>/status
        qn.request("POST", "/v1/segments/load", {...})  # -> (status, json body)

Only loopback addresses (127.0.0.0/8) are accepted; `next_host()` hands out this test run's own
(`vectorload_dev.loopback`). Also here: the querynode tests' helpers (the `metrics` collection,
distribution views, load-everything-and-wait).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.loopback import free_port, run_slot
from vectorload_dev.procutil import die_with_parent
from vectorload_dev.testing.wait import wait_for

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
TOKEN = "querynode-test-token"  # noqa: S105 (a throwaway token of local test querynodes)
# the data API is closed by default: test querynodes get a data token of their own
DATA_TOKEN = "querynode-test-data-token"  # noqa: S105

_hosts_lock = threading.Lock()
_hosts: Iterator[str] | None = None


def next_host() -> str:
    """A distinct loopback address per querynode in this test run's slot (127.N.10-19.x), so that
    tests, and two test runs, never share an address:port."""
    global _hosts
    with _hosts_lock:
        if _hosts is None:
            _hosts = itertools.cycle(run_slot().querynode_hosts())
        return next(_hosts)


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
            # a killed test run leaves no querynode behind
            die_with_parent(self.command()),
            env=env,
            stdout=self._log if self._log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log is not None else subprocess.DEVNULL,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for(f"querynode at {self.url} ready", self._ready, timeout)

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"querynode exited with code {self.proc.returncode} (log: {self.log_path})")
        with contextlib.suppress(OSError):
            status, _ = self.request("GET", "/readyz", timeout=2.0)
            return status == 200
        return False

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


QuerynodeFactory = Callable[..., QuerynodeProcess]

METRICS_COLLECTION = "metrics"
METRICS_DIM = 24


def metrics_schema() -> CollectionSchema:
    return CollectionSchema(
        name=METRICS_COLLECTION,
        fields=(
            FieldSchema("pk", "int64", is_primary=True),
            FieldSchema("group", "int64"),
            FieldSchema("v_l2", "float_vector", dim=METRICS_DIM, metric="l2"),
            FieldSchema("v_ip", "float_vector", dim=METRICS_DIM, metric="ip"),
            FieldSchema("v_cos", "float_vector", dim=METRICS_DIM, metric="cosine"),
        ),
        dynamic_field=False,
    )


def metrics_data(segment: int, rows: int = 700) -> dict[str, Any]:
    rng = np.random.default_rng([7, segment])
    vectors = {
        name: rng.standard_normal((rows, METRICS_DIM)).astype(np.float32)
        for name in ("v_l2", "v_ip", "v_cos")
    }
    vectors["v_ip"] /= np.linalg.norm(vectors["v_ip"], axis=1, keepdims=True)  # ip on unit vectors
    first = segment * rows
    return {
        "vectors": vectors,
        "pks": np.arange(first, first + rows, dtype=np.int64),
        "scalars": {"group": (np.arange(first, first + rows) % 10).astype(np.int64)},
    }


def write_metrics_collection(root: Path) -> None:
    writer = CollectionWriter(root)
    writer.create_collection(metrics_schema())
    for segment in range(2):
        data = metrics_data(segment)
        writer.write_segment(
            METRICS_COLLECTION,
            "_default",
            f"seg-{segment}",
            data["vectors"],
            data["pks"],
            data["scalars"],
            None,
            M=16,
            ef_construction=100,
            num_threads=1,
        )


def distribution(qn: QuerynodeProcess) -> dict[str, Any]:
    status, body = qn.request("GET", "/v1/distribution")
    assert status == 200, body
    return dict(body)


def segment_states(qn: QuerynodeProcess) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(s["collection"], s["partition"], s["segment"]): s for s in distribution(qn)["segments"]}


def load_all(qn: QuerynodeProcess, root: Path, collection: str, **body: Any) -> list[dict[str, Any]]:
    """Load every segment of every partition and wait until all are loaded."""
    status, catalog = qn.request("GET", f"/v1/catalog/{collection}")
    assert status == 200, catalog
    results = []
    expected = 0
    for partition in catalog["partitions"]:
        ids = [s["id"] for s in partition["segments"]]
        expected += len(ids)
        status, answer = qn.request(
            "POST",
            "/v1/segments/load",
            {"collection": collection, "partition": partition["name"], "segments": ids, **body},
        )
        assert status == 200, answer
        results += answer["results"]
    wait_for(
        f"{expected} segments of {collection} loaded on {qn.node_name}",
        lambda: (
            sum(
                1
                for s in distribution(qn)["segments"]
                if s["collection"] == collection and s["state"] == "loaded"
            )
            == expected
        ),
        interval=0.05,
    )
    return results
