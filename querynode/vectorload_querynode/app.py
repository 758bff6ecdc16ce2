"""The aiohttp application: routes, JSON errors, authentication, body limits, executors."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from . import auth
from .errors import ApiError
from .node import QueryNode
from .requests import (
    GetRequest,
    LoadRequest,
    QueryRequest,
    ReleaseRequest,
    SearchRequest,
    check_name,
    parse_json,
)

log = logging.getLogger("vectorload.querynode")

NODE_KEY = web.AppKey("node", QueryNode)
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=partial(json.dumps, allow_nan=False))


def error_response(err: ApiError) -> web.Response:
    return _json(err.body(), status=err.status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await handler(request)
    except ApiError as err:
        response = error_response(err)
    except web.HTTPRequestEntityTooLarge:
        response = error_response(
            ApiError(413, "RequestTooLarge", f"request body exceeds {node.settings.max_request_bytes} bytes")
        )
    except web.HTTPMethodNotAllowed:
        response = error_response(
            ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}")
        )
    except web.HTTPNotFound:
        response = error_response(ApiError(404, "NotFound", f"no route {request.path}"))
    except web.HTTPException as exc:
        response = error_response(ApiError(exc.status, "HTTPError", exc.reason))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        response = error_response(ApiError(500, "InternalError", "internal error; see the querynode log"))
    node.metrics.requests.labels(route, str(response.status)).inc()
    return response


async def _body(request: web.Request) -> dict[str, Any]:
    return parse_json(await request.read())


async def _run(request: web.Request, pool: Any, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def _control(request: web.Request) -> QueryNode:
    node = request.app[NODE_KEY]
    auth.check(node.settings.token, request.headers.get("Authorization"))
    return node


def _data(request: web.Request) -> QueryNode:
    node = request.app[NODE_KEY]
    auth.check(node.settings.data_token, request.headers.get("Authorization"))
    return node


# ------------------------------------------------------------------------------- open routes


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if await _run(request, node.io_pool, node.storage_readable):
        return _json({"status": "ready"})
    return error_response(
        ApiError(503, "StorageUnreadable", f"storage root {node.settings.root} is not readable")
    )


async def metrics(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    body = await _run(request, node.io_pool, node.metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# ---------------------------------------------------------------------------------- control


async def catalog(request: web.Request) -> web.Response:
    node = _control(request)
    return _json({"collections": await _run(request, node.io_pool, node.collections)})


async def catalog_collection(request: web.Request) -> web.Response:
    node = _control(request)
    collection = check_name(request.match_info["collection"], "collection")
    return _json(await _run(request, node.io_pool, node.catalog, collection))


async def load(request: web.Request) -> web.Response:
    node = _control(request)
    req = LoadRequest.parse(await _body(request))
    return _json({"results": await _run(request, node.io_pool, node.load, req)})


async def release(request: web.Request) -> web.Response:
    node = _control(request)
    req = ReleaseRequest.parse(await _body(request))
    return _json({"released": await _run(request, node.io_pool, node.release, req)})


async def distribution(request: web.Request) -> web.Response:
    node = _control(request)
    return _json(node.distribution())


# ------------------------------------------------------------------------------------- data


async def search(request: web.Request) -> web.Response:
    node = _data(request)
    req = SearchRequest.parse(await _body(request))
    return _json({"results": await _run(request, node.data_pool, node.search, req)})


async def query(request: web.Request) -> web.Response:
    node = _data(request)
    req = QueryRequest.parse(await _body(request))
    return _json({"rows": await _run(request, node.data_pool, node.query, req)})


async def get(request: web.Request) -> web.Response:
    node = _data(request)
    req = GetRequest.parse(await _body(request))
    return _json({"rows": await _run(request, node.data_pool, node.get, req)})


async def _close(app: web.Application) -> None:
    app[NODE_KEY].close()


def build_app(node: QueryNode) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=node.settings.max_request_bytes)
    app[NODE_KEY] = node
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/catalog", catalog)
    app.router.add_get("/v1/catalog/{collection}", catalog_collection)
    app.router.add_post("/v1/segments/load", load)
    app.router.add_post("/v1/segments/release", release)
    app.router.add_get("/v1/distribution", distribution)
    app.router.add_post("/v1/search", search)
    app.router.add_post("/v1/query", query)
    app.router.add_post("/v1/get", get)
    app.on_cleanup.append(_close)
    return app
