"""Find a CollectionLoad's querynodes through the Kubernetes API (kubeconfig from $KUBECONFIG)."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vectorload.wire.address import pod_url

GROUP = "vectorload.io"
VERSION = "v1alpha1"
PLURAL = "collectionloads"


class ResolveError(Exception):
    pass


@dataclass(frozen=True)
class Replica:
    id: int
    nodes: list[str]  # pod names


def replicas_from_status(body: Mapping[str, Any]) -> list[Replica]:
    """`status.replicas[]` of a CollectionLoad, replicas without nodes dropped."""
    status = body.get("status") or {}
    out: list[Replica] = []
    for item in status.get("replicas") or []:
        nodes = [str(n) for n in item.get("nodes") or []]
        if nodes:
            out.append(Replica(int(item.get("id", len(out))), nodes))
    return out


def choose_replica(
    replicas: Sequence[Replica], urls: Mapping[str, str | None], wanted: int | None
) -> Replica:
    """The requested replica, else the first whose every node has an address."""
    if wanted is not None:
        for replica in replicas:
            if replica.id == wanted:
                return replica
        raise ResolveError(f"replica {wanted} not found (replicas: {[r.id for r in replicas]})")
    for replica in replicas:
        if all(urls.get(n) for n in replica.nodes):
            return replica
    raise ResolveError("no replica has all of its querynodes running with an address")


@dataclass(frozen=True)
class Target:
    collection: str
    replica: Replica
    urls: list[str]


def _api() -> tuple[Any, Any]:
    from kubernetes import client, config

    try:
        # $KUBECONFIG is read now, not when the kubernetes package was first imported
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]
    except Exception:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.CustomObjectsApi(), client.CoreV1Api()


def default_namespace() -> str:
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG")
        )
        return str((active or {}).get("context", {}).get("namespace") or "default")
    except Exception:
        return "default"


def resolve(name: str, namespace: str, replica: int | None = None) -> Target:
    """Read the CollectionLoad and the pods of one replica."""
    custom, core = _api()
    from kubernetes.client.exceptions import ApiException

    try:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        raise ResolveError(f"CollectionLoad {namespace}/{name}: {exc.status} {exc.reason}") from exc
    collection = str((body.get("spec") or {}).get("collection") or "")
    replicas = replicas_from_status(body)
    if not replicas:
        raise ResolveError(f"CollectionLoad {namespace}/{name} has no replicas with nodes in its status yet")
    urls: dict[str, str | None] = {}
    for pod_name in {n for r in replicas for n in r.nodes}:
        try:
            pod = core.read_namespaced_pod(pod_name, namespace)
        except ApiException:
            urls[pod_name] = None
            continue
        urls[pod_name] = pod_url(core.api_client.sanitize_for_serialization(pod))
    chosen = choose_replica(replicas, urls, replica)
    return Target(collection, chosen, [str(urls[n]) for n in chosen.nodes if urls.get(n)])


def secret_token(secret: str, namespace: str) -> str:
    _, core = _api()
    data = core.read_namespaced_secret(secret, namespace).data or {}
    if "token" not in data:
        raise ResolveError(f"Secret {namespace}/{secret} has no key 'token'")
    return base64.b64decode(data["token"]).decode().strip()
