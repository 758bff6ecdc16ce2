"""The querynode control API as the operator uses it (one shared aiohttp session).

Errors become `NodeError(reason, message)`; an unreachable node is `NodeError("Unreachable", ...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import aiohttp


class NodeError(Exception):
    def __init__(self, reason: str, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


class NodeApi(Protocol):
    async def distribution(self, url: str) -> dict[str, Any]: ...

    async def catalog(self, url: str, collection: str) -> dict[str, Any] | None: ...

    async def load(
        self,
        url: str,
        collection: str,
        partition: str,
        segments: Sequence[str],
        fields: Sequence[str] | None,
        skip_dynamic: bool,
    ) -> list[dict[str, Any]]: ...

    async def release(self, url: str, collection: str, segments: Sequence[tuple[str, str]] | None) -> int: ...


class HttpNodeApi:
    def __init__(self, token: Callable[[], str | None], timeout: float = 2.0) -> None:
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 1.0))
        self._session: aiohttp.ClientSession | None = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=0, limit_per_host=16)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        headers = {}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._sess().request(method, url, json=body, headers=headers) as resp:
                try:
                    data = await resp.json(content_type=None)
                except (aiohttp.ContentTypeError, ValueError):
                    data = None
                return resp.status, data
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NodeError("Unreachable", f"{method} {url}: {exc or type(exc).__name__}") from exc

    @staticmethod
    def _raise(status: int, data: Any, what: str) -> None:
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            raise NodeError(str(err.get("reason") or "Error"), str(err.get("message") or what), status)
        raise NodeError("Unauthorized" if status == 401 else "HttpError", f"{what}: HTTP {status}", status)

    async def distribution(self, url: str) -> dict[str, Any]:
        status, data = await self._call("GET", f"{url}/v1/distribution")
        if status != 200 or not isinstance(data, dict):
            self._raise(status, data, "distribution")
        assert isinstance(data, dict)
        return data

    async def catalog(self, url: str, collection: str) -> dict[str, Any] | None:
        status, data = await self._call("GET", f"{url}/v1/catalog/{collection}")
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            self._raise(status, data, f"catalog of {collection}")
        assert isinstance(data, dict)
        return data

    async def load(
        self,
        url: str,
        collection: str,
        partition: str,
        segments: Sequence[str],
        fields: Sequence[str] | None,
        skip_dynamic: bool,
    ) -> list[dict[str, Any]]:
        body = {
            "collection": collection,
            "partition": partition,
            "segments": list(segments),
            "fields": None if fields is None else list(fields),
            "skipDynamicField": skip_dynamic,
        }
        status, data = await self._call("POST", f"{url}/v1/segments/load", body)
        if status != 200 or not isinstance(data, dict):
            self._raise(status, data, f"load of {collection}/{partition}")
        assert isinstance(data, dict)
        return list(data.get("results") or [])

    async def release(self, url: str, collection: str, segments: Sequence[tuple[str, str]] | None) -> int:
        body = {
            "collection": collection,
            "segments": None if segments is None else [{"partition": p, "segment": s} for p, s in segments],
        }
        status, data = await self._call("POST", f"{url}/v1/segments/release", body)
        if status != 200 or not isinstance(data, dict):
            self._raise(status, data, f"release of {collection}")
        assert isinstance(data, dict)
        return int(data.get("released") or 0)
