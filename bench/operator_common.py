"""Shared plumbing of the operator benchmarks: the same real pieces as `tests/operator/` — a local
control plane (etcd + kube-apiserver + kube-controller-manager) with the CollectionLoad CRD,
querynode processes on 127.x.y.z behind Pod objects whose status the benchmark sets (a fake
kubelet), and `vectorload operator` as a subprocess."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from vectorload.devcluster.binaries import ensure_built
from vectorload.devcluster.cli import install_crds
from vectorload.devcluster.controlplane import ControlPlane
from vectorload.storage.hnsw import space_for
from vectorload.storage.reader import FilesystemReader, segment_file_rel_path
from vectorload_querynode.testing import QuerynodeProcess, free_port

GROUP, VERSION, PLURAL = "vectorload.io", "v1alpha1", "collectionloads"
TOKEN = "bench-operator-token"
QUERYNODE_LABELS = {"app.kubernetes.io/component": "querynode"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

# loopback addresses of benchmark querynodes (the operator tests use 127.0.20.x - 127.0.249.x)
_hosts = (f"127.1.{a}.{b}" for a, b in itertools.product(range(1, 250), range(2, 250)))


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()  # fields from 3 on; the command may hold spaces
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_kb(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


# ------------------------------------------------------------------------------ control plane


class Cluster:
    """A fresh local control plane with the CRD installed, and API clients for it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.plane = ControlPlane(workdir / "controlplane", ensure_built(build=False))

    def start(self) -> Cluster:
        self.plane.start()
        install_crds(self.plane)
        api_client = config.new_client_from_config(config_file=str(self.plane.kubeconfig))  # type: ignore[no-untyped-call]
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        return self

    def stop(self) -> None:
        self.plane.stop(remove_state=False)

    def collection_loads(self, namespace: str) -> list[dict[str, Any]]:
        answer: Any = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return list(answer["items"])

    def namespace(self, name: str) -> str:
        self.plane.kubectl("create", "namespace", name)
        # kube-controller-manager creates the default ServiceAccount; pods need it
        wait_for(
            f"serviceaccount default in {name}",
            lambda: (
                self.plane.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode
                == 0
            ),
            timeout=30,
            interval=0.1,
        )
        return name

    def apiserver_requests(self) -> dict[tuple[str, str, str, str], float]:
        """kube-apiserver's `apiserver_request_total` summed by (verb, group, resource, subresource)."""
        status, body = self.plane.get("/metrics", timeout=10)
        if status != 200:
            raise RuntimeError(f"GET /metrics answered {status}: {body[:200]}")
        out: dict[tuple[str, str, str, str], float] = {}
        for line in body.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels_text))
            key = (labels.get("verb", ""), labels.get("group", ""), labels.get("resource", ""),
                   labels.get("subresource", ""))  # fmt: skip
            out[key] = out.get(key, 0.0) + float(value)
        return out


def request_delta(
    before: dict[tuple[str, str, str, str], float], after: dict[tuple[str, str, str, str], float]
) -> dict[tuple[str, str, str, str], float]:
    keys = set(before) | set(after)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys}
    return {k: v for k, v in delta.items() if v > 0}


# ------------------------------------------------------------------------------------ operator


class Operator:
    """`vectorload operator --all-namespaces` as a subprocess (logs to a file)."""

    def __init__(self, cluster: Cluster, workdir: Path, extra_args: list[str] | None = None) -> None:
        self.cluster = cluster
        self.log_path = workdir / "operator.log"
        self.token_file = workdir / "querynode-token"
        self.token_file.write_text(TOKEN)
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vectorload.cli", "operator", "--all-namespaces",
            "--token-file", str(self.token_file),
            "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port),
            "--bind-address", "127.0.0.1",
            *self.extra_args,
        ]  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Operator:
        env = {**self.cluster.plane.env(), "KUBECONFIG": str(self.cluster.plane.kubeconfig)}
        env.pop("VECTORLOAD_TOKEN", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for("operator liveness", self._alive, timeout=60, interval=0.1)
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"operator exited ({self.proc.returncode}); see {self.log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread; VmHWM is the kernel's peak."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.max_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.max_rss = max(self.max_rss, proc_kb(self.pid, "VmRSS"))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------------- querynodes


class Pool:
    """Querynode processes of one namespace and their Pod objects (status set by us)."""

    def __init__(self, cluster: Cluster, namespace: str, root: Path, workdir: Path) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.root = root
        self.workdir = workdir
        self.nodes: dict[str, QuerynodeProcess] = {}

    def add_node(self, name: str, memory_limit: str = "2Gi", extra_args: list[str] | None = None) -> None:
        qn = QuerynodeProcess(
            self.root,
            host=next(_hosts),
            token=TOKEN,
            memory_limit=memory_limit,
            node_name=name,
            extra_args=extra_args,
            log_path=self.workdir / f"{self.ns}-{name}.log",
        ).start()
        self.nodes[name] = qn
        pod: Any = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": dict(QUERYNODE_LABELS)},
            "spec": {
                "containers": [
                    {"name": "querynode", "image": "vectorload:dev",
                     "ports": [{"name": "http", "containerPort": qn.port}]}
                ]
            },
        }  # fmt: skip
        self.cluster.core.create_namespaced_pod(self.ns, pod)
        self.set_ready(name, True)

    def set_ready(self, name: str, ready: bool) -> None:
        qn = self.nodes[name]
        status = {
            "status": {
                "phase": "Running",
                "podIP": qn.host,
                "podIPs": [{"ip": qn.host}],
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            }
        }
        self.cluster.core.patch_namespaced_pod_status(name, self.ns, status)

    def remove_node(self, name: str) -> None:
        """Kill the process (if alive) and delete its Pod at once."""
        self.nodes.pop(name).kill()
        with contextlib.suppress(ApiException):
            self.cluster.core.delete_namespaced_pod(name, self.ns, grace_period_seconds=0)

    def distribution(self, name: str) -> dict[str, Any]:
        status, body = self.nodes[name].request("GET", "/v1/distribution", timeout=10)
        if status != 200:
            raise RuntimeError(f"distribution of {name}: {status} {body}")
        return dict(body)

    def stop_all(self) -> None:
        for qn in self.nodes.values():
            qn.kill()


# ------------------------------------------------------------------------------ CollectionLoads


def collection_load(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CollectionLoad", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def kubectl_apply(cluster: Cluster, namespace: str, objects: list[dict[str, Any]]) -> None:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    cluster.plane.kubectl("-n", namespace, "apply", "-f", "-", input=doc)


def is_loaded(obj: dict[str, Any]) -> bool:
    """loadState Loaded for the current generation."""
    st = obj.get("status") or {}
    return bool(
        st.get("loadState") == "Loaded" and st.get("observedGeneration") == obj["metadata"].get("generation")
    )


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


@dataclass
class Seen:
    at: float  # monotonic time the event was received
    type: str
    obj: dict[str, Any]


@dataclass
class Watcher:
    """Watches every CollectionLoad of a namespace in a thread and keeps each event with the time
    it arrived; `wait` blocks until an event after a given time satisfies a predicate."""

    cluster: Cluster
    namespace: str
    events: list[Seen] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _watch: watch.Watch | None = None

    def __enter__(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]
        if self._thread is not None:
            self._thread.join(timeout=1)  # a daemon thread; an open watch may block

    def _run(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            self._watch = watch.Watch()  # type: ignore[no-untyped-call]
            kwargs: dict[str, Any] = {"timeout_seconds": 60}
            if rv is not None:
                kwargs["resource_version"] = rv
            try:
                for ev in self._watch.stream(  # type: ignore[no-untyped-call]
                    self.cluster.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    **kwargs,
                ):
                    now = time.monotonic()
                    obj = ev["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    with self._cond:
                        self.events.append(Seen(now, ev["type"], obj))
                        self._cond.notify_all()
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: expired, restart from the current state
                    raise
                rv = None
            except Exception:
                if self._stop.is_set():  # the control plane went away after we were done
                    return
                time.sleep(0.1)  # a dropped connection: resume from the last resourceVersion

    def wait(
        self, predicate: Callable[[dict[str, Any]], bool], after: float, timeout: float, what: str = "event"
    ) -> Seen:
        deadline = time.monotonic() + timeout
        checked = 0
        with self._cond:
            while True:
                for seen in self.events[checked:]:
                    if seen.at >= after and seen.type != "DELETED" and predicate(seen.obj):
                        return seen
                checked = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
                self._cond.wait(left)


@contextlib.contextmanager
def bench_workdir(prefix: str, keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


# ------------------------------------------------------------------------------- bare baseline


def index_specs(root: Path, collection: str, held: list[tuple[str, str]]) -> list[str]:
    """`space|dim|path` of every vector index file of the given (partition, segment) pairs, as
    `bench.bench_querynode_load.bare_load_seconds` takes them."""
    reader = FilesystemReader(root)
    schema = reader.schema(collection)
    specs = []
    for partition, segment in sorted(held):
        manifest = reader.segment(collection, partition, segment)
        for f in schema.vector_fields:
            specs.append(f"{space_for(f)}|{f.dim}|{root / segment_file_rel_path(manifest, f.name)}")
    return specs


def held_segments(dist: dict[str, Any], collection: str) -> list[tuple[str, str, int]]:
    """(partition, segment, bytes) a querynode reports loaded for `collection`."""
    return [
        (s["partition"], s["segment"], int(s.get("bytes") or 0))
        for s in dist["segments"]
        if s["collection"] == collection and s["state"] == "loaded"
    ]
