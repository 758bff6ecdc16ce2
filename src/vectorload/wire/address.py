"""How a querynode pod is reached: the one rule for its URL, used by the operator and the client.

The address is `status.podIP`; the port is the annotation `vectorload.io/port` when it holds a
TCP port, else the container port named `http`, else 19530. An IPv6 address is bracketed in the
URL (`http://[fd00::5]:19530`), as RFC 3986 requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_PORT = 19530
PORT_ANNOTATION = "vectorload.io/port"
PORT_NAME = "http"


def pod_port(pod: Mapping[str, Any]) -> int:
    """The querynode port of a Pod object (a dict as the Kubernetes API serves it)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(PORT_ANNOTATION)
    if raw is not None:
        text = str(raw).strip()
        port = int(text) if text.isdecimal() and len(text) <= 5 else 0
        if 0 < port < 65536:
            return port
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port_spec in container.get("ports") or []:
            number = port_spec.get("containerPort")
            if port_spec.get("name") == PORT_NAME and isinstance(number, int) and 0 < number < 65536:
                return number
    return DEFAULT_PORT


def pod_ip(pod: Mapping[str, Any]) -> str | None:
    ip = (pod.get("status") or {}).get("podIP")
    return str(ip) if ip else None


def base_url(ip: str, port: int) -> str:
    """`http://ip:port`, IPv6 addresses in brackets."""
    host = f"[{ip}]" if ":" in ip and not ip.startswith("[") else ip
    return f"http://{host}:{port}"


def pod_url(pod: Mapping[str, Any]) -> str | None:
    """The querynode base URL of a Pod object; None while the pod has no IP."""
    ip = pod_ip(pod)
    return None if ip is None else base_url(ip, pod_port(pod))
