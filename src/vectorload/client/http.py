"""Async client for one querynode (aiohttp); every endpoint of the API as a typed method."""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any, cast

import aiohttp

from vectorload.client.types import CollectionCatalog, Distribution, Hit, LoadResult


class QuerynodeError(Exception):
    """An error answer (`status` 0 when the node could not be reached)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class QuerynodeClient:
    """`async with QuerynodeClient("http://127.0.0.1:19530", token) as qn: await qn.distribution()`.

    `token` authenticates the control API; `data_token` the data API (default: `token`)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        data_token: str | None = None,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.data_token = data_token if data_token is not None else token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> QuerynodeClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body)
        try:
            async with self._sess().request(method, self.base_url + path, data=data, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise QuerynodeError(0, "Unreachable", f"{self.base_url}: {type(exc).__name__}: {exc}") from exc
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = None
        if status >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                raise QuerynodeError(status, str(error.get("reason", "")), str(error.get("message", "")))
            raise QuerynodeError(status, "HTTPError", text[:200])
        return payload if payload is not None else text

    # ------------------------------------------------------------------- unauthenticated

    async def healthz(self) -> bool:
        try:
            await self._call("GET", "/healthz")
        except QuerynodeError:
            return False
        return True

    async def readyz(self) -> bool:
        try:
            await self._call("GET", "/readyz")
        except QuerynodeError:
            return False
        return True

    async def metrics(self) -> str:
        return str(await self._call("GET", "/metrics"))

    # ---------------------------------------------------------------------------- control

    async def collections(self) -> list[str]:
        answer = await self._call("GET", "/v1/catalog", token=self.token)
        return [str(c) for c in answer["collections"]]

    async def catalog(self, collection: str) -> CollectionCatalog:
        return cast(CollectionCatalog, await self._call("GET", f"/v1/catalog/{collection}", token=self.token))

    async def load(
        self,
        collection: str,
        partition: str,
        segments: Sequence[str],
        fields: Sequence[str] | None = None,
        skip_dynamic_field: bool = False,
    ) -> list[LoadResult]:
        body = {
            "collection": collection,
            "partition": partition,
            "segments": list(segments),
            "fields": None if fields is None else list(fields),
            "skipDynamicField": skip_dynamic_field,
        }
        answer = await self._call("POST", "/v1/segments/load", body, token=self.token)
        return cast(list[LoadResult], answer["results"])

    async def release(self, collection: str, segments: Sequence[tuple[str, str]] | None = None) -> int:
        """Release (partition, segment) pairs, or the whole collection when `segments` is None."""
        items = None if segments is None else [{"partition": p, "segment": s} for p, s in segments]
        answer = await self._call(
            "POST", "/v1/segments/release", {"collection": collection, "segments": items}, token=self.token
        )
        return int(answer["released"])

    async def distribution(self) -> Distribution:
        return cast(Distribution, await self._call("GET", "/v1/distribution", token=self.token))

    # ------------------------------------------------------------------------------- data

    async def search(
        self,
        collection: str,
        vectors: Sequence[Sequence[float]],
        top_k: int = 10,
        anns_field: str | None = None,
        partitions: Sequence[str] | None = None,
        filter: str | None = None,
        output_fields: Sequence[str] | None = None,
        ef: int | None = None,
    ) -> list[list[Hit]]:
        body: dict[str, Any] = {
            "collection": collection,
            "vectors": [[float(x) for x in v] for v in vectors],
            "topK": top_k,
        }
        optional = {
            "annsField": anns_field,
            "partitions": None if partitions is None else list(partitions),
            "filter": filter,
            "outputFields": None if output_fields is None else list(output_fields),
            "ef": ef,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        answer = await self._call("POST", "/v1/search", body, token=self.data_token)
        return cast(list[list[Hit]], answer["results"])

    async def query(
        self,
        collection: str,
        filter: str,
        output_fields: Sequence[str] | None = None,
        limit: int | None = None,
        partitions: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"collection": collection, "filter": filter}
        if output_fields is not None:
            body["outputFields"] = list(output_fields)
        if limit is not None:
            body["limit"] = limit
        if partitions is not None:
            body["partitions"] = list(partitions)
        answer = await self._call("POST", "/v1/query", body, token=self.data_token)
        return cast(list[dict[str, Any]], answer["rows"])

    async def get(
        self,
        collection: str,
        ids: Sequence[int | str],
        output_fields: Sequence[str] | None = None,
        partitions: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"collection": collection, "ids": list(ids)}
        if output_fields is not None:
            body["outputFields"] = list(output_fields)
        if partitions is not None:
            body["partitions"] = list(partitions)
        answer = await self._call("POST", "/v1/get", body, token=self.data_token)
        return cast(list[dict[str, Any]], answer["rows"])
