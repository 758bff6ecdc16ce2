"""Service-account identity for a pod: a bound token from the TokenRequest API, the usual
`token` / `ca.crt` / `namespace` files, and a kubeconfig that uses the token."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from vectorload_dev.kubelet.api import ApiClient, Json, q

DEFAULT_EXPIRATION = 3607  # what the kubelet asks for; the API server may extend bound tokens


@dataclass(frozen=True)
class Token:
    token: str
    expires: datetime
    issued: datetime

    def refresh_due(self) -> datetime:
        """Refresh at 80 % of the token's lifetime, as the kubelet does."""
        return self.issued + (self.expires - self.issued) * 0.8


async def request_token(
    api: ApiClient,
    pod: Json,
    service_account: str,
    *,
    audience: str | None = None,
    expiration_seconds: int = DEFAULT_EXPIRATION,
) -> Token:
    """A token for the pod's service account, bound to the pod (it dies with the pod). Without an
    audience the API server uses its own (--api-audiences).

    The API server binds a token to a pod only if the pod names that service account; a pod without
    `serviceAccountName` (the local control plane runs without the ServiceAccount admission plugin,
    which would fill in "default") gets a token of "default" that is not bound to the pod."""
    meta: Json = pod["metadata"]
    spec: Json = {
        "audiences": [audience] if audience else [],
        "expirationSeconds": max(expiration_seconds, 600),
    }
    pod_spec: Json = pod.get("spec") or {}
    if (pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount")) == service_account:
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
    body: Json = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    path = f"/api/v1/namespaces/{q(meta['namespace'])}/serviceaccounts/{q(service_account)}/token"
    answer = await api.request("POST", path, body=body)
    expires = datetime.strptime(answer["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    return Token(answer["status"]["token"], expires.replace(tzinfo=UTC), datetime.now(UTC))


def write_file(path: Path, content: bytes, mode: int) -> None:
    """Write atomically (a reader never sees half a file) with the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.chmod(tmp, mode)
    tmp.replace(path)


def kubeconfig_for(server: str, ca_pem: bytes | None, token: str, namespace: str) -> str:
    cluster: Json = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    config: Json = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "serviceaccount", "user": {"token": token}}],
        "contexts": [
            {
                "name": "serviceaccount",
                "context": {"cluster": "local", "user": "serviceaccount", "namespace": namespace},
            }
        ],
        "current-context": "serviceaccount",
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_service_account_dir(
    directory: Path, *, token: str, ca_pem: bytes | None, namespace: str, server: str
) -> Path:
    """token, ca.crt, namespace and kubeconfig in `directory`; returns the kubeconfig's path."""
    write_file(directory / "token", token.encode(), 0o600)
    write_file(directory / "namespace", namespace.encode(), 0o644)
    if ca_pem is not None:
        write_file(directory / "ca.crt", ca_pem, 0o644)
    kubeconfig = directory / "kubeconfig"
    write_file(kubeconfig, kubeconfig_for(server, ca_pem, token, namespace).encode(), 0o600)
    return kubeconfig
