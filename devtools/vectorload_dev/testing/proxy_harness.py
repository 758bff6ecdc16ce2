"""Run `vectorload proxy` (the Milvus front door) as a real process, for `tests/proxy/` and
`bench/bench_proxy.py`.

    proxy = ProxyProcess(plane, workdir, namespace="ns", storage_root=root, data_token=TEST_TOKEN).start()
    proxy.uri            # http://127.N.0.1:<port>  (gRPC and REST v2; pymilvus' uri)
    proxy.http_url       # http://127.N.0.1:<port>  (REST v1, /metrics, /healthz, /readyz)
    proxy.stop()

It binds this test run's own loopback address (`vectorload_dev.loopback.run_slot().host`) on free
ports, authenticates with a credentials file it writes (`ROOT_TOKEN`, or `no_auth=True`), and
sends its log to `workdir/proxy-<n>.log`.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import MilvusClient

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.cluster.binaries import ensure_built
from vectorload_dev.cluster.cli import install_crds
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.loopback import free_port, run_slot
from vectorload_dev.procutil import die_with_parent
from vectorload_dev.testing.operator_harness import QuerynodePool
from vectorload_dev.testing.wait import wait_for

__all__ = [
    "API_KEY",
    "MY_COLLECTION",
    "MY_DIM",
    "NAMESPACE",
    "ROOT_PASSWORD",
    "ROOT_TOKEN",
    "ProxyProcess",
    "SearchLoop",
    "cload_of",
    "my_collection_schema",
    "write_my_collection",
]

ROOT_PASSWORD = "Milvus"  # noqa: S105 (Milvus' default root password, as the seeds use it)
ROOT_TOKEN = f"root:{ROOT_PASSWORD}"
API_KEY = "proxy-test-api-key"
_numbers = itertools.count()
NAMESPACE = "milvus"  # the namespace of tests/proxy (its database `default`)
MY_COLLECTION = "my_collection"
MY_DIM = 8


def my_collection_schema() -> CollectionSchema:
    """The seed's `my_collection`: fields `my_id` and `my_vector` (and one more, and `$meta`)."""
    return CollectionSchema(
        name=MY_COLLECTION,
        fields=(
            FieldSchema("my_id", "int64", is_primary=True),
            FieldSchema("my_vector", "float_vector", dim=MY_DIM, metric="ip"),
            FieldSchema("color", "varchar", max_length=16),
        ),
        dynamic_field=True,
    )


def write_my_collection(root: Path) -> None:
    writer = CollectionWriter(root)
    writer.create_collection(my_collection_schema())
    rng = np.random.default_rng(7)
    colors = ("red", "green", "blue")
    for segment in range(2):
        rows = 100
        first = segment * rows
        writer.write_segment(
            MY_COLLECTION,
            "_default",
            f"seg-{segment}",
            vectors={"my_vector": rng.normal(size=(rows, MY_DIM)).astype(np.float32)},
            primary_keys=np.arange(first, first + rows, dtype=np.int64),
            scalars={"color": [colors[i % 3] for i in range(first, first + rows)]},
            dynamic=[
                {"shape": "round" if i % 2 else "square", "weight": i} for i in range(first, first + rows)
            ],
            M=16,
            ef_construction=100,
        )


def start_plane(state_dir: Path, namespace: str) -> ControlPlane:
    """A control plane of its own (what a proxy test package runs against): started, the CRD
    installed, `namespace` created and its default ServiceAccount there (pods and CollectionLoads
    can be made). The caller stops it; a failure on the way stops it here."""
    plane = ControlPlane(state_dir, ensure_built(build=False))
    try:
        plane.start()
        install_crds(plane)
        plane.kubectl("create", "namespace", namespace)
        wait_for(
            f"ServiceAccount default in {namespace}",
            lambda: (
                plane.kubectl("-n", namespace, "get", "serviceaccount", "default", check=False).returncode
                == 0
            ),
            timeout=60,
        )
    except BaseException:
        plane.stop(remove_state=False)
        raise
    return plane


class ProxyProcess:
    def __init__(
        self,
        plane: ControlPlane,
        workdir: Path,
        namespace: str,
        storage_root: Path,
        data_token: str | None,
        no_auth: bool = False,
        credentials: Sequence[str] = (ROOT_TOKEN, API_KEY),
        extra_args: Sequence[str] = (),
        host: str | None = None,
    ) -> None:
        self.plane = plane
        self.workdir = workdir
        self.namespace = namespace
        self.storage_root = storage_root
        self.no_auth = no_auth
        self.number = next(_numbers)
        self.host = host or run_slot().host  # benchmarks pass their own (127.1.x.y)
        self.port = free_port(self.host)
        self.http_port = free_port(self.host)
        self.credentials_file = workdir / f"proxy-{self.number}-credentials"
        self.credentials_file.write_text("".join(f"{c}\n" for c in credentials))
        self.data_token_file: Path | None = None
        if data_token is not None:
            self.data_token_file = workdir / f"proxy-{self.number}-data-token"
            self.data_token_file.write_text(data_token)
        self.log_path = workdir / f"proxy-{self.number}.log"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def command(self) -> list[str]:
        args = [
            sys.executable, "-m", "vectorload.cli", "proxy",
            "--port", str(self.port), "--http-port", str(self.http_port), "--bind-address", self.host,
            "--namespace", self.namespace, "--storage-root", str(self.storage_root),
        ]  # fmt: skip
        if self.no_auth:
            args.append("--no-auth")
        else:
            args += ["--credentials-file", str(self.credentials_file)]
        if self.data_token_file is not None:
            args += ["--data-token-file", str(self.data_token_file)]
        return args + self.extra_args

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("proxy not started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> ProxyProcess:
        """Start it and wait until `/readyz` says its watch cache has listed everything."""
        env = self.plane.env()
        env.pop("VECTORLOAD_DATA_TOKEN", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                die_with_parent(self.command), env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for("proxy /readyz", self._ready, timeout=timeout)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"proxy exited ({self.proc.returncode}); log:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.http_url}/readyz", timeout=1) as r:  # noqa: S310 (loopback)
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 15 s); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.http_url}/metrics", timeout=5) as r:  # noqa: S310 (loopback)
            return str(r.read().decode())

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def cload_of(pool: QuerynodePool, collection: str) -> dict[str, Any]:
    """The one CollectionLoad of `collection` in the pool's namespace."""
    found = [o for o in pool.collection_loads() if o["spec"]["collection"] == collection]
    assert len(found) == 1, found
    return found[0]


class SearchLoop:
    """Searches in a thread until stopped; every failure is kept."""

    def __init__(self, uri: str, collection: str, field: str, dim: int, **kwargs: Any) -> None:
        self.uri, self.collection, self.field, self.dim, self.kwargs = uri, collection, field, dim, kwargs
        self.errors: list[str] = []
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = MilvusClient(uri=self.uri, token=ROOT_TOKEN)
        rng = np.random.default_rng(3)
        while not self._stop.is_set():
            vector = rng.standard_normal(self.dim).astype(np.float32).tolist()
            try:
                hits = client.search(self.collection, [vector], anns_field=self.field, limit=5, **self.kwargs)
                if len(hits[0]) != 5:
                    self.errors.append(f"{len(hits[0])} hits instead of 5")
            except Exception as exc:
                self.errors.append(str(exc))
            self.count += 1
        client.close()

    def __enter__(self) -> SearchLoop:
        self._thread.start()
        wait_for("the search loop's first searches", lambda: self.count >= 3, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
