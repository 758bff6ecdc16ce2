"""The aiohttp application: routes, JSON errors, authentication, body limits, executors.

Every answer body is a `vectorload.wire.querynode` type. No input may produce a 5xx: bad bodies,
bad headers, wrong encodings and oversized or over-deep bodies are 4xx with the error body; a 5xx
means a bug here (logged, counted under its code). A client that goes away mid-request is counted
in `vectorload_querynode_client_disconnects_total`, not as an error answer.

The event loop only routes: bodies larger than `OFFLOAD_BYTES` are decoded in a worker thread, and
data requests validate, search and encode their answer in the data pool, so `/healthz` stays
prompt while the node is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

from aiohttp import hdrs, web
from prometheus_client.exposition import choose_encoder

from vectorload.httplog import CLIENT_ERRORS, redacted_logger
from vectorload.wire import querynode as wire
from vectorload.wire.hits import HitColumns

from . import auth
from .errors import ApiError, echo
from .node import QueryNode
from .requests import (
    GetRequest,
    Limits,
    LoadRequest,
    QueryRequest,
    ReleaseRequest,
    SearchRequest,
    check_name,
    decode_body,
    decode_packed_search,
)
from .search import Deadline, PreparedSearch

log = logging.getLogger("vectorload.querynode")
# aiohttp's own server errors (malformed requests it rejects before any handler runs) go here:
# their messages quote the offending request line or header — a token among them — so they are
# logged as one line naming the error class only
http_log = redacted_logger("vectorload.querynode.http")

NODE_KEY = web.AppKey("node", QueryNode)
T = TypeVar("T")
W = TypeVar("W", bound=wire.Wire)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OFFLOAD_BYTES = 64 * 1024  # bodies above this are decoded off the event loop
# A light search (no filter, no output fields) of at most this many nq × topK hits is merged and
# encoded on the event loop (~0.1 ms of numpy / msgspec for 1,000 packed hits; a JSON answer
# builds a Hit per hit, so fewer); anything else runs in the data pool.
LOOP_HITS = 1024
LOOP_JSON_HITS = 128
# Content-Encoding values aiohttp decodes itself (anything else would reach the JSON decoder raw)
CONTENT_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
JSON = "application/json"


class ClientGone(Exception):
    """The client closed the connection before its request was read."""


def _answer(value: wire.Wire, status: int = 200) -> web.Response:
    return web.Response(body=wire.encode(value), status=status, content_type=JSON)


def _encoded(body: bytes, content_type: str = JSON) -> web.Response:
    return web.Response(body=body, content_type=content_type)


def _media_types(header: str | None) -> list[str]:
    """The media types of a Content-Type or Accept header, lower case, parameters dropped."""
    if not header:
        return []
    return [part.split(";", 1)[0].strip().lower() for part in header.split(",")]


def search_formats(content_type: str | None, accept: str | None) -> tuple[bool, bool]:
    """(body is MessagePack, answer in MessagePack). The body's Content-Type names its format
    (anything but the MessagePack types is JSON, as before); the answer follows Accept when it
    names a MessagePack type or JSON, else the body's format."""
    packed_in = any(t in wire.MSGPACK_TYPES for t in _media_types(content_type)[:1])
    accepted = _media_types(accept)
    if any(t in wire.MSGPACK_TYPES for t in accepted):
        return packed_in, True
    if JSON in accepted:
        return packed_in, False
    return packed_in, packed_in


def error_response(err: ApiError) -> web.Response:
    return _answer(wire.ErrorBody(error=wire.ErrorDetail(reason=err.reason, message=err.message)), err.status)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    route = _route(request)
    try:
        response = await handler(request)
    except ApiError as err:
        response = error_response(err)
    except ClientGone:
        node.metrics.disconnects.labels(route).inc()
        return web.Response(status=400)  # nobody reads it
    except web.HTTPRequestEntityTooLarge:
        response = error_response(_too_large(node))
    except web.HTTPMethodNotAllowed:
        response = error_response(
            ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on {echo(request.path)}")
        )
    except web.HTTPNotFound:
        response = error_response(ApiError(404, "NotFound", f"no route {echo(request.path)}"))
    except web.HTTPException as exc:
        response = error_response(ApiError(exc.status, "HTTPError", exc.reason))
    except asyncio.CancelledError:
        node.metrics.disconnects.labels(route).inc()
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, echo(request.path))
        response = error_response(ApiError(500, "InternalError", "internal error; see the querynode log"))
    node.metrics.requests.labels(route, str(response.status)).inc()
    return response


def _too_large(node: QueryNode) -> ApiError:
    limit = node.settings.limits.max_request_bytes
    message = f"request body exceeds the limit --max-request-bytes {limit} bytes"
    return ApiError(413, "RequestTooLarge", message)


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _read(request: web.Request) -> bytes:
    """The body, decompressed as its Content-Encoding says; 4xx when it cannot be."""
    node = request.app[NODE_KEY]
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        raise ApiError(
            415,
            "UnsupportedContentEncoding",
            f"Content-Encoding {echo(encoding, 40)!r} is not supported (use gzip, deflate or none)",
        )
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(node) from None
    except CLIENT_ERRORS as exc:
        if _gone(request):
            raise ClientGone from exc
        if encoding not in ("", "identity"):
            raise ApiError(
                400, "InvalidContentEncoding", f"the body is not valid {encoding} (Content-Encoding)"
            ) from None
        raise ApiError(400, "InvalidBody", "the request body could not be read") from None


async def _run(pool: Any, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


async def _decode(request: web.Request, type_: type[W], pool: Any) -> W:
    node = request.app[NODE_KEY]
    raw = await _read(request)
    if len(raw) > OFFLOAD_BYTES:
        return await _run(pool, decode_body, raw, type_, node.settings.limits)
    return decode_body(raw, type_, node.settings.limits)


def _control(request: web.Request) -> QueryNode:
    node = request.app[NODE_KEY]
    auth.check(node.settings.token, request.headers.get(hdrs.AUTHORIZATION))
    return node


def _data(request: web.Request) -> QueryNode:
    node = request.app[NODE_KEY]
    if not node.settings.open_data_api:
        auth.check_any(node.settings.data_tokens(), request.headers.get(hdrs.AUTHORIZATION))
    return node


# ------------------------------------------------------------------------------- open routes


async def healthz(request: web.Request) -> web.Response:
    return _answer(wire.HealthAnswer(status="ok"))


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus exposition, rendered in the io pool: rendering every collector takes a few
    milliseconds of CPU, and unauthenticated bursts of /metrics on the event loop held /healthz for
    0.3 s (found by tests/fuzz). The format follows the Accept header (text or OpenMetrics), and
    the answer is compressed when the scraper accepts it."""
    node = request.app[NODE_KEY]
    encoder, content_type = choose_encoder(request.headers.get(hdrs.ACCEPT, ""))
    body = await _run(node.io_pool, encoder, node.metrics.registry)
    response = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
    response.enable_compression()
    return response


async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if await _run(node.io_pool, node.storage_readable):
        return _answer(wire.HealthAnswer(status="ready"))
    return error_response(
        ApiError(503, "StorageUnreadable", f"storage root {node.settings.root} is not readable")
    )


# ---------------------------------------------------------------------------------- control


async def catalog(request: web.Request) -> web.Response:
    node = _control(request)
    return _answer(await _run(node.io_pool, node.collections))


async def catalog_collection(request: web.Request) -> web.Response:
    """200 with the catalog and its `ETag`, or 304 (no body) when `If-None-Match` names it."""
    node = _control(request)
    collection = check_name(request.match_info["collection"], "collection")
    since = request.headers.get(hdrs.IF_NONE_MATCH)
    etag, found = await _run(node.io_pool, node.catalog_if_changed, collection, since)
    if found is None:
        return web.Response(status=304, headers={hdrs.ETAG: etag})
    response = _answer(found)
    response.headers[hdrs.ETAG] = etag
    return response


MAX_TOKEN_COLLECTIONS = 4096


async def catalog_tokens(request: web.Request) -> web.Response:
    """`POST /v1/catalog/tokens`: many collections' catalog ETags at once."""
    node = _control(request)
    body = await _decode(request, wire.CatalogTokensRequest, node.io_pool)
    if len(body.collections) > MAX_TOKEN_COLLECTIONS:
        raise ApiError(
            400,
            "InvalidRequest",
            f"collections has {len(body.collections)} items; the limit is {MAX_TOKEN_COLLECTIONS}",
        )
    names = [check_name(c, "collection") for c in body.collections]
    return _answer(await _run(node.io_pool, node.catalog_tokens, names))


async def load(request: web.Request) -> web.Response:
    node = _control(request)
    body = await _decode(request, wire.LoadRequest, node.io_pool)
    return _answer(await _run(node.io_pool, node.load, LoadRequest.from_wire(body)))


async def release(request: web.Request) -> web.Response:
    node = _control(request)
    body = await _decode(request, wire.ReleaseRequest, node.io_pool)
    return _answer(await _run(node.io_pool, node.release, ReleaseRequest.from_wire(body)))


async def distribution(request: web.Request) -> web.Response:
    node = _control(request)
    return _answer(node.distribution())


# ------------------------------------------------------------------------------------- data
# validation (vectors → numpy), the work and the answer's encoding all run in the data pool


def _search_request(raw: bytes, packed: bool, limits: Limits) -> SearchRequest:
    if packed:
        return SearchRequest.from_packed(decode_packed_search(raw), limits)
    return SearchRequest.from_wire(decode_body(raw, wire.SearchRequest, limits), limits)


def _encode_hits(columns: HitColumns, packed: bool) -> bytes:
    return wire.encode_msgpack(columns.pack()) if packed else columns.encode_json()


def _search_raw(node: QueryNode, raw: bytes, packed_in: bool, packed_out: bool, deadline: Deadline) -> bytes:
    """Decode, validate, search and encode in one trip to the data pool (a big body)."""
    req = _search_request(raw, packed_in, node.settings.limits)
    return _encode_hits(node.search(req, deadline), packed_out)


def _search_prepared(node: QueryNode, prepared: PreparedSearch, packed_out: bool) -> bytes:
    return _encode_hits(node.run_prepared(prepared), packed_out)


async def _in_pool(pool: Executor, calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run `calls` in `pool` side by side; their results in order, or the first exception. One
    wake-up of the event loop when the last one finishes (not one per call)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[T]] = loop.create_future()
    results: list[Any] = [None] * len(calls)
    remaining = [len(calls)]
    lock = threading.Lock()

    def settle(error: BaseException | None) -> None:
        if not done.done():
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(results)

    def run(i: int, call: Callable[[], T]) -> None:
        error: BaseException | None = None
        try:
            results[i] = call()
        except BaseException as exc:  # handed to the awaiting request
            error = exc
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if error is not None or last:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle, error)

    for i, call in enumerate(calls):
        pool.submit(run, i, call)
    return await done


async def _search_on_loop(node: QueryNode, prepared: PreparedSearch, packed_out: bool) -> bytes:
    """A small light search without the data pool: the event loop hands the segment searches
    straight to the search pool (GIL released in `knn_query`) and merges and encodes the few hits
    itself (tens of microseconds): one thread hop each way instead of two."""
    started = time.monotonic()
    if prepared.in_pool:
        calls = [functools.partial(prepared.segment, s) for s in prepared.segments]
        answers = await _in_pool(node.search_pool, calls)
    else:
        answers = (await _in_pool(node.search_pool, [prepared.all_segments]))[0]
    body = _encode_hits(prepared.finish(answers), packed_out)
    node.metrics.search_duration.labels("search").observe(time.monotonic() - started)
    return body


def _query(node: QueryNode, body: wire.QueryRequest, deadline: Deadline) -> bytes:
    req = QueryRequest.from_wire(body, node.settings.limits)
    return wire.encode(node.query(req, deadline))


def _get(node: QueryNode, body: wire.GetRequest, deadline: Deadline) -> bytes:
    req = GetRequest.from_wire(body, node.settings.limits)
    return wire.encode(node.get(req, deadline))


async def search(request: web.Request) -> web.Response:
    node = _data(request)
    deadline = Deadline.start(node.settings.limits.request_timeout)
    packed_in, packed_out = search_formats(
        request.headers.get(hdrs.CONTENT_TYPE), request.headers.get(hdrs.ACCEPT)
    )
    media = wire.SEARCH_MSGPACK if packed_out else JSON
    raw = await _read(request)
    if len(raw) > OFFLOAD_BYTES:
        return _encoded(
            await _run(node.data_pool, _search_raw, node, raw, packed_in, packed_out, deadline), media
        )
    # a small body: decoded, checked and planned here (microseconds)
    prepared = node.prepare_search(_search_request(raw, packed_in, node.settings.limits), deadline)
    hits = len(prepared.req.vectors) * prepared.req.top_k
    if prepared.light and hits <= (LOOP_HITS if packed_out else LOOP_JSON_HITS):
        return _encoded(await _search_on_loop(node, prepared, packed_out), media)
    return _encoded(await _run(node.data_pool, _search_prepared, node, prepared, packed_out), media)


async def query(request: web.Request) -> web.Response:
    node = _data(request)
    deadline = Deadline.start(node.settings.limits.request_timeout)
    body = await _decode(request, wire.QueryRequest, node.data_pool)
    return _encoded(await _run(node.data_pool, _query, node, body, deadline))


async def get(request: web.Request) -> web.Response:
    node = _data(request)
    deadline = Deadline.start(node.settings.limits.request_timeout)
    body = await _decode(request, wire.GetRequest, node.data_pool)
    return _encoded(await _run(node.data_pool, _get, node, body, deadline))


async def _close(app: web.Application) -> None:
    app[NODE_KEY].close()


def build_app(node: QueryNode) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware],
        client_max_size=node.settings.limits.max_request_bytes,
        handler_args={"logger": http_log},
    )
    app[NODE_KEY] = node
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/catalog", catalog)
    app.router.add_get("/v1/catalog/{collection}", catalog_collection)
    app.router.add_post("/v1/catalog/tokens", catalog_tokens)
    app.router.add_post("/v1/segments/load", load)
    app.router.add_post("/v1/segments/release", release)
    app.router.add_get("/v1/distribution", distribution)
    app.router.add_post("/v1/search", search)
    app.router.add_post("/v1/query", query)
    app.router.add_post("/v1/get", get)
    app.on_cleanup.append(_close)
    return app
