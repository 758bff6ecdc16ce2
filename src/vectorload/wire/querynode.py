"""The querynode HTTP API, typed: every request and answer body, and the error body.

This module is the single definition of the wire between the querynode (server), the client
(`vectorload.client`, `vectorload search`) and the operator. Field names are spelled once, here,
as Python names; `rename="camel"` makes `top_k` travel as `topK`. Nothing else spells a JSON key
of this API.

Why msgspec (figures in docs/querynode.md, `bench/bench_wire_decode.py`): it decodes straight from
bytes into typed, frozen structs, rejects unknown keys (`forbid_unknown_fields`), wrong types,
explicit nulls where a value is required and integers beyond 64 bits with errors that name the
path (`$.topK`) but never echo the input, and it is several times faster than pydantic v2 and a
hand-written dataclass codec on the operator's hot path (the 48-segment distribution answer).

Decoding is structural; range checks and name checks that need the node's settings happen where
the settings live (the querynode's `requests.py`). Encoding never fails on a non-finite float:
msgspec writes `null`, and the querynode never puts one where a number is required.

The collection catalog's `schema` is the storage format's schema document; it is parsed once,
by storage's own parser (`vectorload.storage.schema_json`), into a `CollectionSchema`.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, TypeVar, cast

import msgspec

from vectorload.storage.api import CollectionSchema, StorageError
from vectorload.storage.schema_json import schema_from_dict, schema_to_dict

T = TypeVar("T")


class Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """Base of every body: immutable, camelCase on the wire, unknown keys refused."""


class WireError(ValueError):
    """A body that does not match its type. `path` is where (`$.vectors[0][1]`, `$` for the
    whole body), `key` the top-level key involved (None for the body itself); the message comes
    from the decoder and never contains the offending value."""

    def __init__(
        self,
        message: str,
        path: str = "$",
        key: str | None = None,
        unknown: bool = False,
        malformed: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.key = key  # the top-level key involved, or the unknown key itself
        self.unknown = unknown  # an unknown key `key` in the object at `path`
        self.malformed = malformed  # not JSON at all (or not UTF-8)


# ------------------------------------------------------------------------------------ errors


class ErrorDetail(Wire, frozen=True):
    reason: str  # one CamelCase word
    message: str  # human text naming the problem


class ErrorBody(Wire, frozen=True):
    """Every 4xx/5xx answer: `{"error": {"reason", "message"}}`."""

    error: ErrorDetail


class HealthAnswer(Wire, frozen=True):
    """`GET /healthz` → `{"status": "ok"}`, `GET /readyz` → `{"status": "ready"}`."""

    status: str


# ----------------------------------------------------------------------------------- catalog


class CatalogList(Wire, frozen=True):
    """`GET /v1/catalog`."""

    collections: tuple[str, ...]


class CatalogTokensRequest(Wire, frozen=True):
    """`POST /v1/catalog/tokens`: the catalogs' validators of many collections in one request."""

    collections: tuple[str, ...]


class CatalogTokens(Wire, frozen=True):
    """Collection -> the `ETag` its `GET /v1/catalog/{collection}` would answer now; a collection
    the storage does not have is absent. A poller of many collections asks this once and fetches
    only the catalogs whose tag moved."""

    tokens: dict[str, str]


class SegmentSummary(Wire, frozen=True):
    """One live segment in a collection catalog. `bytes` are file sizes per field (`$meta` for the
    dynamic field, `$ts` for row timestamps); `memory_bytes` the predicted resident bytes memory
    admission charges. `compacted_from`: the (retired) segments a compaction merged into this one;
    `generation`: the collection generation it was published at.

    The change-data keys have defaults that say "nothing of the kind" (not compacted, generation
    0 = written before generations), which is what a storage without them holds."""

    id: str
    rows: int
    bytes: dict[str, int]
    total_bytes: int
    memory_bytes: dict[str, int]
    compacted_from: tuple[str, ...] = ()
    generation: int = 0


class RetiredSummary(Wire, frozen=True):
    """A segment a compaction replaced, still readable until garbage collection: querynodes
    that hold it keep it until the live segments replacing it are loaded. `replaced_by`: the
    segments (same partition) holding its surviving rows, () when every row was deleted."""

    id: str
    rows: int
    replaced_by: tuple[str, ...]
    compacted_from: tuple[str, ...] = ()
    generation: int = 0  # the collection generation it was published at


class PartitionCatalog(Wire, frozen=True):
    name: str
    segments: tuple[SegmentSummary, ...]
    retired: tuple[RetiredSummary, ...] = ()


class DeltaSummary(Wire, frozen=True):
    """The collection's deletes: how many delta files, the newest delete timestamp (0: none)."""

    count: int
    newest_ts: int


NO_DELTAS = DeltaSummary(count=0, newest_ts=0)


class CollectionCatalog(Wire, frozen=True):
    """`GET /v1/catalog/{collection}`; `schema` is parsed by storage's schema parser.
    `generation` is the collection's storage generation (0: never moved); the answer's `ETag`
    header is the validator to send back as `If-None-Match` (304 while nothing changed)."""

    name: str
    schema: CollectionSchema
    partitions: tuple[PartitionCatalog, ...]
    deltas: DeltaSummary = NO_DELTAS
    generation: int = 0


class _CatalogDocument(Wire, frozen=True):
    """The catalog as it travels: the schema as the storage format's schema document."""

    name: str
    schema: dict[str, Any]
    partitions: tuple[PartitionCatalog, ...]
    deltas: DeltaSummary = NO_DELTAS
    generation: int = 0


# ------------------------------------------------------------------------------ distribution


class Capacity(Wire, frozen=True):
    memory_limit_bytes: int
    used_bytes: int
    reserved_bytes: int
    threshold: float


class Reloading(Wire, frozen=True):
    """A copy is reloaded in place with another field set while the old copy keeps serving."""

    fields: tuple[str, ...]
    dynamic_field: bool


SegmentStateName = Literal["loading", "loaded", "failed"]


class HeldSegment(Wire, frozen=True):
    """One segment a node holds (or is loading, or failed to load). `reloading` is present only
    while an in-place reload runs (`isinstance(seg.reloading, Reloading)`; null reads as absent)."""

    collection: str
    partition: str
    segment: str
    state: SegmentStateName
    reason: str  # of the last failed load ("" when none)
    message: str
    bytes: int  # accounted bytes (reserved bytes while loading)
    rows: int
    fields: tuple[str, ...]
    dynamic_field: bool
    reloading: Reloading | msgspec.UnsetType | None = msgspec.UNSET


UNSET = msgspec.UNSET


class Distribution(Wire, frozen=True):
    """`GET /v1/distribution`: what this node holds; `boot_id` changes on every start."""

    node: str
    boot_id: str
    capacity: Capacity
    segments: tuple[HeldSegment, ...]


# ------------------------------------------------------------------------------ load/release


class LoadRequest(Wire, frozen=True):
    """`POST /v1/segments/load`. `fields` None loads every field."""

    collection: str
    partition: str
    segments: tuple[str, ...]
    fields: tuple[str, ...] | None = None
    skip_dynamic_field: bool = False


LoadState = Literal["loading", "loaded", "refused"]


class LoadResult(Wire, frozen=True):
    segment: str
    state: LoadState
    reason: str  # why it was refused ("" otherwise)
    message: str


class LoadAnswer(Wire, frozen=True):
    results: tuple[LoadResult, ...]


class ReleaseTarget(Wire, frozen=True):
    partition: str
    segment: str


class ReleaseRequest(Wire, frozen=True):
    """`POST /v1/segments/release`; `segments` None releases the whole collection."""

    collection: str
    segments: tuple[ReleaseTarget, ...] | None = None


class ReleaseAnswer(Wire, frozen=True):
    released: int


# -------------------------------------------------------------------------------------- data


class SearchRequest(Wire, frozen=True):
    """`POST /v1/search`. `vectors` is a list of vectors (or one bare vector)."""

    collection: str
    vectors: list[list[float] | float]
    partitions: tuple[str, ...] | None = None
    anns_field: str | None = None
    top_k: int = 10
    filter: str | None = None
    output_fields: tuple[str, ...] | None = None
    ef: int | None = None


PrimaryKey = int | str


class Hit(Wire, frozen=True):
    id: PrimaryKey
    distance: float  # smaller is closer, for every metric
    partition: str
    fields: dict[str, Any]


class SearchAnswer(Wire, frozen=True):
    results: list[list[Hit]]  # per query vector, closest first


DEFAULT_QUERY_LIMIT = 1000


class QueryRequest(Wire, frozen=True):
    """`POST /v1/query`: rows matching a filter."""

    collection: str
    filter: str
    partitions: tuple[str, ...] | None = None
    output_fields: tuple[str, ...] | None = None
    limit: int = DEFAULT_QUERY_LIMIT


class GetRequest(Wire, frozen=True):
    """`POST /v1/get`: rows by primary key."""

    collection: str
    ids: list[PrimaryKey]
    partitions: tuple[str, ...] | None = None
    output_fields: tuple[str, ...] | None = None


class RowsAnswer(Wire, frozen=True):
    """Answer of query and get: each row maps the primary key field and output fields to values."""

    rows: list[dict[str, Any]]


# ------------------------------------------------------------------- search, binary (msgpack)
# The same search as `SearchRequest` / `SearchAnswer`, for programs: MessagePack bodies whose
# vectors, ids and distances are raw little-endian arrays instead of decimal text (a 64-d float32
# vector is 256 bytes here against ~1,300 characters of JSON, and neither end parses a number).
# Selected per request: `Content-Type` of the body, `Accept` of the answer (either media type
# below). Error answers stay JSON (`ErrorBody`) whatever was asked.

MSGPACK = "application/msgpack"
SEARCH_MSGPACK = "application/vnd.vectorload.search+msgpack"
MSGPACK_TYPES = frozenset({MSGPACK, SEARCH_MSGPACK})


class PackedSearchRequest(Wire, frozen=True):
    """`POST /v1/search` as MessagePack: `vectors` is nq × `dim` float32, little-endian, row after
    row (4 · nq · dim bytes); every other key as in `SearchRequest`."""

    collection: str
    dim: int
    vectors: bytes
    partitions: tuple[str, ...] | None = None
    anns_field: str | None = None
    top_k: int = 10
    filter: str | None = None
    output_fields: tuple[str, ...] | None = None
    ef: int | None = None


class PackedSearchAnswer(Wire, frozen=True):
    """A search answer as columns, hits of all queries one after the other, closest first per
    query: `counts` hits per query (uint32); per hit `ids` (int64, or strings for a varchar primary
    key), `distances` (float32), `partition_index` (uint32, into `partitions`) and, only when
    output fields were asked, `fields`. Arrays are little-endian bytes."""

    counts: bytes
    ids: bytes | list[str]
    distances: bytes
    partitions: tuple[str, ...]
    partition_index: bytes
    fields: list[dict[str, Any]] | None = None


# -------------------------------------------------------------------------------------- codec

_encoder = msgspec.json.Encoder()


def encode(value: Wire) -> bytes:
    """JSON bytes of a body (non-finite floats become null)."""
    if isinstance(value, CollectionCatalog):
        value = _CatalogDocument(
            name=value.name,
            schema=schema_to_dict(value.schema),
            partitions=value.partitions,
            deltas=value.deltas,
            generation=value.generation,
        )
    return _encoder.encode(value)


def to_builtins(value: Wire) -> Any:
    """The body as plain JSON values (dicts with the camelCase keys, lists), as `json.loads` gives."""
    return msgspec.json.decode(encode(value))


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _decoder(type_: type[Any]) -> msgspec.json.Decoder[Any]:
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(
            _CatalogDocument if type_ is CollectionCatalog else type_
        )
    return decoder


def _wire_error(exc: msgspec.MsgspecError) -> WireError:
    text = str(exc)
    message, _, where = text.partition(" - at `")
    path = where.rstrip("`") if where else "$"
    key: str | None = None
    unknown = False
    if message.startswith("Object contains unknown field `"):
        key = message.removeprefix("Object contains unknown field `").rstrip("`")
        unknown = True
    elif path.startswith("$."):
        key = path[2:].split(".")[0].split("[")[0]
    if not isinstance(exc, msgspec.ValidationError):
        return WireError(text, malformed=True)
    return WireError(message, path, key, unknown)


def _finish(type_: type[T], value: Any) -> T:
    if type_ is CollectionCatalog:
        doc = cast(_CatalogDocument, value)
        try:
            schema = schema_from_dict(doc.schema, name=doc.name)
        except StorageError as exc:
            raise WireError(f"invalid collection schema: {exc.message}", "$.schema", "schema") from exc
        return cast(
            T,
            CollectionCatalog(
                name=doc.name,
                schema=schema,
                partitions=doc.partitions,
                deltas=doc.deltas,
                generation=doc.generation,
            ),
        )
    return cast(T, value)


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode JSON bytes into `type_`; WireError (naming the path) when they do not match."""
    try:
        value = _decoder(type_).decode(data)
    except msgspec.MsgspecError as exc:
        raise _wire_error(exc) from None
    return _finish(type_, value)


_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoders: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {}


def encode_msgpack(value: Wire) -> bytes:
    """MessagePack bytes of a body (the binary search types; any `Wire` type encodes)."""
    return _msgpack_encoder.encode(value)


def decode_msgpack(data: bytes, type_: type[T]) -> T:
    """Decode MessagePack bytes into `type_`; WireError (naming the path) when they do not match
    (`malformed` when they are not MessagePack at all)."""
    decoder = _msgpack_decoders.get(type_)
    if decoder is None:
        decoder = _msgpack_decoders[type_] = msgspec.msgpack.Decoder(type_)
    try:
        return cast(T, decoder.decode(data))
    except msgspec.MsgspecError as exc:
        raise _wire_error(exc) from None


def convert(obj: Any, type_: type[T]) -> T:
    """Like `decode`, from already parsed JSON values (dicts, lists, numbers, strings)."""
    try:
        value = msgspec.convert(obj, _CatalogDocument if type_ is CollectionCatalog else type_)
    except msgspec.MsgspecError as exc:
        raise _wire_error(exc) from None
    return _finish(type_, value)


def replace(value: T, **changes: Any) -> T:
    """A copy of a frozen body with some fields changed."""
    return cast(T, msgspec.structs.replace(cast(Any, value), **changes))


@functools.cache
def field_names(type_: type[Wire]) -> tuple[str, ...]:
    """The JSON keys of a body type, in declaration order (for messages)."""
    return tuple(f.encode_name for f in msgspec.structs.fields(type_))


@functools.cache
def key(type_: type[Wire], attribute: str) -> str:
    """The JSON key of one attribute (`key(SearchRequest, "top_k")` is `"topK"`), so that a
    message naming a key never spells it by hand. Cached: `msgspec.structs.fields` evaluates the
    type's annotations on every call (~20 µs), and requests name keys on every request."""
    for f in msgspec.structs.fields(type_):
        if f.name == attribute:
            return f.encode_name
    raise AttributeError(f"{type_.__name__} has no attribute {attribute}")
