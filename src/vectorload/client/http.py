"""Async client for one querynode (aiohttp); every endpoint of the API as a typed method.

Bodies and answers are the `vectorload.wire.querynode` types: the client encodes requests and
decodes answers with the same definitions the querynode serves, so a drift fails loudly
(`QuerynodeError` 502 `BadAnswer`) instead of surfacing as a missing key later. Searches travel
as MessagePack (`PackedSearchRequest` / `PackedSearchAnswer`: vectors, ids and distances as raw
float32/int64 arrays), everything else as JSON.

The data calls (search, query, get) go over `vectorload.client.transport.Http1Pool` (bare
keep-alive HTTP/1.1 on asyncio protocols: less per-call work than aiohttp, see that module) when
the client has one: passed in (`pool=`, shared by a proxy's clients), or its own when it owns its
session too. A client given only a session (the operator's) sends everything through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import numpy.typing as npt

from vectorload.client.transport import Http1Pool, TransportError
from vectorload.wire import querynode as wire
from vectorload.wire.hits import HitColumns

T = TypeVar("T")


class QuerynodeError(Exception):
    """An error answer (`status` 0 when the node could not be reached)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def answer_error(status: int, payload: bytes) -> QuerynodeError:
    """The error of a 4xx/5xx answer: the querynode's `ErrorBody` (reason, message), or the
    body's first 200 bytes when it is not one (a proxy in between, a crash page)."""
    try:
        error = wire.decode(payload, wire.ErrorBody).error
    except wire.WireError:
        return QuerynodeError(status, "HTTPError", payload[:200].decode("utf-8", "replace"))
    return QuerynodeError(status, error.reason, error.message)


class QuerynodeClient:
    """`async with QuerynodeClient("http://127.0.0.1:19530", token) as qn: await qn.distribution()`.

    `token` authenticates the control API; `data_token` the data API (default: `token`, which
    the data API accepts too)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        data_token: str | None = None,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        pool: Http1Pool | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.data_token = data_token if data_token is not None else token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._timeout_s = timeout
        self._session = session
        self._own_session = session is None
        self._pool = pool
        self._own_pool = pool is None and session is None
        parts = urlsplit(self.base_url)
        # the bare transport speaks plain http only; anything else goes through aiohttp
        self._address: tuple[str, int, str] | None = None
        if parts.scheme == "http" and parts.hostname and not parts.query and not parts.fragment:
            try:
                port = parts.port or 80
            except ValueError:
                port = None
            if port is not None:
                self._address = (parts.hostname, port, parts.path.rstrip("/"))

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
        if self._own_pool and self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _fast_pool(self) -> Http1Pool | None:
        if self._address is None:
            return None
        if self._pool is None and self._own_pool:
            self._pool = Http1Pool()
        return self._pool

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _raw(
        self,
        method: str,
        path: str,
        body: wire.Wire | None = None,
        token: str | None = None,
        binary: bool = False,
        fast: bool = False,
    ) -> bytes:
        """The answer's bytes (MessagePack body and answer with `binary`, else JSON); an error
        answer (always JSON) raises QuerynodeError. `fast`: over the bare transport if the
        client has one."""
        headers = {"Content-Type": wire.SEARCH_MSGPACK if binary else "application/json"}
        if binary:
            headers["Accept"] = wire.SEARCH_MSGPACK
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else (wire.encode_msgpack(body) if binary else wire.encode(body))
        pool = self._fast_pool() if fast else None
        if pool is not None and self._address is not None:
            host, port, prefix = self._address
            try:
                answer = await pool.request(
                    host, port, method, prefix + path, list(headers.items()), data, self._timeout_s
                )
            except TransportError as exc:
                raise QuerynodeError(0, "Unreachable", f"{self.base_url}: {exc}") from exc
            payload, status = answer.body, answer.status
        else:
            try:
                async with self._sess().request(
                    method, self.base_url + path, data=data, headers=headers
                ) as resp:
                    payload = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise QuerynodeError(
                    0, "Unreachable", f"{self.base_url}: {type(exc).__name__}: {exc}"
                ) from exc
        if status >= 400:
            raise answer_error(status, payload)
        return payload

    async def _call(
        self,
        method: str,
        path: str,
        answer: type[T],
        body: wire.Wire | None = None,
        token: str | None = None,
        fast: bool = False,
    ) -> T:
        payload = await self._raw(method, path, body, token, fast=fast)
        try:
            return wire.decode(payload, answer)
        except wire.WireError as exc:
            raise QuerynodeError(
                502, "BadAnswer", f"{self.base_url}{path}: {exc.message} at {exc.path}"
            ) from None

    # ------------------------------------------------------------------- unauthenticated

    async def healthz(self) -> bool:
        try:
            await self._call("GET", "/healthz", wire.HealthAnswer)
        except QuerynodeError:
            return False
        return True

    async def readyz(self) -> bool:
        try:
            await self._call("GET", "/readyz", wire.HealthAnswer)
        except QuerynodeError:
            return False
        return True

    async def metrics(self) -> str:
        return (await self._raw("GET", "/metrics")).decode("utf-8", "replace")

    # ---------------------------------------------------------------------------- control

    async def collections(self) -> list[str]:
        answer = await self._call("GET", "/v1/catalog", wire.CatalogList, token=self.token)
        return list(answer.collections)

    async def catalog(self, collection: str) -> wire.CollectionCatalog:
        return await self._call("GET", f"/v1/catalog/{collection}", wire.CollectionCatalog, token=self.token)

    async def catalog_tokens(self, collections: Sequence[str]) -> dict[str, str]:
        """Collection -> its catalog's current ETag (absent: the storage has no such collection)."""
        body = wire.CatalogTokensRequest(collections=tuple(collections))
        answer = await self._call("POST", "/v1/catalog/tokens", wire.CatalogTokens, body, token=self.token)
        return dict(answer.tokens)

    async def catalog_if_changed(
        self, collection: str, etag: str | None
    ) -> tuple[wire.CollectionCatalog | None, str | None]:
        """The catalog and its ETag; (None, etag) when the node answers 304 Not Modified to
        `If-None-Match: etag` (nothing changed since that catalog)."""
        path = f"/v1/catalog/{collection}"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if etag:
            headers["If-None-Match"] = etag
        try:
            async with self._sess().get(self.base_url + path, headers=headers) as resp:
                payload = await resp.read()
                status, tag = resp.status, resp.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise QuerynodeError(0, "Unreachable", f"{self.base_url}: {type(exc).__name__}: {exc}") from exc
        if status == 304:
            return None, tag or etag
        if status >= 400:
            raise answer_error(status, payload)
        try:
            return wire.decode(payload, wire.CollectionCatalog), tag
        except wire.WireError as exc:
            raise QuerynodeError(
                502, "BadAnswer", f"{self.base_url}{path}: {exc.message} at {exc.path}"
            ) from None

    async def load(
        self,
        collection: str,
        partition: str,
        segments: Sequence[str],
        fields: Sequence[str] | None = None,
        skip_dynamic_field: bool = False,
    ) -> tuple[wire.LoadResult, ...]:
        body = wire.LoadRequest(
            collection=collection,
            partition=partition,
            segments=tuple(segments),
            fields=None if fields is None else tuple(fields),
            skip_dynamic_field=skip_dynamic_field,
        )
        answer = await self._call("POST", "/v1/segments/load", wire.LoadAnswer, body, token=self.token)
        return answer.results

    async def release(self, collection: str, segments: Sequence[tuple[str, str]] | None = None) -> int:
        """Release (partition, segment) pairs, or the whole collection when `segments` is None."""
        targets = (
            None
            if segments is None
            else tuple(wire.ReleaseTarget(partition=p, segment=s) for p, s in segments)
        )
        body = wire.ReleaseRequest(collection=collection, segments=targets)
        answer = await self._call("POST", "/v1/segments/release", wire.ReleaseAnswer, body, token=self.token)
        return answer.released

    async def distribution(self) -> wire.Distribution:
        return await self._call("GET", "/v1/distribution", wire.Distribution, token=self.token)

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
    ) -> list[list[wire.Hit]]:
        """Top-k hits per query vector, closest first (`search_columns` as `Hit` lists)."""
        columns = await self.search_columns(
            collection, vectors, top_k, anns_field, partitions, filter, output_fields, ef
        )
        return columns.hits()

    async def search_columns(
        self,
        collection: str,
        vectors: Sequence[Sequence[float]] | npt.NDArray[Any],
        top_k: int = 10,
        anns_field: str | None = None,
        partitions: Sequence[str] | None = None,
        filter: str | None = None,
        output_fields: Sequence[str] | None = None,
        ef: int | None = None,
    ) -> HitColumns:
        """The search answer as columns (what `vectorload.client.merge.merge_columns` merges).
        Sent as MessagePack with the vectors as float32 bytes; vectors that are no (nq, dim) array
        of numbers (ragged, empty) go as JSON, so that the node names what is wrong with them."""
        packed = _packed_vectors(vectors)
        partitions_ = None if partitions is None else tuple(partitions)
        outputs = None if output_fields is None else tuple(output_fields)
        if packed is None:
            body: wire.Wire = wire.SearchRequest(
                collection=collection,
                vectors=[[float(x) for x in v] for v in vectors],
                top_k=top_k,
                anns_field=anns_field,
                partitions=partitions_,
                filter=filter,
                output_fields=outputs,
                ef=ef,
            )
            answer = await self._call(
                "POST", "/v1/search", wire.SearchAnswer, body, token=self.data_token, fast=True
            )
            return HitColumns.from_hits(answer.results)
        body = wire.PackedSearchRequest(
            collection=collection,
            dim=packed.shape[1],
            vectors=packed.tobytes(),
            top_k=top_k,
            anns_field=anns_field,
            partitions=partitions_,
            filter=filter,
            output_fields=outputs,
            ef=ef,
        )
        payload = await self._raw("POST", "/v1/search", body, token=self.data_token, binary=True, fast=True)
        try:
            return HitColumns.unpack(wire.decode_msgpack(payload, wire.PackedSearchAnswer))
        except wire.WireError as exc:
            raise QuerynodeError(
                502, "BadAnswer", f"{self.base_url}/v1/search: {exc.message} at {exc.path}"
            ) from None

    async def query(
        self,
        collection: str,
        filter: str,
        output_fields: Sequence[str] | None = None,
        limit: int | None = None,
        partitions: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        body = wire.QueryRequest(
            collection=collection,
            filter=filter,
            output_fields=None if output_fields is None else tuple(output_fields),
            partitions=None if partitions is None else tuple(partitions),
            limit=wire.DEFAULT_QUERY_LIMIT if limit is None else limit,
        )
        answer = await self._call(
            "POST", "/v1/query", wire.RowsAnswer, body, token=self.data_token, fast=True
        )
        return answer.rows

    async def get(
        self,
        collection: str,
        ids: Sequence[int | str],
        output_fields: Sequence[str] | None = None,
        partitions: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        body = wire.GetRequest(
            collection=collection,
            ids=list(ids),
            output_fields=None if output_fields is None else tuple(output_fields),
            partitions=None if partitions is None else tuple(partitions),
        )
        answer = await self._call("POST", "/v1/get", wire.RowsAnswer, body, token=self.data_token, fast=True)
        return answer.rows


_F32_LE = np.dtype("<f4")


def _packed_vectors(vectors: Sequence[Sequence[float]] | npt.NDArray[Any]) -> npt.NDArray[np.float32] | None:
    """The query vectors as a little-endian float32 (nq, dim) array, or None when they are not
    one (the JSON path then lets the node answer what is wrong)."""
    if isinstance(vectors, np.ndarray) and vectors.dtype == np.float32:
        # already float32 (the proxy's decoded placeholder group): no float64 round trip
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
            return None
        if not np.isfinite(vectors).all():
            return None
        same: npt.NDArray[np.float32] = np.ascontiguousarray(vectors, dtype=_F32_LE)
        return same
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(vectors, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        return None
    if not np.all(np.isfinite(array)) or np.any(np.abs(array) > np.finfo(np.float32).max):
        return None  # the node names the component that is no finite float32
    packed: npt.NDArray[np.float32] = np.ascontiguousarray(array, dtype=_F32_LE)
    return packed
