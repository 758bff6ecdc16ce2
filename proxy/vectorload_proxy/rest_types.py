"""REST request bodies, typed: REST v2 (`/v2/vectordb/...`, camelCase) and REST v1
(`/api/v1/...`, snake_case, the field names of the gRPC request messages).

Decoded with msgspec straight from bytes into frozen structs: unknown keys are refused (a
misspelled `collection_name` in a v2 body is an error naming it, not a silently empty name),
wrong types and explicit nulls are refused with the path (`$.partitionNames[1]`), and neither the
decoder nor the messages echo the offending value beyond `errors.ECHO_CHARS`. The body size is
bounded before reading (`--max-request-bytes`) and the nesting depth before decoding
(`--max-json-depth`, a linear scan), so no body can make decoding expensive.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, TypeVar

import msgspec
import numpy as np

T = TypeVar("T")


class V2(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """REST v2 bodies: camelCase keys."""


class V2List(V2, frozen=True):
    db_name: str = ""


class V2Collection(V2, frozen=True):
    """collections/{describe,has,load,release,refresh_load,get_load_state,get_stats},
    partitions/list. `replicaNumber`, `loadFields` and `skipLoadDynamicField` on load are what
    the gRPC LoadCollectionRequest carries (newer Milvus REST servers accept them too)."""

    collection_name: str
    db_name: str = ""
    partition_names: list[str] = []
    replica_number: int = 0
    load_fields: list[str] = []
    skip_load_dynamic_field: bool = False


class V2Partitions(V2, frozen=True):
    """partitions/{load,release}: `partitionNames` required."""

    collection_name: str
    partition_names: list[str]
    db_name: str = ""
    replica_number: int = 0


class V2Partition(V2, frozen=True):
    """partitions/{has,get_stats}."""

    collection_name: str
    partition_name: str
    db_name: str = ""


class V2Search(V2, frozen=True):
    collection_name: str
    data: list[list[float]]
    db_name: str = ""
    anns_field: str = ""
    partition_names: list[str] = []
    filter: str = ""
    limit: int = 100
    offset: int = 0
    output_fields: list[str] = []
    search_params: dict[str, Any] = {}
    consistency_level: str = ""


class V2Query(V2, frozen=True):
    collection_name: str
    db_name: str = ""
    filter: str = ""
    output_fields: list[str] = []
    partition_names: list[str] = []
    limit: int = 0
    offset: int = 0
    consistency_level: str = ""


class V2Get(V2, frozen=True):
    collection_name: str
    id: int | str | list[int | str]
    db_name: str = ""
    output_fields: list[str] = []
    partition_names: list[str] = []
    consistency_level: str = ""


class V2Database(V2, frozen=True):
    db_name: str


class V1(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """REST v1 bodies: the gRPC request message's snake_case field names."""


class V1Collection(V1, frozen=True):
    """`/api/v1/collection/load` (LoadCollectionRequest / ReleaseCollectionRequest)."""

    collection_name: str
    db_name: str = ""
    base: dict[str, Any] | None = None
    replica_number: int = 0
    resource_groups: list[str] = []
    refresh: bool = False
    load_fields: list[str] = []
    skip_load_dynamic_field: bool = False
    load_params: dict[str, str] = {}


class V1Partitions(V1, frozen=True):
    """`/api/v1/partitions/load` (LoadPartitionsRequest / ReleasePartitionsRequest)."""

    collection_name: str
    partition_names: list[str]
    db_name: str = ""
    base: dict[str, Any] | None = None
    replica_number: int = 0
    resource_groups: list[str] = []
    refresh: bool = False
    load_fields: list[str] = []
    skip_load_dynamic_field: bool = False
    load_params: dict[str, str] = {}


class BodyError(ValueError):
    """`kind`: malformed (not JSON), missing (a required key), invalid (types, unknown keys)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when `raw` nests arrays/objects deeper than `limit` (brackets inside strings do not
    count). Linear in the body, vectorised: a 1 MB search body is scanned in about a millisecond."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stripped = _STRING.sub(b"", raw) if b'"' in raw else raw
    data = np.frombuffer(stripped, dtype=np.uint8)
    steps = (
        (data == 0x5B).astype(np.int8)
        + (data == 0x7B).astype(np.int8)
        - (data == 0x5D).astype(np.int8)
        - (data == 0x7D).astype(np.int8)
    )
    return bool(len(steps)) and int(np.cumsum(steps, dtype=np.int64).max()) > limit


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode(raw: bytes, type_: type[T], max_depth: int) -> T:
    if not raw.strip():
        raw = b"{}"
    if depth_exceeds(raw, max_depth):
        raise BodyError("invalid", f"the body nests deeper than the limit --max-json-depth {max_depth}")
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        value: T = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.startswith("Object missing required field"):
            raise BodyError("missing", text) from None
        raise BodyError("invalid", text) from None
    except msgspec.DecodeError as exc:
        raise BodyError("malformed", str(exc)) from None
    return value


OFFLOAD_BYTES = 256 << 10  # a body this large is decoded in a worker thread


async def decode_large(raw: bytes, type_: type[T], max_depth: int) -> T:
    """`decode` for the bodies that may be large (inserts, searches): above `OFFLOAD_BYTES` in a
    worker thread, so a 64 MiB insert does not stall every other request and `/healthz` on the
    event loop for the tenths of a second its decoding takes; a small body inline."""
    if len(raw) < OFFLOAD_BYTES:
        return decode(raw, type_, max_depth)
    return await asyncio.to_thread(decode, raw, type_, max_depth)
