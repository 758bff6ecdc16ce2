"""Request bodies → validated requests (400 ApiError on anything wrong, never a 500).

Decoding is typed (`vectorload.wire.querynode`): unknown keys, wrong types, explicit nulls where a
value is required and integers beyond 64 bits are refused by the decoder, which names the path but
not the value. What needs the schema-free rules of this API — names, ranges, the node's limits
(`Limits`, every one a querynode setting) — is checked here. Every message that shows client
input shows at most `ECHO_LIMIT` characters of it, and every limit's refusal names the setting and
its value.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import DYNAMIC_FIELD, NAME_PATTERN, SEGMENT_ID_PATTERN
from vectorload.storage.schema_json import MAX_DIM
from vectorload.wire import querynode as wire

from .errors import ECHO_LIMIT, ApiError, echo
from .filter_expr import DEFAULT_LIMITS as DEFAULT_FILTER_LIMITS
from .filter_expr import FilterLimits

MAX_TOP_K = 16384
MAX_QUERIES = 16384
MAX_LIMIT = 16384
MAX_EF = 65536
MAX_SEGMENTS = 100000
MAX_PARTITIONS = 4096
MAX_LOAD_FIELDS = 4096
# squared query norms at or above this make float32 distances overflow to infinity
MAX_SQUARED_NORM = float(np.finfo(np.float32).max) / 4

W = TypeVar("W", bound=wire.Wire)


@dataclass(frozen=True)
class Limits:
    """Bounded work per request; each field is a querynode setting (flag in parentheses)."""

    max_request_bytes: int = 64 * 1024 * 1024  # --max-request-bytes
    max_json_depth: int = 32  # --max-json-depth
    max_search_results: int = 262144  # --max-search-results: nq × topK
    max_ids: int = 16384  # --max-ids
    max_output_fields: int = 256  # --max-output-fields
    request_timeout: float = 30.0  # --request-timeout: seconds of work per data request
    filter: FilterLimits = DEFAULT_FILTER_LIMITS  # --filter-max-chars, -depth, -list-items


DEFAULT_LIMITS = Limits()


def bad(reason: str, message: str) -> ApiError:
    return ApiError(400, reason, message)


def clip(value: object, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)` cut to `limit` characters (with the full length when cut)."""
    return echo(repr(value), limit)


def limit_exceeded(what: str, flag: str, value: float) -> ApiError:
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return bad("LimitExceeded", f"{what} exceeds the limit {flag} {shown}")


# ----------------------------------------------------------------------------------- decoding

# The depth scan is numpy over fixed-size chunks, carrying its state (depth, inside a string or
# not, trailing backslashes) from one chunk to the next, so its memory is bounded whatever the
# body. It once removed strings with a regex first: on a body like `{"a":` × 100,000 that builds
# 200,000 small objects per request, and every worker thread's allocator kept the high-water mark
# (+70 MB of RSS on a fresh node after a few deep bodies; found by tests/fuzz).
_DEPTH_CHUNK = 1 << 16
_STEPS = np.zeros(256, dtype=np.int8)
_STEPS[[ord("["), ord("{")]] = 1
_STEPS[[ord("]"), ord("}")]] = -1
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when `raw` nests arrays/objects deeper than `limit` (brackets inside strings do not
    count; a quote preceded by an odd number of backslashes does not end a string). Linear in the
    body, a few hundred KiB of temporaries; cheap when the body holds few brackets."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    data = np.frombuffer(raw, dtype=np.uint8)
    depth, in_string, backslashes = 0, 0, 0  # carried from one chunk to the next
    for start in range(0, len(data), _DEPTH_CHUNK):
        chunk = data[start : start + _DEPTH_CHUNK]
        n = len(chunk)
        index = np.arange(n, dtype=np.int32)
        # index of the last byte at or before i that is not a backslash (-1: none in this chunk)
        last_other = np.maximum.accumulate(np.where(chunk == _BACKSLASH, -1, index))
        quotes = np.flatnonzero(chunk == _QUOTE)
        before = np.where(quotes > 0, last_other[np.maximum(quotes - 1, 0)], -1)
        run = np.where(before >= 0, quotes - 1 - before, quotes + backslashes)  # backslashes before
        toggles = np.zeros(n, dtype=np.int32)
        toggles[quotes[run % 2 == 0]] = 1  # unescaped quotes open or close a string
        inside = (np.cumsum(toggles, dtype=np.int32) + in_string) % 2
        levels = np.cumsum(_STEPS[chunk] * (inside == 0), dtype=np.int32)
        if depth + int(levels.max()) > limit:
            return True
        depth += int(levels[-1])
        in_string = int(inside[-1])
        backslashes = backslashes + n if last_other[-1] < 0 else n - 1 - int(last_other[-1])
    return False


# the reason a decoding error gets by the key it is at (attribute names, turned into wire keys)
_REASONS_BY_KEY = {
    wire.key(wire.LoadRequest, attribute): reason
    for attribute, reason in (("collection", "InvalidName"), ("partition", "InvalidName"))
} | {
    wire.key(wire.SearchRequest, attribute): reason
    for attribute, reason in (("vectors", "InvalidVectors"), ("filter", "InvalidFilter"))
}
K = wire.key
_VECTORS = K(wire.SearchRequest, "vectors")
_KINDS = {
    wire.LoadRequest: "load",
    wire.ReleaseRequest: "release",
    wire.SearchRequest: "search",
    wire.QueryRequest: "query",
    wire.GetRequest: "get",
}


def wire_error(err: wire.WireError, type_: type[wire.Wire]) -> ApiError:
    """A decoding failure as the 400 it is."""
    kind = _KINDS.get(type_, type_.__name__)
    if err.malformed:
        return bad("InvalidJSON", f"request body is not valid JSON: {err.message[:ECHO_LIMIT]}")
    if err.unknown and err.key is not None:
        if err.path != "$":
            where = f"at {err.path[:80]} in the {kind} request"
            return bad("UnknownKey", f"unknown key {clip(err.key, 80)} {where}")
        keys = wire.field_names(type_)
        close = difflib.get_close_matches(err.key, keys, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else f" (keys: {', '.join(keys)})"
        return bad("UnknownKey", f"unknown key {clip(err.key, 80)} in the {kind} request{hint}")
    reason = _REASONS_BY_KEY.get(err.key or "", "InvalidRequest")
    return bad(reason, f"invalid {kind} request: {err.message[:ECHO_LIMIT]} at {err.path[:80]}")


def decode_body(raw: bytes, type_: type[W], limits: Limits = DEFAULT_LIMITS) -> W:
    """JSON bytes → the wire request (400 on anything wrong). CPU-bound: large bodies are decoded
    in a worker thread (see app.py)."""
    if json_depth_exceeds(raw, limits.max_json_depth):
        raise limit_exceeded("JSON nesting depth", "--max-json-depth", limits.max_json_depth)
    try:
        return wire.decode(raw, type_)
    except wire.WireError as err:
        raise wire_error(err, type_) from None


def decode_packed_search(raw: bytes) -> wire.PackedSearchRequest:
    """MessagePack bytes → the binary search request (400 on anything wrong). A typed decode of a
    body without free-form values: nesting cannot go deeper than the type, so no depth scan."""
    try:
        return wire.decode_msgpack(raw, wire.PackedSearchRequest)
    except wire.WireError as err:
        if err.malformed:
            raise bad(
                "InvalidBody", f"request body is not valid MessagePack: {err.message[:ECHO_LIMIT]}"
            ) from None
        raise wire_error(err, wire.SearchRequest) from None


def convert_body(body: object, type_: type[W]) -> W:
    """Already parsed JSON (a dict) → the wire request, with the same errors as `decode_body`."""
    if not isinstance(body, dict):
        raise bad("InvalidRequest", "request body must be a JSON object")
    try:
        return wire.convert(body, type_)
    except wire.WireError as err:
        raise wire_error(err, type_) from None


# -------------------------------------------------------------------------------------- names


def check_name(value: object, kind: str) -> str:
    if not isinstance(value, str):
        raise bad("InvalidName", f"{kind} name must be a string, got {type(value).__name__}")
    if not NAME_PATTERN.fullmatch(value):
        raise bad("InvalidName", f"invalid {kind} name {clip(value)}: must match {NAME_PATTERN.pattern}")
    return value


def check_segment_id(value: object) -> str:
    if not isinstance(value, str) or not SEGMENT_ID_PATTERN.fullmatch(value):
        raise bad("InvalidName", f"invalid segment id {clip(value)}: must match {SEGMENT_ID_PATTERN.pattern}")
    return value


def _count(values: tuple[Any, ...] | list[Any], key: str, limit: int) -> None:
    if len(values) > limit:
        raise bad("InvalidRequest", f"{key} has {len(values)} items; the limit is {limit}")


def _range(value: int, key: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise bad("InvalidRequest", f"{key} must be between {low} and {high}, got {clip(value, 40)}")
    return value


def _partitions(values: tuple[str, ...] | None) -> list[str] | None:
    if values is None:
        return None
    _count(values, K(wire.SearchRequest, "partitions"), MAX_PARTITIONS)
    return [check_name(v, "partition") for v in values]


def _output_fields(values: tuple[str, ...] | None, limits: Limits) -> list[str] | None:
    if values is None:
        return None
    if len(values) > limits.max_output_fields:
        what = f"{K(wire.SearchRequest, 'output_fields')} ({len(values)} names)"
        raise limit_exceeded(what, "--max-output-fields", limits.max_output_fields)
    return [v if v in (DYNAMIC_FIELD, "*") else check_name(v, "field") for v in values]


def _filter(value: str | None, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise bad("InvalidRequest", f"{K(wire.QueryRequest, 'filter')} is required")
        return None
    return value


# ----------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class LoadRequest:
    collection: str
    partition: str
    segments: list[str]
    fields: list[str] | None
    skip_dynamic: bool

    @classmethod
    def from_wire(cls, body: wire.LoadRequest) -> LoadRequest:
        _count(body.segments, K(wire.LoadRequest, "segments"), MAX_SEGMENTS)
        fields = body.fields
        if fields is not None:
            _count(fields, K(wire.LoadRequest, "fields"), MAX_LOAD_FIELDS)
        return cls(
            collection=check_name(body.collection, "collection"),
            partition=check_name(body.partition, "partition"),
            segments=list(dict.fromkeys(check_segment_id(s) for s in body.segments)),
            fields=None if fields is None else [check_name(f, "field") for f in fields],
            skip_dynamic=body.skip_dynamic_field,
        )

    @classmethod
    def parse(cls, body: object) -> LoadRequest:
        return cls.from_wire(convert_body(body, wire.LoadRequest))


@dataclass(frozen=True)
class ReleaseRequest:
    collection: str
    targets: list[tuple[str, str]] | None

    @classmethod
    def from_wire(cls, body: wire.ReleaseRequest) -> ReleaseRequest:
        targets = None
        if body.segments is not None:
            _count(body.segments, K(wire.ReleaseRequest, "segments"), MAX_SEGMENTS)
            targets = [
                (check_name(t.partition, "partition"), check_segment_id(t.segment)) for t in body.segments
            ]
        return cls(check_name(body.collection, "collection"), targets)

    @classmethod
    def parse(cls, body: object) -> ReleaseRequest:
        return cls.from_wire(convert_body(body, wire.ReleaseRequest))


def _vectors(raw: list[list[float] | float]) -> npt.NDArray[np.float32]:
    if not raw:
        raise bad("InvalidRequest", f"{_VECTORS} must be a non-empty list of vectors")
    rows: list[list[float]]
    if all(isinstance(v, float) for v in raw):
        rows = [raw]  # type: ignore[list-item]  # one bare vector
    elif all(isinstance(v, list) for v in raw):
        rows = raw  # type: ignore[assignment]
    else:
        raise bad("InvalidVectors", f"{_VECTORS} must be lists of numbers, all of the same length")
    if len(rows) > MAX_QUERIES:
        raise bad("InvalidRequest", f"{len(rows)} query vectors; the limit is {MAX_QUERIES}")
    dims = {len(v) for v in rows}
    if len(dims) != 1 or 0 in dims:
        raise bad("InvalidVectors", f"{_VECTORS} must be lists of numbers, all of the same length")
    with np.errstate(over="ignore", invalid="ignore"):
        array = np.asarray(rows, dtype=np.float32)
        finite = bool(np.all(np.isfinite(array)))
    if not finite:
        bad_value = next(
            (x for v in rows for x in v if not math.isfinite(x) or abs(x) > np.finfo(np.float32).max),
            None,
        )
        raise bad("InvalidVectors", f"vector component {clip(bad_value, 40)} is not a finite float32")
    return _check_norms(array)


def _check_norms(array: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.einsum("ij,ij->i", array, array, dtype=np.float64)
    if np.any(norms >= MAX_SQUARED_NORM):
        raise bad(
            "InvalidVectors",
            f"a query vector's squared norm exceeds {MAX_SQUARED_NORM:.3g}: "
            "its distances would overflow float32",
        )
    return array


_DIM = K(wire.PackedSearchRequest, "dim")
_F32_LE = np.dtype("<f4")


def _packed_vectors(data: bytes, dim: int) -> npt.NDArray[np.float32]:
    """The `vectors` bytes of a binary search: nq × dim little-endian float32."""
    if not 1 <= dim <= MAX_DIM:
        raise bad("InvalidVectors", f"{_DIM} must be between 1 and {MAX_DIM}, got {clip(dim, 40)}")
    if not data or len(data) % (4 * dim):
        raise bad(
            "InvalidVectors",
            f"{_VECTORS} has {len(data)} bytes: not a non-empty whole number of {dim}-dimensional "
            f"float32 vectors ({4 * dim} bytes each)",
        )
    nq = len(data) // (4 * dim)
    if nq > MAX_QUERIES:
        raise bad("InvalidRequest", f"{nq} query vectors; the limit is {MAX_QUERIES}")
    array = np.frombuffer(data, dtype=_F32_LE).reshape(nq, dim)
    if array.dtype != np.float32:  # a big-endian host: native byte order for hnswlib
        array = array.astype(np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        value = float(array.reshape(-1)[int(np.flatnonzero(~finite.reshape(-1))[0])])
        raise bad("InvalidVectors", f"vector component {clip(value, 40)} is not a finite float32")
    return _check_norms(array)


@dataclass(frozen=True)
class SearchRequest:
    collection: str
    partitions: list[str] | None
    vectors: npt.NDArray[np.float32]
    anns_field: str | None
    top_k: int
    filter: str | None
    output_fields: list[str] | None
    ef: int | None
    filter_limits: FilterLimits = DEFAULT_FILTER_LIMITS  # what its filter may cost (the node's limits)

    @classmethod
    def from_wire(cls, body: wire.SearchRequest, limits: Limits = DEFAULT_LIMITS) -> SearchRequest:
        collection = check_name(body.collection, "collection")
        top_k = _range(body.top_k, K(wire.SearchRequest, "top_k"), 1, MAX_TOP_K)
        vectors = _vectors(body.vectors)
        return cls._checked(collection, vectors, top_k, body, limits)

    @classmethod
    def from_packed(cls, body: wire.PackedSearchRequest, limits: Limits = DEFAULT_LIMITS) -> SearchRequest:
        """The binary search (`PackedSearchRequest`): the same checks, vectors from raw bytes."""
        collection = check_name(body.collection, "collection")
        top_k = _range(body.top_k, K(wire.SearchRequest, "top_k"), 1, MAX_TOP_K)
        vectors = _packed_vectors(body.vectors, body.dim)
        return cls._checked(collection, vectors, top_k, body, limits)

    @classmethod
    def _checked(
        cls,
        collection: str,
        vectors: npt.NDArray[np.float32],
        top_k: int,
        body: wire.SearchRequest | wire.PackedSearchRequest,
        limits: Limits,
    ) -> SearchRequest:
        if len(vectors) * top_k > limits.max_search_results:
            raise limit_exceeded(
                f"nq × {K(wire.SearchRequest, 'top_k')} = {len(vectors)} × {top_k} = {len(vectors) * top_k}",
                "--max-search-results",
                limits.max_search_results,
            )
        return cls(
            collection=collection,
            partitions=_partitions(body.partitions),
            vectors=vectors,
            anns_field=None if body.anns_field is None else check_name(body.anns_field, "field"),
            top_k=top_k,
            filter=_filter(body.filter, required=False),
            output_fields=_output_fields(body.output_fields, limits),
            ef=None if body.ef is None else _range(body.ef, K(wire.SearchRequest, "ef"), 1, MAX_EF),
            filter_limits=limits.filter,
        )

    @classmethod
    def parse(cls, body: object, limits: Limits = DEFAULT_LIMITS) -> SearchRequest:
        return cls.from_wire(convert_body(body, wire.SearchRequest), limits)


@dataclass(frozen=True)
class QueryRequest:
    collection: str
    partitions: list[str] | None
    filter: str
    output_fields: list[str] | None
    limit: int
    filter_limits: FilterLimits = DEFAULT_FILTER_LIMITS  # what its filter may cost (the node's limits)

    @classmethod
    def from_wire(cls, body: wire.QueryRequest, limits: Limits = DEFAULT_LIMITS) -> QueryRequest:
        text = _filter(body.filter, required=True)
        assert text is not None  # required=True
        return cls(
            collection=check_name(body.collection, "collection"),
            partitions=_partitions(body.partitions),
            filter=text,
            output_fields=_output_fields(body.output_fields, limits),
            limit=_range(body.limit, K(wire.QueryRequest, "limit"), 1, MAX_LIMIT),
            filter_limits=limits.filter,
        )

    @classmethod
    def parse(cls, body: object, limits: Limits = DEFAULT_LIMITS) -> QueryRequest:
        return cls.from_wire(convert_body(body, wire.QueryRequest), limits)


@dataclass(frozen=True)
class GetRequest:
    collection: str
    ids: list[int | str]
    output_fields: list[str] | None
    partitions: list[str] | None

    @classmethod
    def from_wire(cls, body: wire.GetRequest, limits: Limits = DEFAULT_LIMITS) -> GetRequest:
        if len(body.ids) > limits.max_ids:
            what = f"{K(wire.GetRequest, 'ids')} ({len(body.ids)} primary keys)"
            raise limit_exceeded(what, "--max-ids", limits.max_ids)
        for value in body.ids:
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                raise bad("InvalidRequest", f"primary key {clip(value, 40)} is out of the int64 range")
        return cls(
            collection=check_name(body.collection, "collection"),
            ids=list(body.ids),
            output_fields=_output_fields(body.output_fields, limits),
            partitions=_partitions(body.partitions),
        )

    @classmethod
    def parse(cls, body: object, limits: Limits = DEFAULT_LIMITS) -> GetRequest:
        return cls.from_wire(convert_body(body, wire.GetRequest), limits)
