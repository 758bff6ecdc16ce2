"""The Milvus front door (`vectorload proxy`) as a fuzz target: one real proxy process in front of
a control plane, the operator and a querynode serving the `book` sample, attacked on its three
surfaces:

- **REST v2** on the main port (every `/v2/vectordb/...` route the proxy serves, from
  `vectorload_proxy.rest.V2_ROUTES`), plus raw bytes on that port, which it shares with gRPC
  (garbage, truncated and slowloris HTTP/2 prefaces);
- **REST v1** on the second port (`/api/v1/collection/load`, `/api/v1/partitions/load`, POST and
  DELETE) with `/healthz`, `/readyz`, `/api/v1/health` and `/metrics`;
- **gRPC**: every method of `milvus.proto.milvus.MilvusService` from its descriptor (implemented
  or not), plus hostile searches and queries (`grpc_search`).

The judge: no 5xx, no gRPC INTERNAL/UNKNOWN, no Milvus "unexpected error" (65535); every REST v2
answer is HTTP 200 with a documented Milvus code (or 401/404/405/413 with one) and a message of at
most `MAX_MESSAGE` characters; no token accepted that is not configured — the credentials are
`root:Milvus`, an API key and a second user, so another user's password is tried too; REST takes
`Bearer <token>` (scheme in any case) and `Basic <canonical base64 of user:password>`, gRPC the
canonical base64 of the token. Example requests name the sample's collection, fields and
partitions so that mutations reach deep; nothing they send changes what is loaded (the load
examples ask for what is loaded already, the release examples name a collection that storage
does not hold).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import random
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from google.protobuf import message as gm
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vectorload_dev.testing.fuzz import filters, grpc_surface, hostile, http, protowire
from vectorload_dev.testing.fuzz.grpc_surface import GrpcClass, GrpcSurface
from vectorload_dev.testing.fuzz.model import Auth, Case, Surface
from vectorload_dev.testing.fuzz.schema import schema_cases
from vectorload_dev.testing.fuzz.surface import CaseClass, HttpSurface, Operation, carried_token
from vectorload_dev.testing.fuzz.targets.querynode import COVER_DIM, INTRO_DIM, PARTITIONS, SAMPLE_FIELDS
from vectorload_dev.testing.proxy_harness import API_KEY, ROOT_TOKEN, ProxyProcess, start_plane
from vectorload_proxy import errors, rest_types
from vectorload_proxy.grpc_service import IMPLEMENTED, SERVICE
from vectorload_proxy.rest import V2_ROUTES

COLLECTION = "book"
ABSENT = "not_in_storage"  # what the release examples name: never a loaded collection
SECOND_USER = "alice:Wonderland-7"
CREDENTIALS = (ROOT_TOKEN, API_KEY, SECOND_USER)
MAX_MESSAGE = 1000  # characters of an error message (each echo of input is cut to 200)
# the proxy runs with a smaller body/message limit than the default 64 MiB, so oversized bodies
# stay cheap to send (the refusal is the same at any size)
MAX_REQUEST_BYTES = 4 * 2**20
PROXY_ARGS = ["--max-request-bytes", str(MAX_REQUEST_BYTES), "--rest-load-wait", "5"]
# every merr code the proxy documents (docs/proxy.md "Errors"), and REST's own
CODES = frozenset(
    v
    for k, v in vars(errors).items()
    if k.isupper() and isinstance(v, int) and not k.startswith(("OLD_", "ECHO"))
) - {errors.UNEXPECTED}


def carried_rest_token(header: bytes | None) -> str | None:
    """A REST Authorization header's credential: `Bearer <token>` (the fuzz suite's rule, see
    `surface.carried_token`) or `Basic <b64>` whose value is the canonical standard base64 of the
    UTF-8 token."""
    bearer = carried_token(header)
    if bearer is not None or header is None:
        return bearer
    try:
        text = header.decode("utf-8").strip(" \t")
    except UnicodeDecodeError:
        return None
    scheme, sep, value = text.partition(" ")
    value = value.strip(" \t")
    if not sep or scheme.lower() != "basic" or not value:
        return None
    try:
        token = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        return None
    if base64.b64encode(token.encode()).decode() != value:
        return None
    return token  # `user:password`, or an API key (the proxy takes both, as with Bearer)


# ------------------------------------------------------------------------------------ REST v2

VECTOR = [round(0.01 * i, 2) for i in range(INTRO_DIM)]

V2_EXAMPLES: dict[str, dict[str, Any]] = {
    "collections/list": {"dbName": "default"},
    "collections/has": {"collectionName": COLLECTION},
    "collections/describe": {"collectionName": COLLECTION},
    "collections/get_stats": {"collectionName": COLLECTION},
    "collections/load": {"collectionName": COLLECTION},
    "collections/refresh_load": {"collectionName": COLLECTION},
    "collections/release": {"collectionName": ABSENT},
    "collections/get_load_state": {"collectionName": COLLECTION, "partitionNames": ["novel"]},
    "partitions/list": {"collectionName": COLLECTION},
    "partitions/has": {"collectionName": COLLECTION, "partitionName": "novel"},
    "partitions/get_stats": {"collectionName": COLLECTION, "partitionName": "poetry"},
    "partitions/load": {"collectionName": COLLECTION, "partitionNames": ["novel"]},
    "partitions/release": {"collectionName": ABSENT, "partitionNames": ["novel"]},
    "databases/list": {"dbName": "default"},
    "databases/describe": {"dbName": "default"},
    "entities/search": {
        "collectionName": COLLECTION,
        "data": [VECTOR],
        "annsField": "book_intro",
        "limit": 5,
        "filter": "word_count > 100 and in_print",
        "outputFields": ["title", "genre"],
        "searchParams": {"metricType": "L2", "params": {"ef": 32}},
    },
    "entities/query": {
        "collectionName": COLLECTION,
        "filter": "book_id < 50",
        "outputFields": ["title", "rating"],
        "limit": 10,
        "partitionNames": ["novel", "poetry"],
    },
    "entities/get": {"collectionName": COLLECTION, "id": [1, 2, 3], "outputFields": ["title"]},
}
FILTER_KEYS = {"entities/search": "filter", "entities/query": "filter"}


# the msgspec type each REST v2 route decodes its body into (the proxy's own, rest_types.py)
V2_BODIES: dict[str, type[Any]] = {
    "collections/list": rest_types.V2List,
    "collections/has": rest_types.V2Collection,
    "collections/describe": rest_types.V2Collection,
    "collections/get_stats": rest_types.V2Collection,
    "collections/load": rest_types.V2Collection,
    "collections/refresh_load": rest_types.V2Collection,
    "collections/release": rest_types.V2Collection,
    "collections/get_load_state": rest_types.V2Collection,
    "partitions/list": rest_types.V2Collection,
    "partitions/has": rest_types.V2Partition,
    "partitions/get_stats": rest_types.V2Partition,
    "partitions/load": rest_types.V2Partitions,
    "partitions/release": rest_types.V2Partitions,
    "databases/list": rest_types.V2List,
    "databases/describe": rest_types.V2Database,
    "entities/search": rest_types.V2Search,
    "entities/query": rest_types.V2Query,
    "entities/get": rest_types.V2Get,
}
V1_BODIES: dict[tuple[str, str], type[Any]] = {
    ("post", "/api/v1/collection/load"): rest_types.V1Collection,
    ("delete", "/api/v1/collection/load"): rest_types.V1Collection,
    ("post", "/api/v1/partitions/load"): rest_types.V1Partitions,
    ("delete", "/api/v1/partitions/load"): rest_types.V1Partitions,
}
REF = "#/components/schemas/{name}"


def rest_openapi(v1: bool = False) -> dict[str, Any]:
    """An OpenAPI 3.1 description of the proxy's REST v2 (or v1) requests, as plain values: the
    routes and the JSON Schemas of the msgspec body types the proxy decodes (`rest_types`), so
    schemathesis draws bodies of exactly those types, and bodies that break them."""
    routes: dict[tuple[str, str], type[Any]] = (
        V1_BODIES if v1 else {("post", f"/v2/vectordb/{name}"): type_ for name, type_ in V2_BODIES.items()}
    )
    _, schemas = msgspec.json.schema_components(
        sorted(set(routes.values()), key=lambda t: t.__name__), ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), type_ in routes.items():
        ref = {"$ref": REF.format(name=type_.__name__)}
        paths.setdefault(path, {})[method] = {
            "operationId": f"{method}_{path.strip('/').replace('/', '_')}",
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
            "responses": {"200": {"description": "OK, or a Milvus error with its code"}},
            "security": [{"token": []}],
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"vectorload proxy REST {'v1' if v1 else 'v2'}", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
    }


def v2_operations() -> tuple[Operation, ...]:
    missing = set(V2_ROUTES) - (set(V2_EXAMPLES) & set(V2_BODIES))
    if missing:  # a route added to the proxy needs an example and its body type here
        raise ValueError(f"REST v2 routes without a fuzz example or body type: {sorted(missing)}")
    return tuple(
        Operation(
            "post",
            f"/v2/vectordb/{name}",
            "data",
            frozenset({200, 401, 413}),
            example=V2_EXAMPLES[name],
            filter_key=FILTER_KEYS.get(name),
        )
        for name in V2_ROUTES
    )


def _message_problem(body: Any, code_key: str, message_key: str) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get(code_key), int):
        return f"no integer {code_key!r}"
    code = body[code_key]
    if code == errors.UNEXPECTED:
        return f"an unexpected error ({code}): {str(body.get(message_key))[:300]}"
    if code != 0 and code not in CODES:
        return f"code {code} is not a documented Milvus code"
    message = body.get(message_key, "")
    if code != 0 and not isinstance(message, str):
        return f"no string {message_key!r}"
    if isinstance(message, str) and len(message) > MAX_MESSAGE:
        return f"a message of {len(message)} characters (more than {MAX_MESSAGE}: input echoed uncut?)"
    return None


def check_v2(op: Operation | None, status: int, raw: bytes) -> str | None:
    """REST v2: `{"code": 0, "data": ...}` or `{"code": N, "message": "..."}` with N a documented
    Milvus code; HTTP 200 for every Milvus error (401, 404, 405, 413 carry a code too)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return "not JSON"
    problem = _message_problem(body, "code", "message")
    if problem is not None:
        return problem
    if status == 200 and body["code"] == 0 and "data" not in body:
        return "a success without data"
    return None


# ------------------------------------------------------------------------------------ REST v1

V1_LOAD = {"collection_name": COLLECTION}
V1_RELEASE = {"collection_name": ABSENT}
V1_PARTITIONS_LOAD = {"collection_name": COLLECTION, "partition_names": ["novel"], "replica_number": 1}
V1_PARTITIONS_RELEASE = {"collection_name": ABSENT, "partition_names": ["novel"], "replica_number": 1}


def v1_operations() -> tuple[Operation, ...]:
    statuses = frozenset({200, 400, 401, 413})
    return (
        Operation("post", "/api/v1/collection/load", "data", statuses, example=V1_LOAD),
        Operation("delete", "/api/v1/collection/load", "data", statuses, example=V1_RELEASE),
        Operation("post", "/api/v1/partitions/load", "data", statuses, example=V1_PARTITIONS_LOAD),
        Operation("delete", "/api/v1/partitions/load", "data", statuses, example=V1_PARTITIONS_RELEASE),
        Operation("get", "/healthz", "none", frozenset({200})),
        Operation("get", "/readyz", "none", frozenset({200})),
        Operation("get", "/api/v1/health", "none", frozenset({200})),
        Operation("get", "/metrics", "none", frozenset({200}), json_answer=False),
    )


def check_v1(op: Operation | None, status: int, raw: bytes) -> str | None:
    """REST v1: `{}` or `{"error_code": E, "reason": "...", "code": N}` (HTTP 200 for a Milvus
    error, 400 for a body that cannot be read); 401 `{"code": 1800, ...}`; JSON 404/405 with a
    code; `/healthz` and `/readyz` a status object."""
    try:
        body = json.loads(raw)
    except ValueError:
        return "not JSON"
    if not isinstance(body, dict):
        return "not a JSON object"
    if op is not None and op.auth == "none":
        return None if status != 200 or "status" in body else "no status"
    if body == {} and status == 200:
        return None
    if "error_code" in body:
        if not isinstance(body["error_code"], int):
            return "error_code is not an integer"
        if "code" in body:
            return _message_problem(body, "code", "reason")
        reason = body.get("reason")
        if not isinstance(reason, str) or len(reason) > MAX_MESSAGE:
            return "a reason that is not a capped string"
        return None
    return _message_problem(body, "code", "message")


# ------------------------------------------------------------------------------------ gRPC


def placeholder(vectors: list[list[float]] | np.ndarray, kind: int = 101, tag: str = "$0") -> bytes:
    array = np.asarray(vectors, dtype="<f4")
    group = common_pb2.PlaceholderGroup(
        placeholders=[common_pb2.PlaceholderValue(tag=tag, type=kind, values=[v.tobytes() for v in array])]
    )
    return bytes(group.SerializeToString())


def _kv(pairs: Mapping[str, str]) -> list[common_pb2.KeyValuePair]:
    return [common_pb2.KeyValuePair(key=k, value=v) for k, v in pairs.items()]


SEARCH_PARAMS = {
    "anns_field": "book_intro",
    "topk": "5",
    "metric_type": "L2",
    "params": json.dumps({"ef": 32}),
    "round_decimal": "-1",
    "offset": "0",
}


def search_request(**overrides: Any) -> milvus_pb2.SearchRequest:
    """A search as pymilvus' `Prepare.search_requests_with_expr` sends it (overrides by field)."""
    fields: dict[str, Any] = {
        "collection_name": COLLECTION,
        "partition_names": [],
        "dsl": "word_count > 100",
        "dsl_type": 1,  # BoolExprV1
        "placeholder_group": placeholder([VECTOR]),
        "output_fields": ["title", "genre"],
        "search_params": _kv(SEARCH_PARAMS),
        "nq": 1,
        "consistency_level": 2,
        "use_default_consistency": True,
    }
    fields.update(overrides)
    return milvus_pb2.SearchRequest(**fields)


def query_request(**overrides: Any) -> milvus_pb2.QueryRequest:
    fields: dict[str, Any] = {
        "collection_name": COLLECTION,
        "expr": "book_id in [1, 2, 3]",
        "output_fields": ["title", "rating"],
        "partition_names": [],
        "query_params": _kv({"limit": "10"}),
        "consistency_level": 2,
        "use_default_consistency": True,
    }
    fields.update(overrides)
    return milvus_pb2.QueryRequest(**fields)


def grpc_examples() -> dict[str, list[gm.Message]]:
    """Valid requests of the implemented methods (pymilvus' shapes); others get none."""
    m = milvus_pb2
    c = COLLECTION
    return {
        "Connect": [
            m.ConnectRequest(client_info=common_pb2.ClientInfo(sdk_type="Python", sdk_version="2.6"))
        ],
        "GetVersion": [m.GetVersionRequest()],
        "CheckHealth": [m.CheckHealthRequest()],
        "GetComponentStates": [m.GetComponentStatesRequest()],
        "ListDatabases": [m.ListDatabasesRequest()],
        "DescribeDatabase": [m.DescribeDatabaseRequest(db_name="default")],
        "ShowCollections": [
            m.ShowCollectionsRequest(),
            m.ShowCollectionsRequest(type=1, collection_names=[c]),
        ],
        "DescribeCollection": [m.DescribeCollectionRequest(collection_name=c)],
        "HasCollection": [m.HasCollectionRequest(collection_name=c)],
        "ShowPartitions": [m.ShowPartitionsRequest(collection_name=c, partition_names=["novel"])],
        "HasPartition": [m.HasPartitionRequest(collection_name=c, partition_name="poetry")],
        "GetCollectionStatistics": [m.GetCollectionStatisticsRequest(collection_name=c)],
        "GetPartitionStatistics": [
            m.GetPartitionStatisticsRequest(collection_name=c, partition_name="novel")
        ],
        "DescribeIndex": [m.DescribeIndexRequest(collection_name=c, field_name="book_intro")],
        "GetIndexState": [m.GetIndexStateRequest(collection_name=c, field_name="cover")],
        "GetIndexBuildProgress": [m.GetIndexBuildProgressRequest(collection_name=c, field_name="book_intro")],
        "ListAliases": [m.ListAliasesRequest(collection_name=c)],
        "LoadCollection": [m.LoadCollectionRequest(collection_name=c)],
        "LoadPartitions": [m.LoadPartitionsRequest(collection_name=c, partition_names=["novel"])],
        "ReleaseCollection": [m.ReleaseCollectionRequest(collection_name=ABSENT)],
        "ReleasePartitions": [m.ReleasePartitionsRequest(collection_name=ABSENT, partition_names=["novel"])],
        "GetLoadState": [m.GetLoadStateRequest(collection_name=c, partition_names=["poetry"])],
        "GetLoadingProgress": [m.GetLoadingProgressRequest(collection_name=c)],
        "GetReplicas": [m.GetReplicasRequest(collection_name=c)],
        "Search": [
            search_request(),
            search_request(
                placeholder_group=placeholder([[0.1] * COVER_DIM] * 3),
                nq=3,
                search_params=_kv({**SEARCH_PARAMS, "anns_field": "cover", "metric_type": "COSINE"}),
                output_fields=["*"],
                partition_names=["poetry"],
            ),
        ],
        "Query": [query_request(), query_request(expr="", query_params=_kv({"limit": "5", "offset": "2"}))],
    }


def _search_param_cases(rng: random.Random) -> tuple[str, dict[str, str]]:
    key = rng.choice(
        ["topk", "offset", "round_decimal", "metric_type", "anns_field", "params", "group_by_field"]
    )
    values: dict[str, list[str]] = {
        "topk": ["0", "-1", "16384", "16385", "abc", "1e3", " 5", "99999999999999999999", "٥", "", "5.0"],
        "offset": ["-1", "16380", "abc", "1" + "0" * 30],
        "round_decimal": ["7", "-2", "x", "6"],
        "metric_type": ["IP", "COSINE", "l2", "", "HAMMING", "\u0130P", "x" * 1000],
        "anns_field": ["", "cover", "title", "book_id", "$meta", "nope", "x" * 10_000],
        "params": [
            "{",
            "[]",
            "null",
            '"x"',
            '{"ef": NaN}',
            '{"ef": 1e400}',
            '{"ef": "abc"}',
            '{"ef": 1.5}',
            '{"ef": true}',
            '{"ef": -1}',
            '{"ef": 99999999999999999999999}',
            '{"ef": 1' + "0" * 5000 + "}",
            '{"radius": 1}',
            '{"topk": "3"}',
            "[" * 100_000 + "]" * 100_000,
            '{"a":' * 10_000 + "1" + "}" * 10_000,
            json.dumps({f"k{i}": i for i in range(20_000)}),
        ],
        "group_by_field": ["title", "", "0"],
    }
    value = rng.choice(values[key])
    return f"{key} = {value[:30]!r}", {**SEARCH_PARAMS, key: value}


def _vector_cases(rng: random.Random) -> tuple[str, dict[str, Any]]:
    how = rng.randrange(11)
    dim = INTRO_DIM
    if how == 0:
        width = rng.choice([0, 1, 3, 4 * dim - 1, 4 * dim + 1, 4 * dim + 4, 4 * COVER_DIM, 40_000])
        group = common_pb2.PlaceholderGroup(
            placeholders=[common_pb2.PlaceholderValue(tag="$0", type=101, values=[b"\x00" * width])]
        )
        return f"a vector of {width} bytes", {"placeholder_group": group.SerializeToString()}
    if how == 1:
        bad = rng.choice([float("nan"), float("inf"), float("-inf")])
        vector = list(VECTOR)
        vector[rng.randrange(dim)] = bad
        return f"a vector holding {bad}", {"placeholder_group": placeholder([vector])}
    if how == 2:
        nq = rng.choice([0, 2, 16385, -1])
        return f"nq {nq} for one vector", {"nq": nq}
    if how == 3:
        nq = rng.choice([16384, 16385])
        return f"{nq} vectors", {"placeholder_group": placeholder(np.zeros((nq, dim))), "nq": nq}
    if how == 4:
        kind = rng.choice([0, 100, 102, 103, 104, 21, 999, -1])
        return f"placeholder type {kind}", {"placeholder_group": placeholder([VECTOR], kind=kind)}
    if how == 5:
        group = common_pb2.PlaceholderGroup(
            placeholders=[
                common_pb2.PlaceholderValue(tag=f"${i}", type=101, values=[np.zeros(dim, "<f4").tobytes()])
                for i in range(rng.choice([0, 2, 1000]))
            ]
        )
        return f"{len(group.placeholders)} placeholders", {"placeholder_group": group.SerializeToString()}
    if how == 6:
        blob = bytes(rng.randrange(256) for _ in range(rng.choice([1, 10, 1000])))
        return "a placeholder group of random bytes", {"placeholder_group": blob}
    if how == 7:
        inner = placeholder([VECTOR])
        for _ in range(rng.choice([10, 100])):  # a group whose value is a group whose value is ...
            inner = common_pb2.PlaceholderGroup(
                placeholders=[common_pb2.PlaceholderValue(tag="$0", type=101, values=[inner])]
            ).SerializeToString()
        return "placeholder groups nested in placeholder values", {"placeholder_group": inner}
    if how == 8:
        tag = rng.choice(["", "$1", "x" * 100_000, "\u0000"])
        return f"tag {tag[:10]!r}", {"placeholder_group": placeholder([VECTOR], tag=tag)}
    if how == 9:
        huge = struct.pack("<f", 3.4e38)
        return "float32 maxima (distances overflow)", {
            "placeholder_group": common_pb2.PlaceholderGroup(
                placeholders=[common_pb2.PlaceholderValue(tag="$0", type=101, values=[huge * dim])]
            ).SerializeToString()
        }
    vectors = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(rng.choice([1, 16, 256]))]
    return f"{len(vectors)} random vectors", {"placeholder_group": placeholder(vectors), "nq": len(vectors)}


def _with_filter(method: str, text: str) -> bytes:
    """A valid search or query with filter `text`, which may hold lone surrogates: the string is
    written on the wire as it encodes with surrogatepass (not UTF-8: the server must refuse it)."""
    request: gm.Message = search_request(dsl="") if method == "Search" else query_request(expr="")
    number = request.DESCRIPTOR.fields_by_name["dsl" if method == "Search" else "expr"].number
    return bytes(request.SerializeToString()) + protowire.length_delimited(
        number, text.encode("utf-8", "surrogatepass")
    )


def grpc_search(rng: random.Random, s: GrpcSurface) -> Iterator[Case]:
    """Hostile searches and queries on the sample: vectors (wrong byte lengths, NaN, nq
    mismatches, 16,385 vectors, wrong placeholder types, nested and random groups), knobs
    (`topk`, `offset`, `params` nested 100,000 deep, ...), hostile filters, output fields and
    partition names."""
    fields = SAMPLE_FIELDS
    for text, label in filters.fixed_hostile(fields):
        method = rng.choice(["Search", "Query"])
        yield s.case("grpc_search", f"grpc_search: {method} {label}", method, _with_filter(method, text))
    while True:
        how = rng.randrange(7)
        if how == 0:
            label, params = _search_param_cases(rng)
            request: gm.Message = search_request(search_params=_kv(params))
            method = "Search"
        elif how in (1, 2):
            label, overrides = _vector_cases(rng)
            request, method = search_request(**overrides), "Search"
        elif how == 3:
            text, label = filters.random_filter(rng, fields)
            method = rng.choice(["Search", "Query"])
            yield s.case("grpc_search", f"grpc_search: {method} {label}", method, _with_filter(method, text))
            continue
        elif how == 4:
            names = rng.choice(
                [
                    ["x"] * 300,
                    ["count(*)"],
                    [""],
                    ["*", "*"],
                    ["$meta", "award", "nope"],
                    [f"f{i}" for i in range(5000)],
                    ["book_intro"],
                    ["é" * 300],
                ]
            )
            method = rng.choice(["Search", "Query"])
            label = f"{len(names)} output fields like {names[0][:20]!r}"
            request = (
                search_request(output_fields=names)
                if method == "Search"
                else query_request(output_fields=names)
            )
        elif how == 5:
            names = rng.choice(
                [
                    [f"p{i}" for i in range(5000)],
                    ["novel"] * 3,
                    [""],
                    ["_default", "nope"],
                    ["x" * 300],
                    PARTITIONS,
                ]
            )
            method = rng.choice(["Search", "Query"])
            label = f"{len(names)} partition names like {names[0][:20]!r}"
            request = (
                search_request(partition_names=names)
                if method == "Search"
                else query_request(partition_names=names)
            )
        else:
            params = rng.choice(
                [
                    {"limit": "abc"},
                    {"limit": "0"},
                    {"limit": "16385"},
                    {"limit": "1" + "0" * 40},
                    {"offset": "-1", "limit": "5"},
                    {"limit": "5", "offset": "16380"},
                    {"iterator": "True", "limit": "5"},
                    {},
                ]
            )
            label, method = f"query params {params}", "Query"
            request = query_request(expr=rng.choice(["", "book_id > 0"]), query_params=_kv(params))
        yield s.case("grpc_search", f"grpc_search: {method} {label}", method, request.SerializeToString())


# ------------------------------------------------------------------------------------ tokens


def _basic(token: str) -> bytes:
    return b"Basic " + base64.b64encode(token.encode())


def rest_tokens(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    """What `hostile.tokens` does not try: another user's password, `Basic` (right, wrong and
    non-canonical base64), the API key as a user name."""
    protected = [op for op in s.operations if op.auth != "none"]
    values: list[tuple[str, bytes]] = [
        ("another user's password", b"Bearer root:Wonderland-7"),
        ("the other user with root's password", b"Bearer alice:Milvus"),
        ("the API key as a user", f"Bearer {API_KEY}:Milvus".encode()),
        ("Basic, right", _basic(ROOT_TOKEN)),
        ("basic, right, lower-case scheme", _basic(ROOT_TOKEN).lower()[:6] + _basic(ROOT_TOKEN)[6:]),
        ("Basic, another user's password", _basic("root:Wonderland-7")),
        ("Basic, no padding", _basic(ROOT_TOKEN).rstrip(b"=")),
        ("Basic, stray bits before the padding", _basic(ROOT_TOKEN)[:-2] + b"N="),
        ("Basic, URL-safe", b"Basic " + base64.urlsafe_b64encode(b"root:Milvus\xfb\xff")),
        ("Basic, the token not encoded", b"Basic root:Milvus"),
        ("Basic of the API key", _basic(API_KEY)),
        ("Basic, NUL after the token", b"Basic " + base64.b64encode(b"root:Milvus\x00")),
        ("Basic, a newline after the token", b"Basic " + base64.b64encode(b"root:Milvus\n")),
        ("Basic, NBSP after the value", _basic(ROOT_TOKEN) + "\u00a0".encode()),
        ("Bearer, base64 of the token", b"Bearer " + base64.b64encode(ROOT_TOKEN.encode())),
    ]
    cases = [
        s.case("tokens", f"tokens: {label} on {op.path}", s.request(op, token=value))
        for op in protected
        for label, value in values
    ]
    rng.shuffle(cases)
    yield from cases


# ------------------------------------------------------------------------------------ target


@dataclass
class ProxyTarget:
    """A running `ProxyProcess` whose namespace has `book` Loaded."""

    proxy: ProxyProcess
    name: str = "proxy"

    @property
    def pid(self) -> int:
        return self.proxy.pid

    def _tokens(self) -> dict[Auth, tuple[str, ...] | None]:
        return {"none": (), "data": CREDENTIALS}

    def surfaces(self) -> list[Surface]:
        p = self.proxy
        extra = {"filter_fields": SAMPLE_FIELDS, "max_body": MAX_REQUEST_BYTES}
        classes = (*hostile.CLASSES, CaseClass("tokens", 2, rest_tokens))
        v2 = HttpSurface(
            name="proxy REST v2",
            host=p.host,
            port=p.port,
            operations=v2_operations(),
            tokens=self._tokens(),
            classes=(
                *classes,
                CaseClass("schema", 12, schema_cases(rest_openapi())),
                CaseClass("raw_bytes", 1.5, hostile.raw_bytes),
            ),
            check_answer=check_v2,
            secrets=CREDENTIALS,
            carried=carried_rest_token,
            extra=dict(extra),
        )
        v1 = HttpSurface(
            name="proxy REST v1",
            host=p.host,
            port=p.http_port,
            operations=v1_operations(),
            tokens=self._tokens(),
            classes=(*classes, CaseClass("schema", 8, schema_cases(rest_openapi(v1=True)))),
            check_answer=check_v1,
            secrets=CREDENTIALS,
            carried=carried_rest_token,
            extra=dict(extra),
        )
        grpc = GrpcSurface(
            name="proxy gRPC",
            host=p.host,
            port=p.port,
            service=SERVICE,
            examples=grpc_examples(),
            implemented=frozenset(IMPLEMENTED),
            credentials=CREDENTIALS,
            codes=CODES,
            classes=grpc_surface.with_classes([GrpcClass("grpc_search", 14, grpc_search)]),
            unexpected_code=errors.UNEXPECTED,
            max_reason=MAX_MESSAGE,
        )
        return [v2, v1, grpc]

    def health_endpoint(self) -> tuple[str, int, str]:
        return self.proxy.host, self.proxy.http_port, "/healthz"

    def server_errors(self) -> int | None:
        status, body, _ = http.get(self.proxy.host, self.proxy.http_port, "/metrics", 10.0)
        if status != 200:
            return None
        pattern = r'^vectorload_proxy_requests_total\{[^}]*code="(?:5\d\d|65535)"[^}]*\} (\S+)$'
        return sum(int(float(n)) for n in re.findall(pattern, body.decode(), re.M))

    def alive(self) -> bool:
        return self.proxy.running


# ------------------------------------------------------------------------------------ stack


@contextlib.contextmanager
def proxy_stack(workdir: Path | None = None, extra_args: list[str] | None = None) -> Iterator[ProxyProcess]:
    """A control plane of its own, the operator, one querynode and a proxy (credentials
    `CREDENTIALS`, `PROXY_ARGS`), the `book` sample Loaded through the proxy: what the proxy
    fuzz run attacks. Everything is stopped on exit."""
    from pymilvus import MilvusClient

    from vectorload.storage.sample import write_sample
    from vectorload_dev.testing.operator_harness import TEST_TOKEN, OperatorProcess, QuerynodePool

    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="vectorload-fuzz-proxy-")) if workdir is None else workdir
    namespace = "fuzz"
    stops: list[Callable[[], object]] = []
    try:
        plane = start_plane(work / "control-plane", namespace)
        stops.append(lambda: plane.stop())
        root = work / "storage"
        write_sample(root, size="tiny", seed=0, segment_rows=200)
        operator = OperatorProcess(
            plane, work, extra_args=["--dist-pull-interval", "0.25", "--status-interval", "0.3"]
        ).start()
        stops.append(operator.stop)
        pool = QuerynodePool(plane, namespace, root, work)
        stops.append(pool.stop_all)
        pool.add_node("qn-0", memory_limit="512Mi")
        proxy = ProxyProcess(
            plane, work, namespace, root, data_token=TEST_TOKEN, credentials=CREDENTIALS,
            extra_args=[*PROXY_ARGS, *(extra_args or [])],
        ).start()  # fmt: skip
        stops.append(proxy.stop)
        client = MilvusClient(uri=proxy.uri, token=ROOT_TOKEN)
        try:
            client.load_collection(COLLECTION)
        finally:
            client.close()
        yield proxy
    finally:
        for stop in reversed(stops):
            with contextlib.suppress(Exception):
                stop()
        if own:
            shutil.rmtree(work, ignore_errors=True)


def valid_search(proxy: ProxyProcess) -> list[int]:
    """A search through pymilvus after the run: the ids of the 5 nearest books."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=proxy.uri, token=ROOT_TOKEN)
    try:
        hits = client.search(COLLECTION, [VECTOR], anns_field="book_intro", limit=5, output_fields=["title"])
    finally:
        client.close()
    return [int(h["book_id"]) for h in hits[0]]
