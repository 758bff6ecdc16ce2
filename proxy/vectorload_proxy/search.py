"""Search, query and get on the querynodes of one replica, retried on another when a node fails.

The data path is the querynode's own client (`vectorload.client.QuerynodeClient`, one per node
URL, sharing one `Http1Pool` of keep-alive connections for the data calls) and the one top-k
merge (`vectorload.client.merge`), on columns from the node's packed answer to the protobuf
answer (no per-hit objects: at batch 100 they were most of the proxy's CPU); nothing of the wire
is re-implemented here. A replica is tried as a whole: every node of it is
asked concurrently and the answers are merged. When a node cannot answer — unreachable, a 5xx,
a node that restarted empty and says CollectionNotLoaded, a malformed answer — the next replica
of the round-robin order (`routing.py`) is tried, so that a querynode killed mid-search-loop
costs a retry, not a failed search. An error about the request itself (a bad filter, a field
that is not loaded, a limit) is the same on every replica and is answered at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp

from vectorload.client import QuerynodeClient, QuerynodeError, merge_columns
from vectorload.client.transport import Http1Pool
from vectorload.wire.hits import HitColumns

from .errors import (
    MilvusError,
    collection_not_loaded,
    parameter_invalid,
    partition_not_loaded,
    service_unavailable,
    timeout,
)
from .requests import QueryArgs, SearchArgs
from .routing import Route

log = logging.getLogger(__name__)
T = TypeVar("T")


class Querynodes:
    """One client per querynode URL over shared connection pools: the data calls over bare
    keep-alive HTTP/1.1 (`Http1Pool`), anything else over one aiohttp session."""

    def __init__(self, data_token: Callable[[], str | None], request_timeout: float) -> None:
        self._token = data_token
        self._timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None
        self._pool = Http1Pool()
        self._clients: dict[str, QuerynodeClient] = {}

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=64, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
            self._clients.clear()
        return self._session

    def client(self, url: str) -> QuerynodeClient:
        token = self._token()
        found = self._clients.get(url)
        if found is None or found.data_token != token:
            found = QuerynodeClient(
                url, data_token=token, timeout=self._timeout, session=self._sess(), pool=self._pool
            )
            self._clients[url] = found
        return found

    async def close(self) -> None:
        await self._pool.close()
        self._pool = Http1Pool()  # usable again, like the session
        self._clients.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


NOT_LOADED = frozenset({"CollectionNotLoaded", "PartitionNotLoaded"})


def node_failure(exc: QuerynodeError) -> bool:
    """The node could not answer (unreachable, 5xx, a malformed answer): another replica may."""
    return exc.status == 0 or exc.status >= 500


def retryable(exc: QuerynodeError) -> bool:
    """Worth asking the next replica: a node failure, or a whole replica holding none of it
    (a node restarted empty and the operator has not refilled it yet)."""
    return node_failure(exc) or exc.reason in NOT_LOADED


def request_error(exc: QuerynodeError, collection: str) -> MilvusError:
    """A querynode's answer about the request, as the Milvus error of the same cause."""
    if exc.reason == "PartitionNotLoaded":
        return partition_not_loaded(collection, exc.message)
    if exc.reason == "CollectionNotLoaded":
        return collection_not_loaded(collection, exc.message)
    if exc.status == 408:
        return timeout(exc.message)
    if exc.status in (401, 403):
        return service_unavailable(f"the querynodes refused the proxy's data token ({exc.message})")
    return parameter_invalid(exc.message)


async def on_replicas(
    routes: Sequence[Route],
    collection: str,
    attempt: Callable[[Route], Awaitable[T]],
    on_retry: Callable[[Route, QuerynodeError], None] | None = None,
) -> T:
    """`attempt(route)` on each route in turn until one answers (see the module docstring)."""
    last: QuerynodeError | None = None
    for route in routes:
        try:
            return await attempt(route)
        except QuerynodeError as exc:
            if not retryable(exc):
                raise request_error(exc, collection) from None
            last = exc
            log.info("replica %s of %s failed (%s); trying the next replica", route.replica, collection, exc)
            if on_retry is not None:
                on_retry(route, exc)
    if last is not None and last.reason in NOT_LOADED:
        raise request_error(last, collection)
    detail = f"every loaded replica failed; last: {last}" if last is not None else "no loaded replica"
    raise service_unavailable(f"collection {collection}: {detail}")


async def _gather(calls: Sequence[Awaitable[T]]) -> list[T | QuerynodeError]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    out: list[T | QuerynodeError] = []
    for r in results:
        if isinstance(r, QuerynodeError):
            out.append(r)
        elif isinstance(r, BaseException):
            if isinstance(r, asyncio.CancelledError):
                raise r
            out.append(QuerynodeError(0, "Unreachable", f"{type(r).__name__}: {r}"))
        else:
            out.append(r)
    return out


async def search_replica(
    nodes: Querynodes, route: Route, args: SearchArgs, partitions: Sequence[str] | None
) -> HitColumns:
    """The merged top-(k + offset) of the replica's nodes, as columns (no per-hit objects: the
    answer is encoded into protobuf from these arrays, `convert.search_result_columns`)."""
    k = args.top_k + args.offset
    calls = [
        nodes.client(url).search_columns(
            args.collection,
            args.vectors,
            k,
            anns_field=args.anns_field,
            partitions=partitions,
            filter=args.filter,
            output_fields=list(args.output_fields) or None,
            ef=args.ef,
        )
        for url in route.urls
    ]
    answers = await _gather(calls)
    for answer in answers:  # a node failure is retried on the next replica, whatever the others said
        if isinstance(answer, QuerynodeError) and node_failure(answer):
            raise answer
    return merge_columns(answers, args.nq, k)  # "not loaded" nodes hold nothing of it


async def query_replica(
    nodes: Querynodes, route: Route, args: QueryArgs, partitions: Sequence[str] | None, limit: int
) -> list[dict[str, Any]]:
    calls = [
        nodes.client(url).query(
            args.collection,
            args.filter,
            output_fields=list(args.output_fields) or None,
            limit=limit,
            partitions=partitions,
        )
        for url in route.urls
    ]
    answers = await _gather(calls)
    rows: list[dict[str, Any]] = []
    not_loaded: list[QuerynodeError] = []
    for answer in answers:
        if isinstance(answer, QuerynodeError):
            if answer.reason in NOT_LOADED:
                not_loaded.append(answer)  # this node holds none of it: contributes nothing
                continue
            raise answer
        rows.extend(answer)
    if not_loaded and len(not_loaded) == len(answers):
        raise not_loaded[0]
    return rows
