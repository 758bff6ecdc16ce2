"""The querynode as a fuzz target: one real `python -m vectorload_querynode` process serving the
`book` sample, attacked on its one HTTP surface (control API, data API, open routes).

The routes, their authentication and their documented statuses come from
`vectorload_dev.openapi.ROUTES` (the route table the OpenAPI document is generated from); the
answers are judged by decoding them with the wire types (`vectorload.wire.querynode`). Example
bodies name the sample's collection, fields and segments so that mutations of them reach deep
into validation, filtering and search. Nothing the cases send changes what the node holds: the
load example asks for segments already loaded with the same fields (answered `loaded`), the
release example names a collection the node does not hold.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vectorload.wire import querynode as wire
from vectorload_dev import openapi
from vectorload_dev.checkout import repo_root
from vectorload_dev.testing.fuzz import filters, hostile, http
from vectorload_dev.testing.fuzz.model import Auth, Surface
from vectorload_dev.testing.fuzz.schema import schema_cases
from vectorload_dev.testing.fuzz.surface import CaseClass, HttpSurface, Operation
from vectorload_dev.testing.querynode_harness import QuerynodeProcess

COLLECTION = "book"
INTRO_DIM = 64
COVER_DIM = 16
SAMPLE_FIELDS: filters.Fields = {
    "int": ["book_id", "word_count"],
    "float": ["rating"],
    "bool": ["in_print"],
    "varchar": ["title"],
    "meta": ["genre", "year", "award"],
}
PARTITIONS = ["_default", "novel", "poetry"]
# the node runs with a smaller body limit than the default 64 MiB, so the suite's oversized bodies
# stay cheap to send (the limit's refusal is the same at any size)
MAX_REQUEST_BYTES = 4 * 2**20
SERVER_ARGS = ["--max-request-bytes", str(MAX_REQUEST_BYTES)]


def _examples(
    loaded_segment: tuple[str, str], rows: int
) -> dict[str, tuple[Mapping[str, Any] | None, str | None]]:
    partition, segment = loaded_segment
    vector = [round(0.01 * i, 2) for i in range(INTRO_DIM)]
    return {
        "/v1/catalog/{collection}": (None, f"/v1/catalog/{COLLECTION}"),
        "/v1/catalog/tokens": ({"collections": [COLLECTION, "not_in_storage"]}, None),
        "/v1/segments/load": (
            {"collection": COLLECTION, "partition": partition, "segments": [segment]},
            None,
        ),
        "/v1/segments/release": ({"collection": "not_held_here", "segments": None}, None),
        "/v1/search": (
            {
                "collection": COLLECTION,
                "vectors": [vector],
                "annsField": "book_intro",
                "topK": 5,
                "filter": "word_count > 100 and in_print",
                "outputFields": ["title", "$meta"],
                "ef": 32,
            },
            None,
        ),
        "/v1/query": (
            {
                "collection": COLLECTION,
                "filter": f"book_id < {rows // 10}",
                "outputFields": ["title", "genre"],
                "limit": 10,
                "partitions": ["novel", "poetry"],
            },
            None,
        ),
        "/v1/get": ({"collection": COLLECTION, "ids": [1, 2, 3], "outputFields": ["title", "rating"]}, None),
    }


FILTER_KEYS = {"/v1/search": "filter", "/v1/query": "filter"}


def operations(loaded_segment: tuple[str, str], rows: int) -> tuple[Operation, ...]:
    examples = _examples(loaded_segment, rows)
    out = []
    for route in openapi.ROUTES:
        example, path_example = examples.get(route.path, (None, None))
        out.append(
            Operation(
                method=route.method,
                path=route.path,
                auth=route.auth,
                statuses=frozenset({200, *route.errors, *((304,) if route.conditional else ())}),
                json_answer=route.answer is not None,
                example=example,
                path_example=path_example,
                filter_key=FILTER_KEYS.get(route.path),
            )
        )
    return tuple(out)


def vary(rows: int) -> Callable[[random.Random, Operation], Any]:
    """Valid requests with random contents (what a client sends, broadly)."""

    def make(rng: random.Random, op: Operation) -> Any:
        assert op.example is not None
        body = dict(op.example)
        if op.path == "/v1/search":
            nq = rng.choice([1, 1, 2, 8, 32])
            field, dim = rng.choice([("book_intro", INTRO_DIM), ("cover", COVER_DIM)])
            body["vectors"] = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(nq)]
            body["annsField"] = field
            body["topK"] = rng.choice([1, 10, 50, 200])
            body["ef"] = rng.choice([None, 16, 200])
            body["filter"] = rng.choice([None, filters.random_filter(rng, SAMPLE_FIELDS)[0]])
            body["outputFields"] = rng.choice([None, ["*"], ["title", "year"], ["$meta", "rating"]])
            body["partitions"] = rng.choice([None, rng.sample(PARTITIONS, rng.randint(1, 3))])
        elif op.path == "/v1/query":
            body["filter"] = filters.random_filter(rng, SAMPLE_FIELDS)[0]
            body["limit"] = rng.choice([1, 100, 2000])
            body["outputFields"] = rng.choice([None, ["*"], ["title", "award"]])
        elif op.path == "/v1/get":
            body["ids"] = [rng.randrange(-5, rows + 50) for _ in range(rng.randint(1, 60))]
        return body

    return make


_ANSWERS: dict[str, type[Any]] = {
    route.path: route.answer for route in openapi.ROUTES if route.answer is not None
}


def check_answer(op: Operation | None, status: int, body: bytes) -> str | None:
    """None when the JSON answer decodes as its wire type (the error body for any non-200)."""
    type_: type[Any] = wire.ErrorBody
    if status == 200:
        if op is None:
            return "200 from a route that is not documented"
        type_ = _ANSWERS[op.path]
    try:
        wire.decode(body, type_)
    except wire.WireError as exc:
        return f"the {status} answer is not a {type_.__name__}: {exc.message[:200]}"
    return None


class QuerynodeTarget:
    """A running `QuerynodeProcess` holding the sample's segments."""

    name = "querynode"

    def __init__(
        self,
        node: QuerynodeProcess,
        control_token: str,
        data_token: str | None,
        loaded_segment: tuple[str, str],
        rows: int,
        document: Path | None = None,
        open_data_api: bool = False,
    ) -> None:
        self.node = node
        self.control_token = control_token
        self.data_token = data_token
        self.loaded_segment = loaded_segment
        self.rows = rows
        self.document = document or repo_root() / openapi.DOCUMENT
        self.open_data_api = open_data_api

    @property
    def pid(self) -> int:
        return self.node.pid

    def surfaces(self) -> list[Surface]:
        tokens: dict[Auth, tuple[str, ...] | None] = {
            "none": (),
            "control": (self.control_token,),
            "data": None
            if self.open_data_api
            else tuple(t for t in (self.data_token, self.control_token) if t is not None),
        }
        classes = (*hostile.CLASSES, CaseClass("schema", 25, schema_cases(self.document)))
        surface = HttpSurface(
            name="querynode http",
            host=self.node.host,
            port=self.node.port or 0,
            operations=operations(self.loaded_segment, self.rows),
            tokens=tokens,
            classes=classes,
            check_answer=check_answer,
            secrets=tuple(t for t in (self.control_token, self.data_token) if t is not None),
            extra={"vary": vary(self.rows), "filter_fields": SAMPLE_FIELDS, "max_body": MAX_REQUEST_BYTES},
        )
        return [surface]

    def health_endpoint(self) -> tuple[str, int, str]:
        return self.node.host, self.node.port or 0, "/healthz"

    def server_errors(self) -> int | None:
        status, body, _ = http.get(self.node.host, self.node.port or 0, "/metrics", 10.0)
        if status != 200:
            return None
        text = body.decode()
        return sum(
            int(float(n))
            for n in re.findall(
                r'^vectorload_querynode_requests_total\{[^}]*code="5\d\d"[^}]*\} (\S+)$', text, re.M
            )
        )

    def alive(self) -> bool:
        return self.node.proc is not None and self.node.proc.poll() is None
