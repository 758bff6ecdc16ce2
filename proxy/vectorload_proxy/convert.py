"""Storage schemas and querynode answers → Milvus' protobuf messages (pure functions).

What Milvus' proxy does and clients rely on:

- DescribeCollection: user fields get ids from 100 (`common.StartOfUserFieldID`) in schema order;
  a vector field carries `type_params` `dim`, a VARCHAR `max_length`; the dynamic field `$meta`
  is not listed (Milvus' describe task skips `is_dynamic` fields) — `enable_dynamic_field` says it
  exists.
- Search results are columnar over every hit of every query: `ids` and `scores` flat, `topks[q]`
  hits of query q, one `FieldData` per output field. Dynamic keys asked for by name travel in one
  JSON column `$meta` (`is_dynamic`) holding only those keys; `output_fields` lists the names asked
  for, which is how pymilvus knows which keys to lift out of it.
- Scores as Milvus reports them: L2 is the squared distance (smaller is closer, the querynode's
  own number); IP and COSINE are similarities (larger is closer). The querynode answers hnswlib's
  "smaller is closer" for every metric (1 − inner product, 1 − cosine), so those two are turned
  back: score = 1 − distance; the order (closest first) is unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pymilvus.grpc_gen import common_pb2, schema_pb2

from vectorload.storage.api import DYNAMIC_FIELD, CollectionSchema, FieldSchema
from vectorload.wire.hits import HitColumns
from vectorload.wire.querynode import Hit

from .catalog import CollectionInfo

START_OF_USER_FIELD_ID = 100

DATA_TYPES = {
    "int64": schema_pb2.Int64,
    "float": schema_pb2.Float,
    "bool": schema_pb2.Bool,
    "varchar": schema_pb2.VarChar,
    "float_vector": schema_pb2.FloatVector,
}
DATA_TYPE_NAMES = {
    "int64": "Int64",
    "float": "Float",
    "bool": "Bool",
    "varchar": "VarChar",
    "float_vector": "FloatVector",
}
METRIC_NAMES = {"l2": "L2", "ip": "IP", "cosine": "COSINE"}


def field_id(schema: CollectionSchema, name: str) -> int:
    for i, f in enumerate(schema.fields):
        if f.name == name:
            return START_OF_USER_FIELD_ID + i
    return START_OF_USER_FIELD_ID + len(schema.fields)  # $meta


def type_params(f: FieldSchema) -> list[common_pb2.KeyValuePair]:
    params = []
    if f.dim is not None:
        params.append(common_pb2.KeyValuePair(key="dim", value=str(f.dim)))
    if f.max_length is not None:
        params.append(common_pb2.KeyValuePair(key="max_length", value=str(f.max_length)))
    return params


def field_proto(schema: CollectionSchema, f: FieldSchema, auto_id: bool = False) -> schema_pb2.FieldSchema:
    return schema_pb2.FieldSchema(
        fieldID=field_id(schema, f.name),
        name=f.name,
        is_primary_key=f.is_primary,
        data_type=DATA_TYPES[f.type],
        type_params=type_params(f),
        autoID=auto_id and f.is_primary,
    )


def schema_proto(info: CollectionInfo, database: str) -> schema_pb2.CollectionSchema:
    schema = info.schema
    return schema_pb2.CollectionSchema(
        name=info.name,
        description=schema.description,
        autoID=info.auto_id,
        fields=[field_proto(schema, f, info.auto_id) for f in schema.fields],
        enable_dynamic_field=schema.dynamic_field,
        dbName=database,
    )


def hybrid_ts(ns: int) -> int:
    """A Milvus hybrid timestamp (physical milliseconds << 18) from nanoseconds."""
    return (max(ns, 0) // 1_000_000) << 18


def score(distance: float, metric: str | None) -> float:
    """The Milvus score of a querynode distance (see the module docstring)."""
    if metric in ("ip", "cosine"):
        return 1.0 - distance
    return distance


def _rounded(value: float, round_decimal: int) -> float:
    if not math.isfinite(value):
        return value
    return round(value, round_decimal) if round_decimal >= 0 else value


# ------------------------------------------------------------------------------ field columns


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def column(schema: CollectionSchema, name: str, values: Sequence[Any]) -> schema_pb2.FieldData:
    """One schema field's values as a FieldData column."""
    f = schema.field(name)
    if f is None:
        raise KeyError(name)
    data = schema_pb2.FieldData(type=DATA_TYPES[f.type], field_name=name, field_id=field_id(schema, name))
    if f.type == "int64":
        data.scalars.long_data.data.extend(int(v) for v in values)
    elif f.type == "float":
        data.scalars.float_data.data.extend(float(v) for v in values)
    elif f.type == "bool":
        data.scalars.bool_data.data.extend(bool(v) for v in values)
    elif f.type == "varchar":
        data.scalars.string_data.data.extend(str(v) for v in values)
    else:
        data.vectors.dim = int(f.dim or 0)
        flat = data.vectors.float_vector.data
        for vector in values:
            flat.extend(float(x) for x in vector)
    return data


def meta_column(schema: CollectionSchema, rows: Sequence[Mapping[str, Any]]) -> schema_pb2.FieldData:
    """The dynamic field `$meta` as a JSON column (one JSON object per row)."""
    data = schema_pb2.FieldData(
        type=schema_pb2.JSON,
        field_name=DYNAMIC_FIELD,
        field_id=field_id(schema, DYNAMIC_FIELD),
        is_dynamic=True,
    )
    data.scalars.json_data.data.extend(_json_bytes(dict(row)) for row in rows)
    return data


def output_columns(
    schema: CollectionSchema, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> list[schema_pb2.FieldData]:
    """Columns for `names` (schema fields, `$meta`, dynamic keys) over `rows` (field → value)."""
    out: list[schema_pb2.FieldData] = []
    dynamic_keys = [n for n in names if n != DYNAMIC_FIELD and schema.field(n) is None]
    whole_meta = DYNAMIC_FIELD in names
    for name in names:
        if schema.field(name) is not None:
            out.append(column(schema, name, [row.get(name) for row in rows]))
    if whole_meta or dynamic_keys:
        metas: list[dict[str, Any]] = []
        for row in rows:
            meta = dict(row.get(DYNAMIC_FIELD) or {}) if whole_meta else {}
            for key in dynamic_keys:
                if row.get(key) is not None:
                    meta[key] = row[key]
            metas.append(meta)
        out.append(meta_column(schema, metas))
    return out


def ids_proto(pk: FieldSchema, values: Iterable[int | str]) -> schema_pb2.IDs:
    if pk.type == "int64":
        return schema_pb2.IDs(int_id=schema_pb2.LongArray(data=[int(v) for v in values]))
    return schema_pb2.IDs(str_id=schema_pb2.StringArray(data=[str(v) for v in values]))


# ------------------------------------------------------------------------------ search, query


def search_result(
    schema: CollectionSchema,
    results: Sequence[Sequence[Hit]],
    top_k: int,
    output_fields: Sequence[str],
    metric: str | None,
    round_decimal: int = -1,
    offset: int = 0,
) -> schema_pb2.SearchResultData:
    """`SearchResults.results` for per-query hit lists (closest first). The reference for
    `search_result_columns` (same message, built hit by hit)."""
    pk = schema.primary_key
    hits = [h for per_query in results for h in per_query[offset : offset + top_k]]
    topks = [len(per_query[offset : offset + top_k]) for per_query in results]
    # the querynode answers the primary key as the hit's id, not among its fields
    rows = [{**h.fields, pk.name: h.id} for h in hits]
    return schema_pb2.SearchResultData(
        num_queries=len(results),
        top_k=top_k,
        fields_data=output_columns(schema, output_fields, rows),
        scores=[_rounded(score(h.distance, metric), round_decimal) for h in hits],
        ids=ids_proto(pk, (h.id for h in hits)),
        topks=topks,
        output_fields=list(output_fields),
        primary_field_name=pk.name,
    )


def _window(counts: npt.NDArray[np.int64], top_k: int, offset: int) -> tuple[npt.NDArray[np.int64], Any]:
    """Per query the hits `offset : offset + top_k` of its `counts[q]`: how many (`topks`) and
    their indices into the flat hit arrays (a slice when that is every hit)."""
    topks = np.minimum(np.maximum(counts - offset, 0), top_k)  # ufuncs: np.clip's wrapper costs more
    if offset == 0 and int(counts.max(initial=0)) <= top_k:
        return topks, slice(None)
    starts = np.cumsum(counts) - counts + offset  # the first kept hit of each query
    kept_before = np.cumsum(topks) - topks
    total = int(topks.sum())
    index = np.repeat(starts - kept_before, topks) + np.arange(total, dtype=np.int64)
    return topks, index


def search_result_columns(
    schema: CollectionSchema,
    columns: HitColumns,
    top_k: int,
    output_fields: Sequence[str],
    metric: str | None,
    round_decimal: int = -1,
    offset: int = 0,
) -> schema_pb2.SearchResultData:
    """`search_result` from the columns of a merged answer: ids, scores and topks go into the
    repeated fields in bulk (one `tolist()` each, no per-hit Python object); rows of field values
    are built only when output fields are asked. The message is the one `search_result` builds
    from the same hits as `Hit` lists (scores computed in float64 from the float32 distances,
    as `Hit.distance` holds them)."""
    pk = schema.primary_key
    topks, index = _window(columns.counts, top_k, offset)
    ids = columns.ids[index]
    distances = columns.distances[index].astype(np.float64)
    if metric in ("ip", "cosine"):
        distances = 1.0 - distances
    scores: list[float] = distances.tolist()
    if round_decimal >= 0:
        scores = [_rounded(v, round_decimal) for v in scores]
    id_values: list[Any] = ids.tolist()
    if pk.type == "int64":
        ints = id_values if ids.dtype == np.int64 else [int(v) for v in id_values]
        ids_ = schema_pb2.IDs(int_id=schema_pb2.LongArray(data=ints))
    else:
        texts = id_values if ids.dtype == object and all(type(v) is str for v in id_values) else None
        ids_ = schema_pb2.IDs(str_id=schema_pb2.StringArray(data=texts or [str(v) for v in id_values]))
    fields_data: list[schema_pb2.FieldData] = []
    if output_fields:
        fields = columns.fields
        if fields:
            positions = range(len(columns.ids))[index] if isinstance(index, slice) else index.tolist()
            rows = [{**fields[i], pk.name: v} for i, v in zip(positions, id_values, strict=True)]
        else:
            rows = [{pk.name: v} for v in id_values]
        fields_data = output_columns(schema, output_fields, rows)
    return schema_pb2.SearchResultData(
        num_queries=columns.nq,
        top_k=top_k,
        fields_data=fields_data,
        scores=scores,
        ids=ids_,
        topks=topks.tolist(),
        output_fields=list(output_fields),
        primary_field_name=pk.name,
    )


def query_columns(
    schema: CollectionSchema, output_fields: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> list[schema_pb2.FieldData]:
    """`QueryResults.fields_data`: the primary key column, then the output columns."""
    pk = schema.primary_key.name
    names = [pk, *(n for n in output_fields if n != pk)]
    return output_columns(schema, names, rows)
