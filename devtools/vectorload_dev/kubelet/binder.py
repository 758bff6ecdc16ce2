"""The scheduler's one job, done by the kubelet because there is no kube-scheduler: bind each
pending pod (no spec.nodeName) that asks for the default scheduler (or this kubelet's scheduler
name) to this node through the `pods/binding` subresource."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping

import aiohttp

from vectorload_dev.kubelet.api import ApiClient, ApiError, Json, q

log = logging.getLogger("vectorload.kubelet.binder")

UNBOUND_SELECTOR = "spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed"


def wants_this_node(pod: Json, scheduler_names: Collection[str], node_labels: Mapping[str, str]) -> bool:
    spec: Json = pod.get("spec", {})
    if spec.get("nodeName") or pod["metadata"].get("deletionTimestamp"):
        return False
    if spec.get("schedulerName", "default-scheduler") not in scheduler_names:
        return False
    selector: Mapping[str, str] = spec.get("nodeSelector") or {}
    return all(node_labels.get(key) == value for key, value in selector.items())


class Binder:
    def __init__(
        self, api: ApiClient, node_name: str, scheduler_names: Collection[str], node_labels: Mapping[str, str]
    ) -> None:
        self.api = api
        self.node_name = node_name
        self.scheduler_names = set(scheduler_names)
        self.node_labels = dict(node_labels)
        self._refused: set[str] = set()
        self._retries: set[asyncio.Task[None]] = set()

    async def on_list(self, pods: list[Json]) -> None:
        for pod in pods:
            await self.consider(pod)

    async def on_event(self, kind: str, pod: Json) -> None:
        if kind in ("ADDED", "MODIFIED"):
            await self.consider(pod)

    async def consider(self, pod: Json) -> None:
        meta: Json = pod["metadata"]
        if not wants_this_node(pod, self.scheduler_names, self.node_labels):
            if meta["uid"] not in self._refused and not pod.get("spec", {}).get("nodeName"):
                self._refused.add(meta["uid"])
                log.info(
                    "not binding %s/%s (scheduler or nodeSelector does not match)",
                    meta["namespace"],
                    meta["name"],
                )
            return
        await self.bind(meta["namespace"], meta["name"], meta["uid"])

    async def bind(self, namespace: str, name: str, uid: str) -> None:
        body: Json = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            await self.api.request(
                "POST", f"/api/v1/namespaces/{q(namespace)}/pods/{q(name)}/binding", body=body
            )
            log.info("bound %s/%s to %s", namespace, name, self.node_name)
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or bound meanwhile
                return
            log.warning("binding %s/%s failed: %s", namespace, name, exc)
            self._retry(namespace, name, uid)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("binding %s/%s failed: %s", namespace, name, exc)
            self._retry(namespace, name, uid)

    def _retry(self, namespace: str, name: str, uid: str) -> None:
        async def later() -> None:
            await asyncio.sleep(2.0)
            await self.bind(namespace, name, uid)

        task = asyncio.create_task(later())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)
