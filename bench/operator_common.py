"""Shared plumbing of the operator benchmarks: the harness of `tests/operator/`
(`vectorload_dev.testing.operator_harness`: querynode processes on 127.1.x.y behind Pod objects whose status
the benchmark sets, `vectorload operator` as a subprocess) on a fresh local control plane (etcd +
kube-apiserver + kube-controller-manager) with the CollectionLoad CRD, plus what every operator
benchmark does around it: common flags, setup and teardown, CPU/RSS readings, a watch that
timestamps every CollectionLoad event, and the results file."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from bench.common import DEFAULT_CACHE, ensure_sample, proc_status, segments, vector_fields, warm_page_cache
from bench.common import write_result as write_result_file
from vectorload_dev.cluster.binaries import ensure_built
from vectorload_dev.cluster.cli import install_crds
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.testing import loopback_hosts, wait_for
from vectorload_dev.testing.operator_harness import KubeClients, OperatorProcess, QuerynodePool
from vectorload_operator.settings import CRD_GROUP, CRD_PLURAL, CRD_VERSION

TOKEN = "bench-operator-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# loopback addresses of benchmark querynodes (test runs use 127.2-254.x.y, one slot per run)
_hosts = loopback_hosts(1)


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()  # fields from 3 on; the command may hold spaces
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


# ------------------------------------------------------------------------------ control plane


class Cluster:
    """A fresh local control plane with the CRD installed, and API clients for it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.plane = ControlPlane(workdir / "controlplane", ensure_built(build=False))

    def start(self) -> Cluster:
        self.plane.start()
        install_crds(self.plane)
        self.kube = KubeClients.of(self.plane)
        return self

    def stop(self) -> None:
        self.plane.stop(remove_state=False)

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
                self.max_rss = max(self.max_rss, proc_status(self.pid, "VmRSS"))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------ CollectionLoads


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
                    self.cluster.kube.custom.list_namespaced_custom_object,
                    CRD_GROUP,
                    CRD_VERSION,
                    self.namespace,
                    CRD_PLURAL,
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


# ------------------------------------------------------------------------------- one benchmark


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Flags every operator benchmark takes."""
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        help="extra operator flag (repeat); default flags otherwise",
    )
    p.add_argument("--label", default="", help="suffix of the results file name (e.g. for other flags)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")


def prepared_sample(size: str, cache_dir: Path) -> Path:
    """The sample of `size` (built once in `cache_dir`), its files read into the page cache."""
    root = ensure_sample(size, cache_dir)
    warm_page_cache([f for f in root.rglob("*") if f.is_file()])
    return root


@dataclass
class Bench:
    """What a benchmark runs against: one namespace of querynodes and the operator (not started)."""

    workdir: Path
    cluster: Cluster
    pool: QuerynodePool
    operator: OperatorProcess
    load_before: tuple[float, float, float]

    @property
    def ns(self) -> str:
        return self.pool.ns


@contextlib.contextmanager
def operator_bench(prefix: str, namespace: str, root: Path, args: argparse.Namespace) -> Iterator[Bench]:
    """A fresh control plane with namespace `namespace`, an empty querynode pool on storage
    `root` and an operator with `args.operator_arg`; everything is stopped at the end."""
    load_before = loadavg()
    with bench_workdir(prefix, args.keep) as workdir:
        cluster = Cluster(workdir).start()
        try:
            pool = QuerynodePool(
                cluster.plane, cluster.namespace(namespace), root, workdir, TOKEN, _hosts, cluster.kube
            )
            operator = OperatorProcess(cluster.plane, workdir, TOKEN, args.operator_arg)
            try:
                yield Bench(workdir, cluster, pool, operator, load_before)
            finally:
                operator.stop()
                pool.stop_all()
        finally:
            cluster.stop()


def write_result(
    benchmark: str, size: str, args: argparse.Namespace, bench: Bench, data: dict[str, Any]
) -> Path:
    """`bench/results/<benchmark>_<size>[-label].json`; adds to `data` the operator flags and the
    load average before and after (other work on the machine skews every figure)."""
    data.update(
        operator_flags=args.operator_arg or "defaults",
        loadavg_before=bench.load_before,
        loadavg_after=loadavg(),
    )
    return write_result_file(benchmark, size + (f"-{args.label}" if args.label else ""), data)


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


def index_specs(root: Path, held: list[tuple[str, str]]) -> list[str]:
    """`space|dim|path` of every vector index file of the given (partition, segment) pairs of the
    sample collection, as `bench.bench_querynode_load.bare_load_seconds` takes them."""
    fields = vector_fields(root)
    wanted = set(held)
    return [
        f"{space}|{dim}|{seg.paths[name]}"
        for seg in sorted(segments(root), key=lambda seg: (seg.manifest.partition, seg.manifest.segment_id))
        if (seg.manifest.partition, seg.manifest.segment_id) in wanted
        for name, (space, dim) in fields.items()
    ]
