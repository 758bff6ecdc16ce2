"""Parse and validate request bodies into typed requests (400 ApiError on anything wrong)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import DYNAMIC_FIELD, NAME_PATTERN, SEGMENT_ID_PATTERN

from .errors import ApiError

MAX_TOP_K = 16384
MAX_QUERIES = 16384
MAX_LIMIT = 16384
MAX_IDS = 16384
MAX_EF = 65536
MAX_SEGMENTS = 100000
DEFAULT_QUERY_LIMIT = 1000


def bad(reason: str, message: str) -> ApiError:
    return ApiError(400, reason, message)


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad("InvalidJSON", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise bad("InvalidRequest", "request body must be a JSON object")
    return body


def name(body: dict[str, Any], key: str, kind: str, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    return check_name(value, kind)


def check_name(value: object, kind: str) -> str:
    if not isinstance(value, str):
        raise bad("InvalidName", f"{kind} name must be a string, got {type(value).__name__}")
    if not NAME_PATTERN.fullmatch(value):
        raise bad("InvalidName", f"invalid {kind} name {value!r}: must match {NAME_PATTERN.pattern}")
    return value


def check_segment_id(value: object) -> str:
    if not isinstance(value, str) or not SEGMENT_ID_PATTERN.fullmatch(value):
        raise bad("InvalidName", f"invalid segment id {value!r}: must match {SEGMENT_ID_PATTERN.pattern}")
    return value


def _list(body: dict[str, Any], key: str, limit: int) -> list[Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad("InvalidRequest", f"{key} must be a list")
    if len(value) > limit:
        raise bad("InvalidRequest", f"{key} has {len(value)} items; the limit is {limit}")
    return value


def _int(body: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad("InvalidRequest", f"{key} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise bad("InvalidRequest", f"{key} must be between {low} and {high}, got {value}")
    return value


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise bad("InvalidRequest", f"{key} must be true or false")
    return value


def _field_names(body: dict[str, Any], key: str) -> list[str] | None:
    values = _list(body, key, 4096)
    if values is None:
        return None
    out = []
    for value in values:
        if value in (DYNAMIC_FIELD, "*"):
            out.append(value)
        else:
            out.append(check_name(value, "field"))
    return out


def _filter(body: dict[str, Any], required: bool) -> str | None:
    value = body.get("filter")
    if value is None or value == "":
        if required:
            raise bad("InvalidRequest", "filter is required")
        return None
    if not isinstance(value, str):
        raise bad("InvalidFilter", "filter must be a string")
    return value


def _partitions(body: dict[str, Any]) -> list[str] | None:
    values = _list(body, "partitions", 4096)
    return None if values is None else [check_name(v, "partition") for v in values]


@dataclass(frozen=True)
class LoadRequest:
    collection: str
    partition: str
    segments: list[str]
    fields: list[str] | None
    skip_dynamic: bool

    @classmethod
    def parse(cls, body: dict[str, Any]) -> LoadRequest:
        segments = _list(body, "segments", MAX_SEGMENTS)
        if segments is None:
            raise bad("InvalidRequest", "segments must be a list of segment ids")
        fields = _list(body, "fields", 4096)
        return cls(
            collection=name(body, "collection", "collection"),
            partition=name(body, "partition", "partition"),
            segments=list(dict.fromkeys(check_segment_id(s) for s in segments)),
            fields=None if fields is None else [check_name(f, "field") for f in fields],
            skip_dynamic=_bool(body, "skipDynamicField"),
        )


@dataclass(frozen=True)
class ReleaseRequest:
    collection: str
    targets: list[tuple[str, str]] | None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ReleaseRequest:
        items = _list(body, "segments", MAX_SEGMENTS)
        targets = None
        if items is not None:
            targets = []
            for item in items:
                if not isinstance(item, dict):
                    raise bad("InvalidRequest", 'segments items must be {"partition", "segment"} objects')
                targets.append(
                    (check_name(item.get("partition"), "partition"), check_segment_id(item.get("segment")))
                )
        return cls(name(body, "collection", "collection"), targets)


def _vectors(body: dict[str, Any]) -> npt.NDArray[np.float32]:
    raw = body.get("vectors")
    if not isinstance(raw, list) or not raw:
        raise bad("InvalidRequest", "vectors must be a non-empty list of vectors")
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
        raw = [raw]  # one bare vector
    if len(raw) > MAX_QUERIES:
        raise bad("InvalidRequest", f"{len(raw)} query vectors; the limit is {MAX_QUERIES}")
    dims = {len(v) if isinstance(v, list) else -1 for v in raw}
    if -1 in dims or len(dims) != 1:
        raise bad("InvalidVectors", "vectors must be lists of numbers, all of the same length")
    for vector in raw:
        for x in vector:
            try:  # math.isfinite raises OverflowError for ints beyond float (JSON allows them)
                finite = not isinstance(x, bool) and isinstance(x, int | float) and math.isfinite(x)
            except OverflowError:
                finite = False
            if not finite:
                shown = repr(x) if len(repr(x)) <= 40 else f"{repr(x)[:20]}… ({len(repr(x))} characters)"
                raise bad("InvalidVectors", f"vector component {shown} is not a finite number")
    with np.errstate(over="ignore"):
        array = np.asarray(raw, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise bad("InvalidVectors", "vector components overflow float32")
    return array


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

    @classmethod
    def parse(cls, body: dict[str, Any]) -> SearchRequest:
        anns = body.get("annsField")
        top_k = _int(body, "topK", 10, 1, MAX_TOP_K)
        assert top_k is not None
        return cls(
            collection=name(body, "collection", "collection"),
            partitions=_partitions(body),
            vectors=_vectors(body),
            anns_field=None if anns is None else check_name(anns, "field"),
            top_k=top_k,
            filter=_filter(body, required=False),
            output_fields=_field_names(body, "outputFields"),
            ef=_int(body, "ef", None, 1, MAX_EF),
        )


@dataclass(frozen=True)
class QueryRequest:
    collection: str
    partitions: list[str] | None
    filter: str
    output_fields: list[str] | None
    limit: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> QueryRequest:
        text = _filter(body, required=True)
        limit = _int(body, "limit", DEFAULT_QUERY_LIMIT, 1, MAX_LIMIT)
        assert text is not None and limit is not None
        return cls(
            collection=name(body, "collection", "collection"),
            partitions=_partitions(body),
            filter=text,
            output_fields=_field_names(body, "outputFields"),
            limit=limit,
        )


@dataclass(frozen=True)
class GetRequest:
    collection: str
    ids: list[int | str]
    output_fields: list[str] | None
    partitions: list[str] | None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> GetRequest:
        ids = _list(body, "ids", MAX_IDS)
        if ids is None:
            raise bad("InvalidRequest", "ids must be a list of primary keys")
        for value in ids:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise bad("InvalidRequest", f"primary key {value!r} must be an integer or a string")
        return cls(
            collection=name(body, "collection", "collection"),
            ids=ids,
            output_fields=_field_names(body, "outputFields"),
            partitions=_partitions(body),
        )
