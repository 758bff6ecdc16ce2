"""`LocalSystem`: a control plane + a process kubelet + `helm install`s of our chart, with the
values that make the chart's pods run as local processes; `Release`: one installed release
and what users do with it (kubectl apply/patch/scale, helm upgrade, search)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

from vectorload_dev.checkout import chart_dir
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.e2e.kubelet import BackgroundKubelet
from vectorload_dev.testing.wait import wait_for

GROUP, VERSION, PLURAL = "vectorload.io", "v1alpha1", "collectionloads"
QUERYNODE_PORT = 19530
ANNS_FIELD = "book_intro"


class SystemError_(RuntimeError):
    """The local system did not reach the state asked for (with what it last saw)."""


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def pod_ready(pod: dict[str, Any]) -> bool:
    return (
        not pod["metadata"].get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase") == "Running"
        and condition(pod, "Ready").get("status") == "True"
    )


def container_pid(pod: dict[str, Any]) -> int | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if not statuses or "running" not in (statuses[0].get("state") or {}):
        return None
    cid = str(statuses[0].get("containerID") or "")
    return int(cid.removeprefix("process://")) if cid.startswith("process://") else None


def local_values(
    namespace: str,
    storage_root: Path,
    node_name: str,
    *,
    querynodes: int = 2,
    memory: str = "256Mi",
    querynode_args: tuple[str, ...] = (),
    operator_args: tuple[str, ...] = (),
    proxy: int = 0,
    proxy_args: tuple[str, ...] = (),
    proxy_writes: bool = False,
) -> dict[str, Any]:
    """Chart values for running on the process kubelet: pods bind their own pod IP (127.x.y.N),
    storage is a hostPath holding a local storage root, small resources, fast probes. `proxy`:
    that many proxy pods (the Milvus front door); 0 leaves it out, as the tests of the operator
    and querynodes do. `proxy_writes`: the proxies serve the write path on the storage root
    (`proxy.writes.enabled`)."""
    node_selector = {"kubernetes.io/hostname": node_name}
    proxy_values: dict[str, Any] = {"enabled": False}
    if proxy:
        proxy_values = {
            "enabled": True,
            "replicas": proxy,
            "bindAddress": "$(POD_IP)",
            "nodeSelector": node_selector,
            "extraArgs": list(proxy_args),
            "writes": {"enabled": proxy_writes},
            "terminationGracePeriodSeconds": 5,
            "resources": {
                "requests": {"cpu": "50m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            "readinessProbe": {
                "initialDelaySeconds": 0,
                "periodSeconds": 1,
                "timeoutSeconds": 2,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "initialDelaySeconds": 10,
                "periodSeconds": 5,
                "timeoutSeconds": 3,
                "failureThreshold": 6,
            },
        }
    return {
        "proxy": proxy_values,
        "operator": {
            "watchNamespace": namespace,
            "bindAddress": "$(POD_IP)",
            "nodeSelector": node_selector,
            "extraArgs": list(operator_args),
            "resources": {
                "requests": {"cpu": "50m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "256Mi"},
            },
            "livenessProbe": {
                "initialDelaySeconds": 10,
                "periodSeconds": 5,
                "timeoutSeconds": 3,
                "failureThreshold": 6,
            },
        },
        "querynode": {
            "replicas": querynodes,
            "bindAddress": "$(POD_IP)",
            "nodeSelector": node_selector,
            "extraArgs": list(querynode_args),
            "terminationGracePeriodSeconds": 5,
            "resources": {
                "requests": {"cpu": "50m", "memory": memory},
                "limits": {"cpu": "1", "memory": memory},
            },
            "readinessProbe": {"periodSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 3},
            "livenessProbe": {
                "initialDelaySeconds": 10,
                "periodSeconds": 5,
                "timeoutSeconds": 3,
                "failureThreshold": 6,
            },
        },
        "storage": {"hostPath": str(storage_root)},
    }


class LocalSystem:
    """A running control plane plus one process kubelet; installs releases of the chart."""

    def __init__(
        self,
        plane: ControlPlane,
        workdir: Path,
        *,
        node_name: str = "local-process-node",
        detached: bool = False,
        kubelet_args: tuple[str, ...] = (),
        pod_network: str | None = None,
    ) -> None:
        """`pod_network`: the kubelet's pod IPs (a /24 of 127.0.0.0/8; default its own
        127.0.0.0/24). Tests pass their run's (`vectorload_dev.loopback.pod_network`)."""
        self.plane = plane
        self.workdir = workdir
        self.node_name = node_name
        self.kubelet = BackgroundKubelet(
            plane,
            workdir / "kubelet",
            node_name,
            extra_args=kubelet_args,
            detached=detached,
            pod_network=pod_network,
        )

    def start(self) -> bool:
        """Start the kubelet (False when the recorded one still runs)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.kubelet.start()

    def stop(self) -> None:
        self.kubelet.stop()

    def get(self, path: str) -> dict[str, Any] | None:
        status, body = self.plane.get(path)
        if status == 404:
            return None
        if status != 200:
            raise SystemError_(f"GET {path}: HTTP {status}: {body[:300]}")
        answer: dict[str, Any] = json.loads(body)
        return answer

    def install(
        self,
        name: str,
        namespace: str,
        storage_root: Path,
        *,
        create_namespace: bool = True,
        wait: bool = True,
        **options: Any,
    ) -> Release:
        """`helm upgrade --install` (idempotent) with `local_values()`, then wait for the pods."""
        if create_namespace and self.get(f"/api/v1/namespaces/{namespace}") is None:
            self.plane.kubectl("create", "namespace", namespace)
        release = Release(
            self, name, namespace, local_values(namespace, storage_root, self.node_name, **options)
        )
        release.helm_install()
        if wait:
            release.wait_ready()
        return release


class Release:
    def __init__(self, system: LocalSystem, name: str, namespace: str, values: dict[str, Any]) -> None:
        self.system = system
        self.plane = system.plane
        self.name = name
        self.namespace = namespace
        self.values = values
        self.values_file = system.workdir / f"values-{namespace}-{name}.yaml"

    # ---------------------------------------------------------------- helm
    @property
    def fullname(self) -> str:
        return self.name if "vectorload" in self.name else f"{self.name}-vectorload"

    @property
    def querynode_sts(self) -> str:
        return f"{self.fullname}-querynode"

    @property
    def operator_deploy(self) -> str:
        return f"{self.fullname}-operator"

    def helm_install(self, *extra: str) -> str:
        self.values_file.write_text(yaml.safe_dump(self.values, sort_keys=False))
        proc = self.plane.helm(
            "upgrade", "--install", self.name, str(chart_dir()),
            "-n", self.namespace, f"--values={self.values_file}", *extra,
        )  # fmt: skip
        return proc.stdout

    def uninstall(self) -> None:
        self.plane.helm("uninstall", self.name, "-n", self.namespace, "--wait", "--timeout=60s", check=False)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.plane.kubectl("-n", self.namespace, *args, input=input, check=check).stdout

    def token(self) -> str:
        out = self.kubectl("get", "secret", f"{self.fullname}-token", "-o", "jsonpath={.data.token}")
        return base64.b64decode(out).decode()

    # ---------------------------------------------------------------- pods
    def pods(self, component: str) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/component={component},app.kubernetes.io/instance={self.name}"
        listing = self.system.get(f"/api/v1/namespaces/{self.namespace}/pods?labelSelector={selector}")
        items: list[dict[str, Any]] = (listing or {}).get("items") or []
        return sorted(items, key=lambda p: str(p["metadata"]["name"]))

    def querynodes(self) -> list[dict[str, Any]]:
        return [p for p in self.pods("querynode") if pod_ready(p)]

    def operator_pod(self) -> dict[str, Any] | None:
        running = [p for p in self.pods("operator") if pod_ready(p)]
        return running[0] if len(running) == 1 else None

    def wait_querynodes(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            every = self.pods("querynode")
            ready = [p for p in every if pod_ready(p)]
            return ready if len(ready) == count == len(every) else None

        return wait_for(f"{count} querynode pods Ready in {self.namespace}", check, timeout)

    def wait_ready(self, timeout: float = 90) -> None:
        replicas = int(self.values["querynode"]["replicas"])
        self.wait_querynodes(replicas, timeout)
        pod = wait_for(f"operator pod Running in {self.namespace}", self.operator_pod, timeout)
        ip = pod["status"]["podIP"]
        port = self.values.get("operator", {}).get("healthPort", 8081)
        wait_for(f"operator /healthz on {ip}", lambda: _http_ok(f"http://{ip}:{port}/healthz"), timeout)
        if self.values.get("proxy", {}).get("enabled"):
            self.wait_proxies(int(self.values["proxy"]["replicas"]), timeout)

    # ---------------------------------------------------------------- the proxy (Milvus API)
    @property
    def proxy_deploy(self) -> str:
        return f"{self.fullname}-proxy"

    def proxies(self) -> list[dict[str, Any]]:
        return [p for p in self.pods("proxy") if pod_ready(p)]

    def wait_proxies(self, count: int, timeout: float = 90) -> list[dict[str, Any]]:
        """`count` proxy pods Ready (their /readyz answered the kubelet's probe)."""

        def check() -> list[dict[str, Any]] | None:
            every = self.pods("proxy")
            ready = [p for p in every if pod_ready(p)]
            return ready if len(ready) == count == len(every) else None

        return wait_for(
            f"{count} proxy pods Ready in {self.namespace}",
            check,
            timeout,
            details=lambda: self.kubectl(
                "get", "pods", "-l", "app.kubernetes.io/component=proxy", check=False
            ),
        )

    def proxy_address(self, index: int = 0) -> str:
        """host:port of one proxy pod's gRPC + REST v2 port (19530), as Milvus clients dial it."""
        pods = self.proxies()
        if not pods:
            raise SystemError_(f"no proxy pod Ready in {self.namespace}")
        port = int(self.values["proxy"].get("port", 19530))
        return f"{pods[index % len(pods)]['status']['podIP']}:{port}"

    def proxy_uri(self, index: int = 0) -> str:
        return f"http://{self.proxy_address(index)}"

    def proxy_http_uri(self, index: int = 0) -> str:
        """The REST v1 / metrics port (9091) of one proxy pod."""
        host = self.proxy_address(index).rsplit(":", 1)[0]
        return f"http://{host}:{int(self.values['proxy'].get('httpPort', 9091))}"

    def milvus_token(self) -> str:
        """The root account's Milvus token `root:<password>` from the chart's credentials Secret."""
        out = self.kubectl(
            "get", "secret", f"{self.fullname}-proxy-credentials", "-o", "jsonpath={.data.credentials}"
        )
        return base64.b64decode(out).decode().splitlines()[0].strip()

    def kill(self, pod: dict[str, Any], sig: int = signal.SIGKILL) -> int:
        """Signal the pod's container process (as the OOM killer or a crash would)."""
        pid = container_pid(pod)
        if pid is None:
            raise SystemError_(f"pod {pod['metadata']['name']} has no running container")
        os.kill(pid, sig)
        return pid

    # ---------------------------------------------------------------- querynode API
    def url(self, pod: dict[str, Any]) -> str:
        return f"http://{pod['status']['podIP']}:{QUERYNODE_PORT}"

    def request(self, pod: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 (http to a 127.0.0.N pod IP)
            self.url(pod) + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token_cached}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return json.loads(resp.read())

    @property
    def token_cached(self) -> str:
        cached = getattr(self, "_token", None)
        if cached is None:
            cached = self._token = self.token()
        return str(cached)

    def distribution(self, pod: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.request(pod, "GET", "/v1/distribution")
        return answer

    def used_bytes(self) -> dict[str, int]:
        """Querynode name → memory in use as its /v1/distribution reports it."""
        return {
            p["metadata"]["name"]: int(self.distribution(p)["capacity"]["usedBytes"])
            for p in self.querynodes()
        }

    def held(self, collection: str = "book") -> dict[str, list[tuple[str, str]]]:
        """Querynode name → (partition, segment) loaded there."""
        out: dict[str, list[tuple[str, str]]] = {}
        for pod in self.querynodes():
            segs = self.distribution(pod)["segments"]
            out[pod["metadata"]["name"]] = sorted(
                (s["partition"], s["segment"])
                for s in segs
                if s["collection"] == collection and s["state"] == "loaded"
            )
        return out

    # ---------------------------------------------------------------- CollectionLoads
    def apply_cload(self, name: str, spec: dict[str, Any]) -> None:
        doc = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CollectionLoad",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(doc))

    def patch_cload(self, name: str, spec: dict[str, Any]) -> None:
        self.kubectl("patch", "cload", name, "--type=merge", "-p", json.dumps({"spec": spec}))

    def delete_cload(self, name: str, wait: bool = True) -> None:
        self.kubectl("delete", "cload", name, f"--wait={'true' if wait else 'false'}", "--timeout=60s")

    def cload(self, name: str) -> dict[str, Any] | None:
        return self.system.get(f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}/{name}")

    def status(self, name: str) -> dict[str, Any]:
        obj = self.cload(name)
        return dict((obj or {}).get("status") or {})

    def wait_state(self, name: str, state: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until the operator has observed the current generation and reports `state`."""

        def check() -> dict[str, Any] | None:
            obj = self.cload(name)
            if obj is None:
                return None
            status = obj.get("status") or {}
            current = status.get("observedGeneration") == obj["metadata"]["generation"]
            return obj if current and status.get("loadState") == state else None

        return wait_for(
            f"{self.namespace}/{name} loadState {state}",
            check,
            timeout,
            interval=0.2,
            details=lambda: f"last status: {json.dumps(self.status(name))[:1500]}",
        )

    def wait_gone(self, name: str, timeout: float = 60) -> None:
        wait_for(f"{self.namespace}/{name} deleted", lambda: self.cload(name) is None, timeout)

    # ---------------------------------------------------------------- search
    def replica_urls(self, name: str) -> list[list[str]]:
        """URLs of each replica's querynodes from the CollectionLoad status and the pods' IPs."""
        pods = {p["metadata"]["name"]: p for p in self.pods("querynode")}
        out = []
        for replica in self.status(name).get("replicas") or []:
            nodes = replica.get("nodes") or []
            if nodes and all(n in pods and pods[n].get("status", {}).get("podIP") for n in nodes):
                out.append([self.url(pods[n]) for n in nodes])
        return out

    def search(
        self,
        name: str,
        vector: list[float],
        *,
        top_k: int = 5,
        replica: int = 0,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """One query through one replica's querynodes (the `vectorload search` fan-out)."""
        from vectorload.client.cli import fan_out
        from vectorload.wire.querynode import to_builtins

        replicas = self.replica_urls(name)
        if not replicas:
            raise SystemError_(f"{name}: no replica with running querynodes in status")
        urls = replicas[replica % len(replicas)]
        collection = str((self.cload(name) or {}).get("spec", {}).get("collection", name))
        options.setdefault("anns_field", ANNS_FIELD)
        # the data API is closed: the control token is accepted there too
        results = asyncio.run(fan_out(urls, self.token_cached, collection, [vector], top_k, **options))
        return [dict(to_builtins(hit)) for hit in results[0]]

    def search_cli(self, name: str, *args: str) -> tuple[int, str, str]:
        """`vectorload search --collection-load NAME` as a user runs it (a subprocess)."""
        import subprocess

        env = {**self.plane.env()}
        if not any(a.startswith("--anns-field") for a in args):
            args = (*args, f"--anns-field={ANNS_FIELD}")
        proc = subprocess.run(
            [sys.executable, "-m", "vectorload.cli", "search", "--collection-load", name,
             "-n", self.namespace, "--token-secret", f"{self.fullname}-token", *args],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        return proc.returncode, proc.stdout, proc.stderr


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (127.0.0.N)
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def unique_namespace(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
