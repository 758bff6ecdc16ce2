"""A small typed Kubernetes API client on aiohttp: kubeconfig loading, requests and watches."""

from __future__ import annotations

import base64
import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

Json = dict[str, Any]


class ApiError(RuntimeError):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class KubeConfig:
    server: str
    ca_pem: bytes | None = None
    token: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    insecure: bool = False

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        context = ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ca_pem is not None:
            context = ssl.create_default_context(cadata=self.ca_pem.decode())
        if self.client_cert is not None:
            context.load_cert_chain(str(self.client_cert), str(self.client_key or self.client_cert))
        return context


def _material(
    entry: Mapping[str, Any], key: str, base: Path, spill: Path
) -> tuple[bytes | None, Path | None]:
    """`<key>-data` (base64) or `<key>` (a file, relative to the kubeconfig) -> (bytes, file)."""
    if entry.get(f"{key}-data"):
        data = base64.b64decode(entry[f"{key}-data"])
        spill.parent.mkdir(parents=True, exist_ok=True)
        spill.write_bytes(data)
        spill.chmod(0o600)
        return data, spill
    if entry.get(key):
        path = Path(entry[key])
        path = path if path.is_absolute() else base / path
        return path.read_bytes(), path
    return None, None


def load_kubeconfig(path: Path, spill_dir: Path) -> KubeConfig:
    """The current context of a kubeconfig file; client-certificate data is written to `spill_dir`."""
    config: Json = yaml.safe_load(path.read_text())
    contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
    context: Json = contexts.get(config.get("current-context", ""), {})
    if not context and contexts:
        context = next(iter(contexts.values()))
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters") or []}
    users = {u["name"]: u.get("user") or {} for u in config.get("users") or []}
    cluster: Json = clusters.get(context.get("cluster", ""), next(iter(clusters.values()), {}))
    user: Json = users.get(context.get("user", ""), {})
    base = path.parent
    ca, _ = _material(cluster, "certificate-authority", base, spill_dir / "ca.crt")
    _, cert = _material(user, "client-certificate", base, spill_dir / "client.crt")
    _, key = _material(user, "client-key", base, spill_dir / "client.key")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return KubeConfig(
        server=str(cluster["server"]).rstrip("/"),
        ca_pem=ca,
        token=token,
        client_cert=cert,
        client_key=key,
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
    )


def default_kubeconfig() -> Path:
    return Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]).expanduser()


def q(name: str) -> str:
    return quote(name, safe="")


class ApiClient:
    """One aiohttp session to the API server; `request` returns the decoded JSON answer."""

    def __init__(self, config: KubeConfig, user_agent: str = "vectorload-kubelet") -> None:
        self.config = config
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if config.token:
            self._headers["Authorization"] = f"Bearer {config.token}"
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(ssl=self.config.ssl_context(), limit=20),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Json | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        time_limit: float = 30.0,
    ) -> Json:
        data = None if body is None else json.dumps(body).encode()
        async with self.session.request(
            method,
            self.config.server + path,
            data=data,
            params=dict(params or {}),
            headers={"Content-Type": content_type} if data is not None else None,
            timeout=aiohttp.ClientTimeout(total=time_limit),
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise _error(response.status, text)
            answer: Json = json.loads(text) if text else {}
            return answer

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Json:
        return await self.request("GET", path, params=params)

    async def merge_patch(self, path: str, body: Json) -> Json:
        return await self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[Json]:
        """Watch events ({"type", "object"}) until the server closes the stream. An ERROR event is
        raised as ApiError (410 Gone when the resourceVersion is too old)."""
        query = {**params, "watch": "true", "allowWatchBookmarks": "true"}
        async with self.session.get(
            self.config.server + path,
            params=query,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None),
        ) as response:
            if response.status >= 400:
                raise _error(response.status, await response.text())
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event: Json = json.loads(line)
                    if event.get("type") == "ERROR":
                        status: Json = event.get("object") or {}
                        raise ApiError(
                            int(status.get("code", 500)),
                            str(status.get("reason", "")),
                            str(status.get("message", "")),
                        )
                    yield event


def _error(status: int, text: str) -> ApiError:
    try:
        body: Json = json.loads(text)
        return ApiError(status, str(body.get("reason", "")), str(body.get("message", text)))
    except ValueError:
        return ApiError(status, "", text[:500])
