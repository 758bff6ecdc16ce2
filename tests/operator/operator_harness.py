"""Test harness for the operator's cluster tests: real querynode processes behind Pod objects
whose status the test sets (a fake kubelet), the operator as a real `vectorload operator`
subprocess, and polling helpers over the real API server."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vectorload.devcluster.controlplane import ControlPlane
from vectorload_querynode.testing import QuerynodeProcess, free_port

GROUP, VERSION, PLURAL = "vectorload.io", "v1alpha1", "collectionloads"
TOKEN = "operator-test-token"
QUERYNODE_LABELS = {"app.kubernetes.io/component": "querynode"}
T = TypeVar("T")

# distinct loopback addresses for querynode pods across the whole session
_hosts = (f"127.0.{a}.{b}" for a, b in itertools.product(range(20, 250), range(2, 250)))


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except ApiException as exc:
            if exc.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class OperatorProcess:
    """`vectorload operator --all-namespaces` with short intervals, logs to a file."""

    def __init__(self, plane: ControlPlane, log_path: Path, token_file: Path) -> None:
        self.plane = plane
        self.log_path = log_path
        self.token_file = token_file
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.plane.env(), "KUBECONFIG": str(self.plane.kubeconfig)}
        env.pop("VECTORLOAD_TOKEN", None)
        cmd = [
            sys.executable,
            "-m",
            "vectorload.cli",
            "operator",
            "--all-namespaces",
            "--token-file",
            str(self.token_file),
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
            "--bind-address",
            "127.0.0.1",
            "--dist-pull-interval",
            "0.25",
            "--status-interval",
            "0.3",
            "--catalog-interval",
            "1",
            "--request-timeout",
            "1",
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for("operator liveness", self._alive, timeout=30)

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited ({self.proc.returncode}); log:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
            return str(r.read().decode())

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Pool:
    """One test's namespace: querynode processes + their Pod objects, CollectionLoads."""

    def __init__(self, plane: ControlPlane, namespace: str, root: Path, workdir: Path) -> None:
        self.plane = plane
        self.ns = namespace
        self.root = root
        self.workdir = workdir
        api_client = config.new_client_from_config(config_file=str(plane.kubeconfig))
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.nodes: dict[str, QuerynodeProcess] = {}

    # ---------------------------------------------------------------- querynodes
    def add_node(
        self, name: str, memory_limit: str = "256Mi", labels: dict[str, str] | None = None
    ) -> QuerynodeProcess:
        host = next(_hosts)
        qn = QuerynodeProcess(
            self.root,
            host=host,
            token=TOKEN,
            memory_limit=memory_limit,
            node_name=name,
            log_path=self.workdir / f"{self.ns}-{name}.log",
        ).start()
        self.nodes[name] = qn
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {**QUERYNODE_LABELS, **(labels or {})}},
            "spec": {
                "containers": [
                    {
                        "name": "querynode",
                        "image": "vectorload:dev",
                        "ports": [{"name": "http", "containerPort": qn.port}],
                    }
                ]
            },
        }
        self.core.create_namespaced_pod(self.ns, pod)
        self.set_ready(name, True)
        return qn

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
        self.core.patch_namespaced_pod_status(name, self.ns, status)

    def restart_node(self, name: str) -> QuerynodeProcess:
        """Kill the querynode process and start an empty one on the same address and port."""
        old = self.nodes[name]
        old.kill()
        qn = QuerynodeProcess(
            self.root,
            host=old.host,
            port=old.port,
            token=TOKEN,
            memory_limit=old.memory_limit,
            node_name=name,
            log_path=self.workdir / f"{self.ns}-{name}.log",
        ).start()
        self.nodes[name] = qn
        return qn

    def distribution(self, name: str) -> dict[str, Any]:
        status, body = self.nodes[name].request("GET", "/v1/distribution", timeout=5)
        assert status == 200, body
        return dict(body)

    def held(self, name: str, state: str | None = "loaded") -> set[tuple[str, str]]:
        """(partition, segment) of `book` that node `name` holds (in `state`)."""
        return {
            (s["partition"], s["segment"])
            for s in self.distribution(name)["segments"]
            if s["collection"] == "book" and (state is None or s["state"] == state)
        }

    def stop_all(self) -> None:
        for qn in self.nodes.values():
            qn.kill()

    # ---------------------------------------------------------------- CollectionLoads
    def apply(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CollectionLoad",
            "metadata": {"name": name},
            "spec": spec,
        }
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body))

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.ns,
                PLURAL,
                name,
                {"spec": spec},
                _content_type="application/merge-patch+json",
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name))

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        for c in self.status(name).get("conditions") or []:
            if c["type"] == type_:
                return dict(c)
        return {}

    def wait_state(self, name: str, state: str, timeout: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.status(name)
            gen = self.get(name)["metadata"]["generation"]
            ok = st.get("loadState") == state and st.get("observedGeneration") == gen
            return st if ok else None

        return wait_for(f"{self.ns}/{name} loadState {state}", check, timeout)

    def events(self, name: str) -> list[tuple[str, str, str]]:
        """(type, reason, message) of events about CollectionLoad `name`, oldest first."""
        items = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        items.sort(key=lambda e: (e.first_timestamp or e.event_time or 0, e.metadata.creation_timestamp))
        return [(e.type, e.reason, e.message) for e in items if e.involved_object.kind == "CollectionLoad"]

    def search(self, node: str, vector: list[float], top_k: int = 3) -> tuple[int, Any]:
        body = {"collection": "book", "vectors": [vector], "annsField": "book_intro", "topK": top_k}
        return self.nodes[node].request("POST", "/v1/search", body, timeout=5)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
