"""REST v2 (`POST /v2/vectordb/...`, on the gRPC port) and REST v1 (`/api/v1/...`, on
`--http-port` beside `/metrics`, `/healthz`, `/readyz`), both thin translations onto `api.MilvusApi`.

REST v2 answers as Milvus does: HTTP 200 with `{"code": 0, "data": ...}` or
`{"code": N, "message": "..."}` (N the merr code); a body that is not JSON is 1801, a missing
required key 1802, a wrong type or an unknown key 1100. Authentication failures are HTTP 401 with
`{"code": 1800, "message": "user hasn't authenticated"}`, as Milvus' auth middleware answers.

REST v1 answers like Milvus' low-level handlers, which marshal the gRPC `common.Status`: `{}` on
success, `{"error_code": E, "reason": "...", "code": N}` (HTTP 200) for a Milvus error, HTTP 400
`{"error_code": 5, "reason": "bad request: parse body failed: ..."}` for a body that cannot be read.

No input produces a 5xx: bodies are bounded (`--max-request-bytes`, 413) and checked for depth
before decoding; a 500 means a bug here (logged with its traceback). A client that goes away
mid-request is not an error answer. Tokens in headers are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from aiohttp import hdrs, web
from prometheus_client.exposition import choose_encoder
from pymilvus.grpc_gen import common_pb2

from vectorload.httplog import CLIENT_ERRORS, redacted_logger
from vectorload.storage.api import DYNAMIC_FIELD

from . import state
from .api import MilvusApi, QueryOutcome, SearchOutcome
from .auth import Authenticator, AuthError
from .convert import DATA_TYPE_NAMES, field_id, score
from .errors import (
    INCORRECT_PARAMETER_FORMAT,
    MISSING_REQUIRED_PARAMETERS,
    NEED_AUTHENTICATE,
    PARAMETER_INVALID,
    PARAMETER_TOO_LARGE,
    REST_NEED_AUTHENTICATE,
    UNEXPECTED,
    UNIMPLEMENTED,
    MilvusError,
    collection_not_found,
    echo,
    old_code,
    parameter_invalid,
)
from .metrics import ProxyMetrics
from .names import check_collection_name, rest_database
from .requests import FLOAT_VECTOR_PLACEHOLDER, Limits
from .rest_types import (
    BodyError,
    V1Collection,
    V1Partitions,
    V2Collection,
    V2Database,
    V2Get,
    V2List,
    V2Partition,
    V2Partitions,
    V2Query,
    V2Search,
    decode,
    decode_large,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
JSON = "application/json"

# aiohttp's own server errors (malformed requests it refuses before any handler runs) go to this
# logger: their messages quote the offending request line or header — a token among them — so
# they are logged as one line naming the error class only
http_log = redacted_logger("vectorload_proxy.http")

API_KEY = web.AppKey("api", MilvusApi)
AUTH_KEY = web.AppKey("auth", Authenticator)
METRICS_KEY = web.AppKey("metrics", ProxyMetrics)
LIMITS_KEY = web.AppKey("limits", Limits)
READY_KEY: web.AppKey[Callable[[], bool]] = web.AppKey("ready")


class ClientGone(Exception):
    pass


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(
            body, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str
        ).encode(),
        status=status,
        content_type=JSON,
    )


async def _read(request: web.Request) -> bytes:
    limits = request.app[LIMITS_KEY]
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise MilvusError(
            PARAMETER_TOO_LARGE,
            f"request body exceeds the limit --max-request-bytes {limits.max_request_bytes} bytes",
        ) from None
    except CLIENT_ERRORS as exc:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ClientGone from exc
        raise BodyError("malformed", "the request body could not be read (Content-Encoding?)") from None


def _check_auth(request: web.Request) -> None:
    auth = request.app[AUTH_KEY]
    if not auth.enabled:
        return
    header = request.headers.get(hdrs.AUTHORIZATION)
    auth.check_http(header)


Route = Callable[[web.Request], Awaitable[Any]]


# ------------------------------------------------------------------------------------ REST v2


Refusal = tuple[str, web.StreamResponse]  # the metric's code label, the answer


def _route(
    protocol: str,
    name: str,
    serve: Callable[[web.Request, bytes], Awaitable[web.StreamResponse]],
    refuse: Callable[[Exception], Refusal],
) -> Route:
    """What every REST endpoint of `protocol` shares: in-flight, request and latency metrics,
    the token check (401), the bounded body read, a client gone mid-body (a bare 400); `refuse`
    turns any other exception into the protocol's answer (and logs the unexpected ones)."""

    async def run(request: web.Request) -> web.StreamResponse:
        metrics = request.app[METRICS_KEY]
        metrics.in_flight.labels(protocol).inc()
        started = time.perf_counter()
        code = "0"
        try:
            try:
                _check_auth(request)
            except AuthError:
                code = str(NEED_AUTHENTICATE)
                return _json({"code": NEED_AUTHENTICATE, "message": REST_NEED_AUTHENTICATE}, 401)
            return await serve(request, await _read(request))
        except ClientGone:
            code = "disconnected"
            return web.Response(status=400)
        except Exception as exc:
            code, response = refuse(exc)
            if code == "500":
                log.exception("unexpected error on %s %s", request.method, name)
            return response
        finally:
            metrics.in_flight.labels(protocol).dec()
            metrics.requests.labels(protocol, name, code).inc()
            metrics.latency.labels(protocol, name).observe(time.perf_counter() - started)

    return run


def _refuse_v2(exc: Exception) -> Refusal:
    if isinstance(exc, MilvusError):
        status = 413 if exc.code == PARAMETER_TOO_LARGE else 200
        return str(exc.code), _json({"code": exc.code, "message": exc.message}, status)
    if isinstance(exc, BodyError):
        number = {"malformed": INCORRECT_PARAMETER_FORMAT, "missing": MISSING_REQUIRED_PARAMETERS}.get(
            exc.kind, PARAMETER_INVALID
        )
        text = {
            INCORRECT_PARAMETER_FORMAT: "can only accept json format request",
            MISSING_REQUIRED_PARAMETERS: "missing required parameters",
            PARAMETER_INVALID: "invalid parameter",
        }[number]
        return str(number), _json({"code": number, "message": f"{text}, error: {echo(exc.message)}"})
    return "500", _json({"code": UNEXPECTED, "message": "unexpected error; see the proxy log"}, 500)


def v2_route(name: str, handler: Callable[[web.Request, bytes], Awaitable[Any]]) -> Route:
    """One REST v2 endpoint: auth, body, `{"code":0,"data":...}` or `{"code":N,"message":...}`."""

    async def serve(request: web.Request, raw: bytes) -> web.StreamResponse:
        data = await handler(request, raw)
        if isinstance(data, web.StreamResponse):
            return data
        return _json({"code": 0, "data": data})

    return _route("rest_v2", name, serve, _refuse_v2)


def _depth(request: web.Request) -> int:
    return request.app[LIMITS_KEY].max_json_depth


async def v2_collections_list(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2List, _depth(request))
    rows = await request.app[API_KEY].show_collections(rest_database(request, body.db_name))
    return [r.name for r in rows]


async def v2_collections_has(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Collection, _depth(request))
    return {
        "has": await request.app[API_KEY].has_collection(
            rest_database(request, body.db_name), body.collection_name
        )
    }


async def v2_collections_describe(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Collection, _depth(request))
    api = request.app[API_KEY]
    described = await api.describe_collection(rest_database(request, body.db_name), body.collection_name)
    info = described.info
    schema = info.schema
    indexes = await api.describe_index(rest_database(request, body.db_name), body.collection_name)
    return {
        "collectionName": info.name,
        "collectionID": info.collection_id,
        "dbName": described.database,
        "description": schema.description,
        "autoId": False,
        "enableDynamicField": schema.dynamic_field,
        "fields": [
            {
                "name": f.name,
                "id": field_id(schema, f.name),
                "type": DATA_TYPE_NAMES[f.type],
                "primaryKey": f.is_primary,
                "partitionKey": False,
                "autoId": False,
                "description": "",
                "params": [
                    {"key": k, "value": str(v)}
                    for k, v in (("dim", f.dim), ("max_length", f.max_length))
                    if v is not None
                ],
            }
            for f in schema.fields
        ],
        "indexes": [
            {"fieldName": i.field, "indexName": i.index_name, "metricType": i.params.get("metric_type", "")}
            for i in indexes
        ],
        "load": state.LOAD_STATE_NAMES[described.load_state],
        "shardsNum": 1,
        "partitionsNum": len(info.partitions),
        "consistencyLevel": "Bounded",
        "properties": [],
        "aliases": [],
        "createTime": info.created_ns // 1_000_000,
    }


async def v2_collections_stats(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Collection, _depth(request))
    return {
        "rowCount": await request.app[API_KEY].collection_rows(
            rest_database(request, body.db_name), body.collection_name
        )
    }


async def v2_collections_load(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Collection, _depth(request))
    api = request.app[API_KEY]
    db = rest_database(request, body.db_name)
    if body.partition_names:
        await api.load_partitions(
            db, body.collection_name, body.partition_names, body.replica_number, body.load_fields,
            body.skip_load_dynamic_field,
        )  # fmt: skip
    else:
        await api.load_collection(
            db, body.collection_name, body.replica_number, body.load_fields, body.skip_load_dynamic_field
        )
    await _wait_loaded(api, db, body.collection_name, body.partition_names)
    return {}


async def _wait_loaded(api: MilvusApi, database: str, collection: str, partitions: list[str]) -> None:
    if api.settings.rest_load_wait > 0:
        await api.wait_loaded(database, collection, partitions, api.settings.rest_load_wait)


async def v2_collections_release(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Collection, _depth(request))
    await request.app[API_KEY].release_collection(rest_database(request, body.db_name), body.collection_name)
    return {}


async def v2_collections_load_state(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Collection, _depth(request))
    api = request.app[API_KEY]
    db = rest_database(request, body.db_name)
    load, progress = await api.load_state(db, body.collection_name, body.partition_names)
    if load == state.NOT_EXIST:
        raise collection_not_found(body.collection_name)
    message = ""
    if load == state.LOADING:
        try:
            progress = await api.loading_progress(db, body.collection_name, body.partition_names)
        except MilvusError as exc:
            message = f"{exc.message}."
    return {"loadProgress": progress, "loadState": state.LOAD_STATE_NAMES[load], "message": message}


async def v2_partitions_list(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Collection, _depth(request))
    rows = await request.app[API_KEY].show_partitions(
        rest_database(request, body.db_name), body.collection_name
    )
    return [r.name for r in rows]


async def v2_partitions_has(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Partition, _depth(request))
    found = await request.app[API_KEY].has_partition(
        rest_database(request, body.db_name), body.collection_name, body.partition_name
    )
    return {"has": found}


async def v2_partitions_stats(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Partition, _depth(request))
    rows = await request.app[API_KEY].partition_rows(
        rest_database(request, body.db_name), body.collection_name, body.partition_name
    )
    return {"rowCount": rows}


async def v2_partitions_load(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Partitions, _depth(request))
    api = request.app[API_KEY]
    db = rest_database(request, body.db_name)
    await api.load_partitions(db, body.collection_name, body.partition_names, body.replica_number)
    await _wait_loaded(api, db, body.collection_name, body.partition_names)
    return {}


async def v2_partitions_release(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Partitions, _depth(request))
    await request.app[API_KEY].release_partitions(
        rest_database(request, body.db_name), body.collection_name, body.partition_names
    )
    return {}


async def v2_databases_list(request: web.Request, raw: bytes) -> Any:
    decode(raw, V2List, _depth(request))
    return request.app[API_KEY].list_databases()


async def v2_databases_describe(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Database, _depth(request))
    name, db_id = request.app[API_KEY].describe_database(body.db_name)
    return {"dbName": name, "dbID": db_id, "properties": []}


def _row(fields: dict[str, Any]) -> dict[str, Any]:
    """A REST row: schema fields as they are, `$meta` and dynamic keys flattened into it."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == DYNAMIC_FIELD and isinstance(value, dict):
            for k, v in value.items():
                out.setdefault(k, v)
        else:
            out[key] = value
    return out


def _placeholder(data: list[list[float]]) -> bytes:
    if not data:
        raise parameter_invalid("data should not be empty")
    width = len(data[0])
    if any(len(v) != width for v in data):
        raise parameter_invalid("every vector in data must have the same dimension")
    vectors = np.asarray(data, dtype=np.float32)
    group = common_pb2.PlaceholderGroup(
        placeholders=[
            common_pb2.PlaceholderValue(
                tag="$0", type=FLOAT_VECTOR_PLACEHOLDER, values=[v.astype("<f4").tobytes() for v in vectors]
            )
        ]
    )
    return bytes(group.SerializeToString())


def search_rows(outcome: SearchOutcome) -> tuple[list[dict[str, Any]], list[int]]:
    args = outcome.args
    pk = outcome.info.schema.primary_key.name
    rows: list[dict[str, Any]] = []
    topks: list[int] = []
    for per_query in outcome.results:
        hits = per_query[args.offset : args.offset + args.top_k]
        topks.append(len(hits))
        for hit in hits:
            value = score(hit.distance, args.metric)
            if args.round_decimal >= 0:
                value = round(value, args.round_decimal)
            rows.append({pk: hit.id, "distance": value, **_row(hit.fields)})
    return rows, topks


async def v2_entities_search(request: web.Request, raw: bytes) -> Any:
    body = await decode_large(raw, V2Search, _depth(request))
    params = (
        dict(body.search_params.get("params") or {})
        if isinstance(body.search_params.get("params"), dict)
        else {}
    )
    for key, value in body.search_params.items():
        if key not in ("params", "metricType"):
            params.setdefault(key, value)
    search_params = {"topk": str(body.limit), "offset": str(body.offset), "params": json.dumps(params)}
    if body.anns_field:
        search_params["anns_field"] = body.anns_field
    metric = body.search_params.get("metricType")
    if isinstance(metric, str) and metric:
        search_params["metric_type"] = metric
    outcome = await request.app[API_KEY].search(
        rest_database(request, body.db_name), body.collection_name, body.partition_names, body.filter,
        _placeholder(body.data), body.output_fields, search_params, nq=len(body.data),
    )  # fmt: skip
    rows, topks = search_rows(outcome)
    return _json({"code": 0, "data": rows, "topks": topks, "cost": 0})


def query_rows(outcome: QueryOutcome) -> list[dict[str, Any]]:
    return [_row(r) for r in outcome.rows]


async def v2_entities_query(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Query, _depth(request))
    params = {"limit": str(body.limit)} if body.limit else {}
    if body.offset:
        params["offset"] = str(body.offset)
    outcome = await request.app[API_KEY].query(
        rest_database(request, body.db_name), body.collection_name, body.filter, body.output_fields or ["*"],
        body.partition_names, params,
    )  # fmt: skip
    return _json({"code": 0, "data": query_rows(outcome), "cost": 0})


async def v2_entities_get(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Get, _depth(request))
    api = request.app[API_KEY]
    # the name is checked before it becomes a storage path ("\x00" made os.stat raise, "../x"
    # would have been read outside the storage root)
    info = await api.catalog.get(check_collection_name(body.collection_name))
    ids = body.id if isinstance(body.id, list) else [body.id]
    if not ids:
        raise parameter_invalid("id should not be empty")
    pk = info.schema.primary_key
    if pk.type == "int64":
        if not all(isinstance(i, int) for i in ids):
            raise parameter_invalid(f"the primary key {pk.name} is an Int64: id must hold integers")
        expr = f"{pk.name} in [{','.join(str(i) for i in ids)}]"
    else:
        expr = f"{pk.name} in [{','.join(json.dumps(str(i)) for i in ids)}]"
    outcome = await api.query(
        rest_database(request, body.db_name), body.collection_name, expr, body.output_fields or ["*"],
        body.partition_names, {"limit": str(len(ids))},
    )  # fmt: skip
    return _json({"code": 0, "data": query_rows(outcome), "cost": 0})


V2_ROUTES: dict[str, Callable[[web.Request, bytes], Awaitable[Any]]] = {
    "collections/list": v2_collections_list,
    "collections/has": v2_collections_has,
    "collections/describe": v2_collections_describe,
    "collections/get_stats": v2_collections_stats,
    "collections/load": v2_collections_load,
    "collections/refresh_load": v2_collections_load,
    "collections/release": v2_collections_release,
    "collections/get_load_state": v2_collections_load_state,
    "partitions/list": v2_partitions_list,
    "partitions/has": v2_partitions_has,
    "partitions/get_stats": v2_partitions_stats,
    "partitions/load": v2_partitions_load,
    "partitions/release": v2_partitions_release,
    "databases/list": v2_databases_list,
    "databases/describe": v2_databases_describe,
    "entities/search": v2_entities_search,
    "entities/query": v2_entities_query,
    "entities/get": v2_entities_get,
}


async def v2_unknown(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    metrics.requests.labels("rest_v2", "unknown", str(UNIMPLEMENTED)).inc()
    what = f"{request.method} {echo(request.path, 120)}"
    return _json(
        {"code": UNIMPLEMENTED, "message": f"service unimplemented: {what} is not supported by vectorload"},
        404,
    )


def build_v2_app(
    api: MilvusApi, auth: Authenticator, metrics: ProxyMetrics, limits: Limits
) -> web.Application:
    app = web.Application(
        client_max_size=limits.max_request_bytes, middlewares=[http_errors], handler_args={"logger": http_log}
    )
    _keys(app, api, auth, metrics, limits)
    from .writes_rest import WRITE_ROUTES  # the write path's endpoints (writes_rest.py)

    for name, handler in {**V2_ROUTES, **WRITE_ROUTES}.items():
        app.router.add_post(f"/v2/vectordb/{name}", v2_route(name, handler))
    app.router.add_route("*", "/{tail:.*}", v2_unknown)
    return app


# ------------------------------------------------------------------------------------ REST v1


def _v1_status(exc: MilvusError) -> dict[str, Any]:
    return {"error_code": old_code(exc.code), "reason": exc.message, "code": exc.code}


def _refuse_v1(exc: Exception) -> Refusal:
    if isinstance(exc, MilvusError):
        return str(exc.code), _json(_v1_status(exc), 413 if exc.code == PARAMETER_TOO_LARGE else 200)
    if isinstance(exc, BodyError):
        return "400", _json(
            {"error_code": 5, "reason": f"bad request: parse body failed: {echo(exc.message)}"}, 400
        )
    return "500", _json({"error_code": 1, "reason": "unexpected error; see the proxy log"}, 500)


def v1_route(name: str, handler: Callable[[web.Request, bytes], Awaitable[None]]) -> Route:
    async def serve(request: web.Request, raw: bytes) -> web.StreamResponse:
        await handler(request, raw)
        return _json({})

    return _route("rest_v1", name, serve, _refuse_v1)


async def v1_load_collection(request: web.Request, raw: bytes) -> None:
    body = decode(raw, V1Collection, _depth(request))
    api = request.app[API_KEY]
    await api.load_collection(
        body.db_name, body.collection_name, body.replica_number, body.load_fields,
        body.skip_load_dynamic_field, body.resource_groups,
    )  # fmt: skip
    await _wait_loaded(api, body.db_name, body.collection_name, [])


async def v1_release_collection(request: web.Request, raw: bytes) -> None:
    body = decode(raw, V1Collection, _depth(request))
    await request.app[API_KEY].release_collection(body.db_name, body.collection_name)


async def v1_load_partitions(request: web.Request, raw: bytes) -> None:
    body = decode(raw, V1Partitions, _depth(request))
    api = request.app[API_KEY]
    await api.load_partitions(
        body.db_name, body.collection_name, body.partition_names, body.replica_number, body.load_fields,
        body.skip_load_dynamic_field, body.resource_groups,
    )  # fmt: skip
    await _wait_loaded(api, body.db_name, body.collection_name, body.partition_names)


async def v1_release_partitions(request: web.Request, raw: bytes) -> None:
    body = decode(raw, V1Partitions, _depth(request))
    await request.app[API_KEY].release_partitions(body.db_name, body.collection_name, body.partition_names)


async def metrics_page(request: web.Request) -> web.Response:
    """The Prometheus exposition, rendered in a worker thread: rendering every series (a latency
    histogram per method) takes milliseconds of CPU, and bursts of unauthenticated /metrics on
    the event loop held /healthz behind them (found by tests/fuzz). The format follows the
    Accept header, compressed when the scraper accepts it."""
    encoder, content_type = choose_encoder(request.headers.get(hdrs.ACCEPT, ""))
    body = await asyncio.to_thread(encoder, request.app[METRICS_KEY].registry)
    response = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
    response.enable_compression()
    return response


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if request.app[READY_KEY]():
        return _json({"status": "ready"})
    return _json({"status": "not ready", "reason": "the watch cache has not listed its objects yet"}, 503)


def build_http_app(
    api: MilvusApi,
    auth: Authenticator,
    metrics: ProxyMetrics,
    limits: Limits,
    ready: Callable[[], bool],
) -> web.Application:
    app = web.Application(
        client_max_size=limits.max_request_bytes, middlewares=[http_errors], handler_args={"logger": http_log}
    )
    _keys(app, api, auth, metrics, limits)
    app[READY_KEY] = ready
    app.router.add_post("/api/v1/collection/load", v1_route("collection/load", v1_load_collection))
    app.router.add_delete("/api/v1/collection/load", v1_route("collection/release", v1_release_collection))
    app.router.add_post("/api/v1/partitions/load", v1_route("partitions/load", v1_load_partitions))
    app.router.add_delete("/api/v1/partitions/load", v1_route("partitions/release", v1_release_partitions))
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/health", healthz)
    return app


def _keys(
    app: web.Application, api: MilvusApi, auth: Authenticator, metrics: ProxyMetrics, limits: Limits
) -> None:
    app[API_KEY] = api
    app[AUTH_KEY] = auth
    app[METRICS_KEY] = metrics
    app[LIMITS_KEY] = limits


@web.middleware
async def http_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals (no route, wrong method) as JSON 4xx naming the problem."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        return _json(
            {
                "code": PARAMETER_INVALID,
                "message": f"{request.method} is not allowed on {echo(request.path, 120)}",
            },
            405,
        )
    except web.HTTPNotFound:
        return _json({"code": UNIMPLEMENTED, "message": f"no route {echo(request.path, 120)}"}, 404)
    except web.HTTPException as exc:
        return _json(
            {"code": PARAMETER_INVALID, "message": exc.reason}, exc.status if exc.status >= 400 else 400
        )
