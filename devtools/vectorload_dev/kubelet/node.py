"""The Node object: registration with the machine's capacity, the Ready condition and the node
Lease (renewed every few seconds so the node lifecycle controller never taints the node), and
NotReady (or deletion) on shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
from pathlib import Path

import aiohttp

from vectorload_dev.kubelet.api import ApiClient, ApiError, Json, q
from vectorload_dev.kubelet.status import HOST_IP, now_micro, now_rfc3339

log = logging.getLogger("vectorload.kubelet.node")

KUBELET_VERSION = "v1.33.13"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40


def machine_capacity(state_dir: Path, max_pods: int) -> dict[str, str]:
    cpus = len(os.sched_getaffinity(0))
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    disk = shutil.disk_usage(state_dir)
    return {
        "cpu": str(cpus),
        "memory": f"{memory_kib}Ki",
        "pods": str(max_pods),
        "ephemeral-storage": f"{disk.total // 1024}Ki",
    }


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


class NodeAgent:
    def __init__(self, api: ApiClient, name: str, state_dir: Path, max_pods: int) -> None:
        self.api = api
        self.name = name
        self.capacity = machine_capacity(state_dir, max_pods)
        self.labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _arch(),
            "node.vectorload.io/process-kubelet": "true",
        }
        self.uid = ""
        self._ready_since = now_rfc3339()

    @property
    def allocatable(self) -> dict[str, str]:
        return dict(self.capacity)

    def _conditions(self, ready: bool, reason: str, message: str) -> list[Json]:
        now = now_rfc3339()
        healthy = [
            ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ]
        conditions: list[Json] = [
            {
                "type": kind,
                "status": "False",
                "reason": why,
                "message": text,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._ready_since,
            }
            for kind, why, text in healthy
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._ready_since if ready else now,
            }
        )
        return conditions

    def _status(self, ready: bool = True, reason: str = "KubeletReady", message: str = "") -> Json:
        return {
            "capacity": self.capacity,
            "allocatable": self.allocatable,
            "conditions": self._conditions(
                ready, reason, message or "process kubelet is posting ready status"
            ),
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "local processes",
                "containerRuntimeVersion": "process://1",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _arch(),
            },
        }

    async def register(self) -> None:
        """Create the Node (or take over an existing one of this name) and post Ready."""
        body: Json = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels},
            "status": self._status(),  # Ready from the start: the lifecycle controller never sees it NotReady
        }
        try:
            node = await self.api.request("POST", "/api/v1/nodes", body=body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            node = await self.api.merge_patch(
                f"/api/v1/nodes/{q(self.name)}", {"metadata": {"labels": self.labels}}
            )
        self.uid = node["metadata"]["uid"]
        self._ready_since = now_rfc3339()
        await self.post_status()
        await self.renew_lease()

    async def post_status(self, ready: bool = True, reason: str = "KubeletReady", message: str = "") -> None:
        await self.api.merge_patch(
            f"/api/v1/nodes/{q(self.name)}/status", {"status": self._status(ready, reason, message)}
        )

    async def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{q(self.name)}"
        spec: Json = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": now_micro(),
        }
        try:
            await self.api.merge_patch(path, {"spec": spec})
        except ApiError as exc:
            if exc.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}
            body: Json = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]},
                "spec": spec,
            }
            await self.api.request(
                "POST", f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases", body=body
            )

    async def heartbeat(self, interval: float) -> None:
        """Renew the lease and the Ready condition every `interval` seconds, forever."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew_lease()
                await self.post_status()
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("node heartbeat failed: %s", exc)

    async def shutdown(self, delete: bool) -> None:
        try:
            if delete:
                await self.api.request("DELETE", f"/api/v1/nodes/{q(self.name)}")
                lease = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{q(self.name)}"
                try:
                    await self.api.request("DELETE", lease)
                except ApiError as exc:
                    if exc.status != 404:
                        raise
            else:
                await self.post_status(
                    ready=False, reason="KubeletStopped", message="process kubelet stopped"
                )
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("could not %s node %s: %s", "delete" if delete else "mark NotReady", self.name, exc)
