"""Querynode pods as the operator sees them: parsed from Pod objects by a kopf index."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PORT = 19530
PORT_ANNOTATION = "vectorload.io/port"
PORT_NAME = "http"


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
        return f"http://{self.ip}:{self.port}" if self.ip else None


def pod_port(body: Mapping[str, Any]) -> int:
    """Annotation `vectorload.io/port` wins, then the container port named `http`, then 19530."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(PORT_ANNOTATION)
    if raw is not None:
        try:
            port = int(str(raw))
        except ValueError:
            port = 0
        if 0 < port < 65536:
            return port
    for container in (body.get("spec") or {}).get("containers") or []:
        for port_spec in container.get("ports") or []:
            if port_spec.get("name") == PORT_NAME and port_spec.get("containerPort"):
                return int(port_spec["containerPort"])
    return DEFAULT_PORT


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
    status = body.get("status") or {}
    return QuerynodePod(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        ip=status.get("podIP") or None,
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
