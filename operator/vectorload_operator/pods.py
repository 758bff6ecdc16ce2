"""Querynode pods as the operator sees them: parsed from Pod objects by a kopf index.

The address rule (pod IP, port from the annotation / the `http` container port / 19530, IPv6 in
brackets) is `vectorload.wire.address`, shared with `vectorload search`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vectorload.wire.address import base_url, pod_ip, pod_port

__all__ = ["QuerynodePod", "flatten_index", "parse_pod", "pod_port", "pod_ready"]


@dataclass(frozen=True)
class QuerynodePod:
    """One querynode pod. `key` is `namespace/name`, unique across the cluster; the node
    name shown in status is the pod name."""

    namespace: str
    name: str
    ip: str | None
    port: int
    ready: bool
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def url(self) -> str | None:
        return base_url(self.ip, self.port) if self.ip else None


def pod_ready(body: Mapping[str, Any]) -> bool:
    """Running, Ready condition True, and not being deleted."""
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = body.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def parse_pod(body: Mapping[str, Any]) -> QuerynodePod:
    meta = body.get("metadata") or {}
    return QuerynodePod(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        ip=pod_ip(body),
        port=pod_port(body),
        ready=pod_ready(body),
        labels=dict(meta.get("labels") or {}),
    )


def flatten_index(index: Mapping[Any, Iterable[QuerynodePod]]) -> dict[str, QuerynodePod]:
    """A kopf index (key -> store of values) as `pod key -> pod`."""
    pods: dict[str, QuerynodePod] = {}
    for store in index.values():
        for pod in store:
            pods[pod.key] = pod
    return pods
