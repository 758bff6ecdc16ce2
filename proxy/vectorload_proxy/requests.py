"""Search and query requests, typed and bounded, from what Milvus clients send (pure functions).

A Milvus search carries its vectors as a serialized `PlaceholderGroup` (float32 little-endian
bytes per vector) and its knobs as string key/value pairs (`topk`, `anns_field`, `metric_type`,
`round_decimal`, `offset`, and `params`, a JSON object holding `ef` — pymilvus 2.6 also copies
every knob into it). Everything is checked here before any querynode is asked, against the
collection's schema and the proxy's limits, and every refusal is a 1100 naming the problem (and
the limit with its value): vectors of the wrong dimension, non-finite numbers, a `topk` or an
`nq × topk` beyond the limits, a metric that is not the field's, knobs whose meaning vectorload
does not implement (grouping, range search, iterators, expression templates, hybrid search,
search by primary key) — never silently ignored, since the answer would be wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError
from pymilvus.grpc_gen import common_pb2

from vectorload.storage.api import DYNAMIC_FIELD, CollectionSchema, FieldSchema

from .errors import MilvusError, echo, parameter_invalid
from .names import check_partition_name

FLOAT_VECTOR_PLACEHOLDER = 101  # common.PlaceholderType.FloatVector
MAX_TOP_K = 16384  # Milvus' own bound of topk and of offset + limit


@dataclass(frozen=True)
class Limits:
    """Bounds of one request; each refusal names the flag and its value."""

    max_nq: int = 16384  # --max-nq
    max_top_k: int = MAX_TOP_K  # --max-top-k
    max_search_results: int = 262144  # --max-search-results: nq × topk
    max_query_limit: int = 16384  # --max-query-limit: rows of a query without a limit
    max_output_fields: int = 256  # --max-output-fields
    max_partitions: int = 4096  # --max-partitions: names per request
    max_filter_chars: int = 65536  # --max-filter-chars
    max_request_bytes: int = 64 << 20  # --max-request-bytes (gRPC message, REST body)
    max_json_depth: int = 32  # --max-json-depth (REST bodies)


def limit_exceeded(what: str, flag: str, value: int) -> MilvusError:
    return parameter_invalid(f"{what} exceeds the limit {flag} {value}")


@dataclass(frozen=True)
class SearchArgs:
    collection: str
    vectors: npt.NDArray[np.float32]  # (nq, dim)
    anns_field: str
    metric: str | None
    top_k: int
    offset: int
    filter: str | None
    output_fields: tuple[str, ...]
    partitions: tuple[str, ...]
    ef: int | None
    round_decimal: int

    @property
    def nq(self) -> int:
        return int(self.vectors.shape[0])


@dataclass(frozen=True)
class QueryArgs:
    collection: str
    filter: str
    output_fields: tuple[str, ...]
    partitions: tuple[str, ...]
    limit: int | None
    offset: int


# knobs a client may send that do not change the answer here
IGNORED_SEARCH_KEYS = frozenset(
    {"ignore_growing", "hints", "analyzer_name", "timezone", "collection_id", "time_fields", "params"}
)
UNSUPPORTED_SEARCH_KEYS = {
    "group_by_field": "grouping search (group_by_field)",
    "group_size": "grouping search (group_size)",
    "strict_group_size": "grouping search (strict_group_size)",
    "order_by_fields": "ordered search (order_by_fields)",
    "iterator": "search iterators",
    "search_iter_v2": "search iterators",
    "search_iter_batch_size": "search iterators",
    "search_iter_last_bound": "search iterators",
    "search_iter_id": "search iterators",
    "json_path": "JSON path indexes",
    "json_cast_type": "JSON path indexes",
}
# values of UNSUPPORTED_SEARCH_KEYS that mean "not asked for"
UNSET_VALUES = frozenset({"", "0", "false"})
UNSUPPORTED_PARAMS = {"radius": "range search (radius)", "range_filter": "range search (range_filter)"}


def unsupported(what: str) -> MilvusError:
    return parameter_invalid(f"{what} is not supported by vectorload")


def key_values(pairs: Iterable[common_pb2.KeyValuePair]) -> dict[str, str]:
    return {p.key: p.value for p in pairs}


def _int(value: str, name: str) -> int:
    text = value.strip()
    if not text.lstrip("-").isdecimal() or len(text) > 19:
        raise parameter_invalid(f"{name} must be an integer, got {echo(value)}")
    return int(text)


def _params(raw: str | None) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
        raise parameter_invalid(f"search params must be a JSON object, got {echo(raw)}") from None
    if not isinstance(value, dict):
        raise parameter_invalid(f"search params must be a JSON object, got {echo(raw)}")
    return value


def check_partitions(names: Sequence[str], limits: Limits) -> tuple[str, ...]:
    if len(names) > limits.max_partitions:
        raise limit_exceeded(f"{len(names)} partition names", "--max-partitions", limits.max_partitions)
    return tuple(dict.fromkeys(check_partition_name(n) for n in names))


def check_output_fields(
    names: Sequence[str], schema: CollectionSchema, loaded: Sequence[str], limits: Limits
) -> tuple[str, ...]:
    """Output field names, `*` expanded (every loaded scalar field, the primary key and the
    dynamic field), each checked to be in the schema (or a dynamic key) and loaded."""
    if len(names) > limits.max_output_fields:
        raise limit_exceeded(f"{len(names)} output fields", "--max-output-fields", limits.max_output_fields)
    loaded_set = set(loaded)
    out: list[str] = []
    for name in names:
        if name == "*":
            out += [f.name for f in schema.fields if f.type != "float_vector" and f.name in loaded_set]
            if DYNAMIC_FIELD in loaded_set:
                out.append(DYNAMIC_FIELD)
            continue
        if name.startswith("count(") or "(" in name:
            raise unsupported(f"output field {echo(name)} (aggregation)")
        f = schema.field(name)
        if f is None and name != DYNAMIC_FIELD and not schema.dynamic_field:
            raise parameter_invalid(f"field {echo(name)} not exist in collection {schema.name}")
        if f is not None and name not in loaded_set:
            raise parameter_invalid(
                f"field {name} is not loaded (loaded fields: {', '.join(sorted(loaded_set))})"
            )
        if f is None and DYNAMIC_FIELD not in loaded_set:
            which = "the dynamic field $meta" if name == DYNAMIC_FIELD else f"dynamic field key {echo(name)}"
            raise parameter_invalid(f"{which} is not loaded (skip_load_dynamic_field)")
        out.append(name)
    return tuple(dict.fromkeys(out))


def check_filter(text: str, limits: Limits) -> str:
    if len(text) > limits.max_filter_chars:
        raise limit_exceeded(
            f"a filter of {len(text)} characters", "--max-filter-chars", limits.max_filter_chars
        )
    return text


def choose_anns_field(requested: str, schema: CollectionSchema, loaded: Sequence[str]) -> FieldSchema:
    vectors = [f for f in schema.vector_fields if f.name in set(loaded)]
    if requested:
        field = schema.field(requested)
        if field is None or field.type != "float_vector":
            raise parameter_invalid(
                f"failed to get field schema by name: fieldName({echo(requested)}) not found"
            )
        if field not in vectors:
            raise parameter_invalid(f"field {requested} is not loaded")
        return field
    if len(vectors) != 1:
        raise parameter_invalid("multiple anns_fields exist, please specify a anns_field in search_params")
    return vectors[0]


def decode_vectors(blob: bytes, dim: int, field: str, limits: Limits) -> npt.NDArray[np.float32]:
    """The float32 vectors of a serialized PlaceholderGroup, shape (nq, dim)."""
    group = common_pb2.PlaceholderGroup()
    try:
        group.ParseFromString(blob)
    except DecodeError:
        raise parameter_invalid("the search vectors (placeholder group) are not a valid message") from None
    if len(group.placeholders) != 1:
        raise parameter_invalid(f"expected one placeholder of search vectors, got {len(group.placeholders)}")
    holder = group.placeholders[0]
    if holder.type != FLOAT_VECTOR_PLACEHOLDER:
        name = (
            common_pb2.PlaceholderType.Name(holder.type) if holder.type in _PLACEHOLDER_NAMES else holder.type
        )
        raise unsupported(f"search vectors of type {name} (only FloatVector)")
    nq = len(holder.values)
    if nq == 0:
        raise parameter_invalid(
            "nq [0] is invalid, nq (number of search vector per search request) should be in range [1, 16384]"
        )
    if nq > limits.max_nq:
        raise limit_exceeded(f"nq {nq}", "--max-nq", limits.max_nq)
    width = 4 * dim
    for i, value in enumerate(holder.values):
        if len(value) != width:
            got = len(value) / 4 if len(value) % 4 == 0 else f"{len(value)} bytes"
            raise parameter_invalid(
                f"the dim ({got}) of field data(search vector {i}) is not equal to schema dim ({dim}) "
                f"of field {field}"
            )
    vectors = np.frombuffer(b"".join(holder.values), dtype="<f4").reshape(nq, dim).astype(np.float32)
    if not np.isfinite(vectors).all():
        bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise parameter_invalid(f"search vector {bad} contains a value that is not a finite number")
    return vectors


_PLACEHOLDER_NAMES = frozenset(v.number for v in common_pb2.PlaceholderType.DESCRIPTOR.values)


def search_args(
    collection: str,
    partitions: Sequence[str],
    dsl: str,
    placeholder_group: bytes,
    output_fields: Sequence[str],
    search_params: Mapping[str, str],
    nq_field: int,
    schema: CollectionSchema,
    loaded: Sequence[str],
    limits: Limits,
) -> SearchArgs:
    for key, value in search_params.items():
        # SDKs send some of these keys with an empty or false value on every search
        # (milvus-sdk-go 2.4: `group_by_field=""`): only a value that asks for the feature is refused
        if key in UNSUPPORTED_SEARCH_KEYS and value.strip().lower() not in UNSET_VALUES:
            raise unsupported(UNSUPPORTED_SEARCH_KEYS[key])
    params = _params(search_params.get("params"))
    for key in params:
        if key in UNSUPPORTED_PARAMS:
            raise unsupported(UNSUPPORTED_PARAMS[key])
    top_k_text = search_params.get("topk", params.get("topk", params.get("limit")))
    if top_k_text is None:
        raise parameter_invalid("topk not found in search_params")
    top_k = _int(str(top_k_text), "topk")
    if not 1 <= top_k <= min(limits.max_top_k, MAX_TOP_K):
        raise parameter_invalid(
            f"topk [{top_k}] is invalid, it should be in range [1, {min(limits.max_top_k, MAX_TOP_K)}]"
        )
    offset = _int(str(search_params.get("offset", params.get("offset", 0))), "offset")
    if offset < 0 or offset + top_k > MAX_TOP_K:
        raise parameter_invalid(
            f"(offset+limit) should be in range [1, {MAX_TOP_K}], but got {offset + top_k}"
        )
    round_decimal = _int(str(search_params.get("round_decimal", "-1")), "round_decimal")
    if round_decimal != -1 and not 0 <= round_decimal <= 6:
        raise parameter_invalid(
            f"round_decimal {round_decimal} is invalid, should be -1 or an integer in range [0, 6]"
        )
    field = choose_anns_field(search_params.get("anns_field", ""), schema, loaded)
    metric = field.metric
    asked = str(search_params.get("metric_type") or params.get("metric_type") or "").strip()
    if asked and metric is not None and asked.upper() != metric.upper():
        raise parameter_invalid(
            f"metric type not match for vector field {field.name}, "
            f"expected={metric.upper()}, actual={echo(asked.upper())}"
        )
    ef_value = params.get("ef")
    ef: int | None = None
    if ef_value is not None:
        if isinstance(ef_value, bool) or not isinstance(ef_value, int | str):
            raise parameter_invalid(f"ef must be an integer, got {echo(ef_value)}")
        ef = _int(str(ef_value), "ef")
        if not 1 <= ef <= 32768:
            raise parameter_invalid(f"ef [{ef}] is invalid, it should be in range [1, 32768]")
        ef = max(ef, top_k + offset)
    vectors = decode_vectors(placeholder_group, int(field.dim or 0), field.name, limits)
    if nq_field and nq_field != len(vectors):
        raise parameter_invalid(
            f"nq ({nq_field}) does not match the number of search vectors ({len(vectors)})"
        )
    if len(vectors) * (top_k + offset) > limits.max_search_results:
        raise limit_exceeded(
            f"nq × (topk + offset) = {len(vectors)} × {top_k + offset} = {len(vectors) * (top_k + offset)}",
            "--max-search-results",
            limits.max_search_results,
        )
    return SearchArgs(
        collection=collection,
        vectors=vectors,
        anns_field=field.name,
        metric=metric,
        top_k=top_k,
        offset=offset,
        filter=check_filter(dsl, limits) if dsl.strip() else None,
        output_fields=check_output_fields(output_fields, schema, loaded, limits),
        partitions=check_partitions(partitions, limits),
        ef=ef,
        round_decimal=round_decimal,
    )


def query_args(
    collection: str,
    expr: str,
    output_fields: Sequence[str],
    partitions: Sequence[str],
    query_params: Mapping[str, str],
    schema: CollectionSchema,
    loaded: Sequence[str],
    limits: Limits,
) -> QueryArgs:
    if query_params.get("iterator", "").lower() == "true":
        raise unsupported("query iterators")
    limit = _int(query_params["limit"], "limit") if query_params.get("limit") not in (None, "") else None
    offset = _int(query_params.get("offset") or "0", "offset")
    if limit is not None and not 1 <= limit <= limits.max_query_limit:
        raise parameter_invalid(
            f"limit [{limit}] is invalid, it should be in range [1, {limits.max_query_limit}]"
        )
    if offset < 0 or (limit is not None and offset + limit > limits.max_query_limit):
        raise parameter_invalid(f"(offset+limit) should be in range [1, {limits.max_query_limit}]")
    if not expr.strip() and limit is None:
        raise parameter_invalid("empty expression should be used with limit")
    return QueryArgs(
        collection=collection,
        filter=check_filter(expr, limits),
        output_fields=check_output_fields(output_fields, schema, loaded, limits),
        partitions=check_partitions(partitions, limits),
        limit=limit,
        offset=offset,
    )
