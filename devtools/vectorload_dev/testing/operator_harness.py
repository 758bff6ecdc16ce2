"""Run the operator against real pieces, for `tests/operator/` and `bench/bench_operator_*`.

The pieces are the real ones except the kubelet: a local control plane (`vectorload_dev.cluster`)
with the CollectionLoad CRD, querynode processes on loopback addresses behind Pod objects whose
status this harness sets (a fake kubelet), and `vectorload operator` as a subprocess.

    pool = QuerynodePool(plane, "ns", storage_root, workdir)
    pool.add_node("qn-0")                      # process + Pod, Running and Ready
    op = OperatorProcess(plane, workdir).start()
    pool.apply("book", {"collection": "book"})
    pool.wait_state("book", "Loaded")
    op.stop(); pool.stop_all()

Only loopback addresses are used (`vectorload_dev.testing.querynode_harness` refuses any other),
and only this test run's own (`vectorload_dev.loopback`): querynodes on 127.N.20-249.x, the
operator's metrics and health servers on 127.N.0.1.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vectorload.storage.sample import COLLECTION
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.loopback import free_port, run_slot
from vectorload_dev.procutil import die_with_parent
from vectorload_dev.testing.querynode_harness import QuerynodeProcess
from vectorload_dev.testing.wait import wait_for
from vectorload_operator.settings import CRD_GROUP, CRD_KIND, CRD_PLURAL, CRD_VERSION

__all__ = [
    "FAKE_SCHEDULER",
    "QUERYNODE_LABELS",
    "TEST_TOKEN",
    "KubeClients",
    "OperatorProcess",
    "QuerynodePool",
    "api_not_found",
    "collection_load",
    "condition",
    "is_loaded",
    "loaded_segments",
]

TEST_TOKEN = "operator-test-token"  # noqa: S105 (a throwaway token of local test querynodes)
QUERYNODE_LABELS = {"app.kubernetes.io/component": "querynode"}
# no kubelet or scheduler binds pods of this scheduler name: the test plays their kubelet
FAKE_SCHEDULER = "vectorload-test-fake-kubelet"

_hosts_lock = threading.Lock()
_pool_hosts: Iterator[str] | None = None


def _next_pool_host() -> str:
    """The next querynode address of this run's operator pools (127.N.20.2 upward)."""
    global _pool_hosts
    with _hosts_lock:
        if _pool_hosts is None:
            _pool_hosts = run_slot().pool_hosts()
        return next(_pool_hosts)


def api_not_found(exc: Exception) -> bool:
    """For `wait_for(not_yet=...)`: an API 404 means the object is not there yet."""
    return isinstance(exc, ApiException) and exc.status == 404


@dataclass(frozen=True)
class KubeClients:
    """API clients of one control plane (admin kubeconfig)."""

    core: Any  # kubernetes.client.CoreV1Api
    custom: Any  # kubernetes.client.CustomObjectsApi

    @classmethod
    def of(cls, plane: ControlPlane) -> KubeClients:
        api_client = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        return cls(client.CoreV1Api(api_client), client.CustomObjectsApi(api_client))


def collection_load(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A CollectionLoad object (for create or `kubectl apply`)."""
    return {
        "apiVersion": f"{CRD_GROUP}/{CRD_VERSION}",
        "kind": CRD_KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


def is_loaded(obj: dict[str, Any]) -> bool:
    """loadState Loaded for the object's current generation."""
    st = obj.get("status") or {}
    return bool(
        st.get("loadState") == "Loaded" and st.get("observedGeneration") == obj["metadata"].get("generation")
    )


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    """The status condition `type_` of a CollectionLoad object ({} when absent)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def loaded_segments(dist: dict[str, Any], collection: str = COLLECTION) -> list[tuple[str, str, int]]:
    """(partition, segment, bytes) that a `/v1/distribution` answer reports loaded for `collection`."""
    return [
        (s["partition"], s["segment"], int(s.get("bytes") or 0))
        for s in dist["segments"]
        if s["collection"] == collection and s["state"] == "loaded"
    ]


class OperatorProcess:
    """`vectorload operator --all-namespaces` as a subprocess of the test or benchmark, with its
    metrics and health servers on free loopback ports and its output in `workdir/operator.log`."""

    def __init__(
        self,
        plane: ControlPlane,
        workdir: Path,
        token: str = TEST_TOKEN,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.plane = plane
        self.log_path = workdir / "operator.log"
        self.token_file = workdir / "operator-token"
        self.token_file.write_text(token)
        self.host = run_slot().host  # this run's own address: another run's ports never clash
        self.metrics_port = free_port(self.host)
        self.health_port = free_port(self.host)
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vectorload.cli", "operator", "--all-namespaces",
            "--token-file", str(self.token_file),
            "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port),
            "--bind-address", self.host,
            *self.extra_args,
        ]  # fmt: skip

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("operator not started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        """Start it and wait until its liveness endpoint answers."""
        env = self.plane.env()  # the environment with this plane's KUBECONFIG
        env.pop("VECTORLOAD_TOKEN", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                die_with_parent(self.command), env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for("operator liveness", self._alive, timeout=timeout)
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"operator exited ({self.proc.returncode}); log:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.health_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL with `kill`) and wait; SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.host}:{self.metrics_port}/metrics", timeout=2) as r:
            return str(r.read().decode())

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class QuerynodePool:
    """One namespace: querynode processes, their Pod objects, and its CollectionLoads."""

    def __init__(
        self,
        plane: ControlPlane,
        namespace: str,
        root: Path,
        workdir: Path,
        token: str = TEST_TOKEN,
        hosts: Iterator[str] | None = None,
        kube: KubeClients | None = None,
    ) -> None:
        self.plane = plane
        self.ns = namespace
        self.root = root
        self.workdir = workdir
        self.token = token
        self._hosts = hosts  # None: this run's pool addresses
        kube = kube or KubeClients.of(plane)
        self.core = kube.core
        self.custom = kube.custom
        self.nodes: dict[str, QuerynodeProcess] = {}

    # ---------------------------------------------------------------- querynodes
    def _process(
        self, name: str, host: str, memory_limit: str, port: int | None, extra_args: list[str] | None
    ) -> QuerynodeProcess:
        return QuerynodeProcess(
            self.root,
            host=host,
            port=port,
            token=self.token,
            memory_limit=memory_limit,
            node_name=name,
            extra_args=extra_args,
            log_path=self.workdir / f"{self.ns}-{name}.log",
        ).start()

    def add_node(
        self,
        name: str,
        memory_limit: str = "256Mi",
        labels: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> QuerynodeProcess:
        """Start a querynode and create its Pod (Running, Ready, port `http` = the process's)."""
        host = next(self._hosts) if self._hosts is not None else _next_pool_host()
        qn = self._process(name, host, memory_limit, None, extra_args)
        self.nodes[name] = qn
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {**QUERYNODE_LABELS, **(labels or {})}},
            "spec": {
                # no kubelet or scheduler binds this name: the test is this pod's kubelet, and a
                # process kubelet running in the same cluster (tests/e2e) must leave it alone
                "schedulerName": FAKE_SCHEDULER,
                "containers": [
                    {
                        "name": "querynode",
                        "image": "vectorload:dev",
                        "ports": [{"name": "http", "containerPort": qn.port}],
                    }
                ],
            },
        }
        self.core.create_namespaced_pod(self.ns, pod)
        self.set_ready(name, True)
        return qn

    def set_ready(self, name: str, ready: bool) -> None:
        """Set the Pod's status as a kubelet would: Running, the process's IP, Ready or not."""
        qn = self.nodes[name]
        status = {
            "status": {
                "phase": "Running",
                "podIP": qn.host,
                "podIPs": [{"ip": qn.host}],
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            }
        }
        self.core.patch_namespaced_pod_status(name, self.ns, status)

    def restart_node(self, name: str) -> QuerynodeProcess:
        """Kill the querynode process and start an empty one on the same address and port."""
        old = self.nodes[name]
        old.kill()
        qn = self._process(name, old.host, old.memory_limit, old.port, old.extra_args)
        self.nodes[name] = qn
        return qn

    def remove_node(self, name: str) -> None:
        """Kill the process (if alive) and delete its Pod at once."""
        self.nodes.pop(name).kill()
        try:
            self.core.delete_namespaced_pod(name, self.ns, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def distribution(self, name: str) -> dict[str, Any]:
        status, body = self.nodes[name].request("GET", "/v1/distribution", timeout=10)
        if status != 200:
            raise RuntimeError(f"distribution of {name}: {status} {body}")
        return dict(body)

    def held(
        self, name: str, state: str | None = "loaded", collection: str = COLLECTION
    ) -> set[tuple[str, str]]:
        """(partition, segment) of `collection` that node `name` holds (in `state`; None: any)."""
        return {
            (s["partition"], s["segment"])
            for s in self.distribution(name)["segments"]
            if s["collection"] == collection and (state is None or s["state"] == state)
        }

    def search(self, node: str, vector: list[float], top_k: int = 3) -> tuple[int, Any]:
        body = {"collection": COLLECTION, "vectors": [vector], "annsField": "book_intro", "topK": top_k}
        return self.nodes[node].request("POST", "/v1/search", body, timeout=5)

    def stop_all(self) -> None:
        for qn in self.nodes.values():
            qn.kill()

    # ---------------------------------------------------------------- CollectionLoads
    def apply(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create a CollectionLoad."""
        body = collection_load(name, spec)
        created = self.custom.create_namespaced_custom_object(
            CRD_GROUP, CRD_VERSION, self.ns, CRD_PLURAL, body
        )
        return dict(created)

    def kubectl_apply(self, objects: list[dict[str, Any]]) -> None:
        """`kubectl apply` of objects in this namespace (what a user does)."""
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        self.plane.kubectl("-n", self.ns, "apply", "-f", "-", input=doc)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.patch_namespaced_custom_object(
                CRD_GROUP,
                CRD_VERSION,
                self.ns,
                CRD_PLURAL,
                name,
                {"spec": spec},
                _content_type="application/merge-patch+json",
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.ns, CRD_PLURAL, name)
        return dict(obj)

    def collection_loads(self) -> list[dict[str, Any]]:
        """Every CollectionLoad of the namespace."""
        answer = self.custom.list_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.ns, CRD_PLURAL)
        return list(answer["items"])

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.ns, CRD_PLURAL, name)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        return condition(self.get(name), type_)

    def wait_state(self, name: str, state: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for loadState `state` at the object's current generation; the status."""

        def check() -> dict[str, Any] | None:
            obj = self.get(name)
            st = dict(obj.get("status") or {})
            generation = obj["metadata"]["generation"]
            ok = st.get("loadState") == state and st.get("observedGeneration") == generation
            return st if ok else None

        return wait_for(f"{self.ns}/{name} loadState {state}", check, timeout, not_yet=api_not_found)

    def events(self, name: str) -> list[tuple[str, str, str]]:
        """(type, reason, message) of events about CollectionLoad `name`, oldest first."""
        items = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        items.sort(key=lambda e: (e.first_timestamp or e.event_time or 0, e.metadata.creation_timestamp))
        return [(e.type, e.reason, e.message) for e in items if e.involved_object.kind == CRD_KIND]
