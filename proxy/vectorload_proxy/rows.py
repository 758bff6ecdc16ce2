"""Rows of an insert or upsert, checked against the schema before anything is logged.

Pure: FieldData columns (gRPC, what pymilvus sends) or row objects (REST v2) become one columnar
`Batch` the write-ahead log records and the sealer writes as a segment — or a `MilvusError` with
Milvus' text for the first problem, and then nothing of the request is written. Every check the
storage writer would make later (dimension, finite floats, types, the int64 range, varchar
lengths, duplicate keys) is made here, so a logged write always seals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import DYNAMIC_FIELD, CollectionSchema, FieldSchema

from .errors import MilvusError, echo, parameter_invalid

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# schema_pb2.DataType values
BOOL, INT8, INT16, INT32, INT64, FLOAT, DOUBLE, VARCHAR, JSON, FLOAT_VECTOR = (
    1,
    2,
    3,
    4,
    5,
    10,
    11,
    21,
    23,
    101,
)
TYPE_OF: dict[str, int] = {
    "int64": INT64,
    "float": FLOAT,
    "bool": BOOL,
    "varchar": VARCHAR,
    "float_vector": FLOAT_VECTOR,
}
TYPE_NAMES = {
    0: "None", 1: "Bool", 2: "Int8", 3: "Int16", 4: "Int32", 5: "Int64", 10: "Float", 11: "Double",
    20: "String", 21: "VarChar", 22: "Array", 23: "JSON", 24: "Geometry", 25: "Text", 26: "Timestamptz",
    100: "BinaryVector", 101: "FloatVector", 102: "Float16Vector", 103: "BFloat16Vector",
    104: "SparseFloatVector", 105: "Int8Vector", 106: "ArrayOfVector", 200: "ArrayOfStruct", 201: "Struct",
}  # fmt: skip
Ids = Callable[[int], list[int]]


@dataclass(frozen=True)
class Batch:
    """Checked rows, columnar: keys, vectors (float32, rows × dim), scalars, `$meta` objects."""

    pks: list[Any]
    vectors: dict[str, npt.NDArray[np.float32]]
    scalars: dict[str, list[Any]]
    dynamic: list[dict[str, Any]] | None

    @property
    def rows(self) -> int:
        return len(self.pks)


def type_name(code: int) -> str:
    return TYPE_NAMES.get(code, str(code))


def _missing(name: str) -> MilvusError:
    return parameter_invalid(
        f"Insert missed an field `{name}` to collection without set nullable==true or set default_value"
    )


def _unexpected(name: str) -> MilvusError:
    return parameter_invalid(
        f"Attempt to insert an unexpected field `{echo(name)}` to collection without enabling dynamic field"
    )


def check_vector(f: FieldSchema, values: npt.NDArray[np.float32]) -> None:
    if not np.isfinite(values).all():
        bad = float(values[~np.isfinite(values)][0])
        text = "NaN" if math.isnan(bad) else ("+Inf" if bad > 0 else "-Inf")
        raise parameter_invalid(f"value '{text}' is not a number or infinity (field {f.name})")


def _dim_error(f: FieldSchema, got: int) -> MilvusError:
    return MilvusError(
        1100,
        f"the dim ({got}) of field data({f.name}) is not equal to schema dim ({f.dim}): "
        f"invalid parameter[expected={f.dim}][actual={got}]",
    )


def check_scalar(f: FieldSchema, values: list[Any]) -> list[Any]:
    """The column as storage takes it, or 1100 naming the field, the row and the problem."""
    out: list[Any] = []
    for row, v in enumerate(values):
        if f.type == "int64":
            if isinstance(v, bool) or not isinstance(v, int):
                raise parameter_invalid(f"field {f.name}: row {row}: {echo(repr(v))} is not an Int64")
            if not INT64_MIN <= v <= INT64_MAX:
                raise parameter_invalid(f"field {f.name}: row {row}: {v} is out of the Int64 range")
        elif f.type == "float":
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise parameter_invalid(f"field {f.name}: row {row}: {echo(repr(v))} is not a Float")
            v = float(v)
            if not math.isfinite(v) or abs(v) > float(np.finfo(np.float32).max):
                raise parameter_invalid(
                    f"value '{v}' is not a number or infinity (field {f.name}, row {row})"
                )
        elif f.type == "bool":
            if not isinstance(v, bool):
                raise parameter_invalid(f"field {f.name}: row {row}: {echo(repr(v))} is not a Bool")
        elif f.type == "varchar":
            if not isinstance(v, str):
                raise parameter_invalid(f"field {f.name}: row {row}: {echo(repr(v))} is not a VarChar")
            length = len(v.encode("utf-8"))
            if f.max_length is not None and length > f.max_length:
                raise parameter_invalid(
                    f"length of varchar field {f.name} exceeds max length, row number: {row}, "
                    f"length: {length}, max length: {f.max_length}"
                )
        out.append(v)
    return out


def _unique(f: FieldSchema, pks: list[Any]) -> None:
    if len(set(pks)) != len(pks):
        raise parameter_invalid("duplicate primary keys are not allowed in the same batch")


def _dynamic(values: list[Any]) -> list[dict[str, Any]]:
    out = []
    for row, v in enumerate(values):
        if not isinstance(v, dict):
            raise parameter_invalid(f"dynamic field {DYNAMIC_FIELD}: row {row} is not a JSON object")
        out.append(v)
    return out


def _generated(schema: CollectionSchema, auto_id: bool, n: int, ids: Ids) -> list[Any]:
    pk = schema.primary_key
    if pk.type != "int64":
        raise parameter_invalid(f"auto_id needs an Int64 primary key; {pk.name} is VarChar")
    return ids(n)


# ------------------------------------------------------------------------------ gRPC FieldData


def _field_values(fd: Any, f: FieldSchema) -> list[Any] | npt.NDArray[np.float32]:
    expected = TYPE_OF[f.type]
    got = int(fd.type)
    if f.type == "float_vector":
        if got != FLOAT_VECTOR:
            raise parameter_invalid(f"field {f.name}: expected FloatVector data, got {type_name(got)}")
        dim = int(fd.vectors.dim)
        data = np.asarray(fd.vectors.float_vector.data, dtype=np.float32)
        if dim != f.dim or dim <= 0 or len(data) % dim:
            raise _dim_error(f, dim)
        return data.reshape(-1, dim)
    if (
        got != expected
        and not (f.type == "int64" and got in (INT8, INT16, INT32))
        and not (f.type == "float" and got == DOUBLE)
    ):
        raise parameter_invalid(f"field {f.name}: expected {type_name(expected)} data, got {type_name(got)}")
    s = fd.scalars
    if f.type == "int64":
        return list(s.long_data.data) if got == INT64 else list(s.int_data.data)
    if f.type == "float":
        return list(s.float_data.data) if got == FLOAT else list(s.double_data.data)
    if f.type == "bool":
        return list(s.bool_data.data)
    return list(s.string_data.data)


def batch_from_field_data(
    schema: CollectionSchema, auto_id: bool, fields_data: Sequence[Any], num_rows: int, ids: Ids, upsert: bool
) -> Batch:
    by_name: dict[str, Any] = {}
    dynamic_column: list[Any] | None = None
    for fd in fields_data:
        name = str(fd.field_name)
        if fd.is_dynamic or name == DYNAMIC_FIELD:
            if not schema.dynamic_field:
                raise _unexpected(name)
            if int(fd.type) != JSON:
                raise parameter_invalid(f"dynamic field {DYNAMIC_FIELD} must be JSON data")
            try:
                dynamic_column = [json.loads(b) for b in fd.scalars.json_data.data]
            except ValueError as exc:
                raise parameter_invalid(f"dynamic field {DYNAMIC_FIELD}: not JSON: {echo(exc)}") from None
            continue
        f = schema.field(name)
        if f is None:
            if schema.dynamic_field:
                raise parameter_invalid(
                    f"field {echo(name)} is not in the schema: dynamic keys travel in {DYNAMIC_FIELD}"
                )
            raise _unexpected(name)
        if name in by_name:
            raise parameter_invalid(f"field {name} is given twice")
        by_name[name] = fd
    columns: dict[str, Any] = {}
    for f in schema.fields:
        if f.is_primary and auto_id:
            if f.name in by_name and not upsert:
                raise parameter_invalid(f"can not assign primary field data when auto id enabled {f.name}")
            if f.name not in by_name:
                continue
        if f.name not in by_name:
            raise _missing(f.name)
        columns[f.name] = _field_values(by_name[f.name], f)
    counts = {name: len(v) for name, v in columns.items()}
    if dynamic_column is not None:
        counts[DYNAMIC_FIELD] = len(dynamic_column)
    n = num_rows or (max(counts.values()) if counts else 0)
    for name, count in counts.items():
        if count != n:
            raise parameter_invalid(
                f"the num_rows ({count}) of field ({name}) is not equal to passed num_rows ({n})"
            )
    if n == 0:
        raise parameter_invalid("no rows to insert")
    return _finish(schema, auto_id, columns, dynamic_column, n, ids)


def _finish(
    schema: CollectionSchema,
    auto_id: bool,
    columns: dict[str, Any],
    dynamic_column: list[Any] | None,
    n: int,
    ids: Ids,
) -> Batch:
    pk = schema.primary_key
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    scalars: dict[str, list[Any]] = {}
    for f in schema.fields:
        if f.is_primary:
            continue
        if f.type == "float_vector":
            values = np.asarray(columns[f.name], dtype=np.float32)
            check_vector(f, values)
            vectors[f.name] = values
        else:
            scalars[f.name] = check_scalar(f, list(columns[f.name]))
    if pk.name in columns:
        pks = check_scalar(pk, list(columns[pk.name]))
        if pk.type == "varchar" and any(not k for k in pks):
            raise parameter_invalid(f"primary key {pk.name} must not be empty")
    else:
        pks = _generated(schema, auto_id, n, ids)
    _unique(pk, pks)
    dynamic = _dynamic(dynamic_column) if dynamic_column is not None else None
    if dynamic is not None:
        for row in dynamic:
            for key in row:
                if schema.field(key) is not None:
                    raise parameter_invalid(f"dynamic key {echo(key)} is a field of the schema")
    return Batch(pks, vectors, scalars, dynamic if schema.dynamic_field else None)


# ---------------------------------------------------------------------------- REST row objects


def batch_from_rows(
    schema: CollectionSchema, auto_id: bool, rows: Sequence[Any], ids: Ids, upsert: bool
) -> Batch:
    if not rows:
        raise parameter_invalid("no rows to insert")
    pk = schema.primary_key
    columns: dict[str, list[Any]] = {f.name: [] for f in schema.fields}
    dynamic: list[Any] | None = [] if schema.dynamic_field else None
    give_pk = not auto_id or upsert
    for row in rows:
        if not isinstance(row, Mapping):
            raise parameter_invalid("each row of data must be a JSON object")
        extra: dict[str, Any] = {}
        for key, value in row.items():
            f = schema.field(key)
            if f is None:
                if not schema.dynamic_field:
                    raise _unexpected(key)
                extra[key] = value
            elif f.is_primary and auto_id and not upsert:
                raise parameter_invalid(f"can not assign primary field data when auto id enabled {f.name}")
        for f in schema.fields:
            if f.is_primary and not give_pk:
                continue
            if f.name not in row:
                raise _missing(f.name)
            value = row[f.name]
            if f.type == "float_vector":
                if not isinstance(value, list) or not all(
                    isinstance(x, int | float) and not isinstance(x, bool) for x in value
                ):
                    raise parameter_invalid(f"field {f.name}: a vector must be a list of numbers")
                if len(value) != f.dim:
                    raise _dim_error(f, len(value))
            columns[f.name].append(value)
        if dynamic is not None:
            dynamic.append(extra)
    if not give_pk or (auto_id and upsert and not columns[pk.name]):
        del columns[pk.name]
    for f in schema.vector_fields:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused by name below
            columns[f.name] = np.asarray(columns[f.name], dtype=np.float64).astype(np.float32)  # type: ignore[assignment]
    return _finish(schema, auto_id, dict(columns), dynamic, len(rows), ids)


# --------------------------------------------------------------------- Arrow record batches


def arrow_fields_only(schema: CollectionSchema, names: Sequence[str]) -> bool:
    """Whether a record batch with columns `names` can be taken as columns: every column is a
    field of the schema (no dynamic keys, no `$meta` to spread into rows)."""
    return all(schema.field(n) is not None for n in names)


def batch_from_arrow(schema: CollectionSchema, auto_id: bool, record_batch: Any, ids: Ids) -> Batch:
    """`batch_from_rows` for a Parquet record batch whose columns are all fields
    (`arrow_fields_only`), with the same checks and texts, without a Python object per vector
    value: a vector column goes from Arrow's buffers into numpy."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = int(record_batch.num_rows)
    if n == 0:
        raise parameter_invalid("no rows to insert")
    names = list(record_batch.schema.names)
    if len(set(names)) != len(names):
        raise parameter_invalid(f"a column is given twice: {echo(', '.join(names))}")
    pk = schema.primary_key
    columns: dict[str, Any] = {}
    for f in schema.fields:
        if f.name not in names:
            if f.is_primary and auto_id:
                continue
            raise _missing(f.name)
        if f.is_primary and auto_id:
            raise parameter_invalid(f"can not assign primary field data when auto id enabled {f.name}")
        column = record_batch.column(names.index(f.name))
        if f.type != "float_vector":
            columns[f.name] = column.to_pylist()
            continue
        if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)) and not (
            pa.types.is_fixed_size_list(column.type)
        ):
            raise parameter_invalid(f"field {f.name}: a vector must be a list of numbers")
        values = column.flatten()
        value_type = values.type
        numeric = pa.types.is_floating(value_type) or pa.types.is_integer(value_type)
        if column.null_count or values.null_count or not numeric:
            raise parameter_invalid(f"field {f.name}: a vector must be a list of numbers")
        lengths = np.asarray(pc.list_value_length(column))
        if lengths.size and (lengths != f.dim).any():
            raise _dim_error(f, int(lengths[lengths != f.dim][0]))
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused by name in _finish
            flat = values.to_numpy(zero_copy_only=False).astype(np.float64).astype(np.float32)
        columns[f.name] = flat.reshape(n, int(f.dim or 0))
    dynamic: list[Any] | None = [{} for _ in range(n)] if schema.dynamic_field else None
    if pk.name not in columns and not auto_id:
        raise _missing(pk.name)
    return _finish(schema, auto_id, columns, dynamic, n, ids)


# ---------------------------------------------------------------------- segment columns


@dataclass(frozen=True)
class SegmentRows:
    """A segment's columns as the storage writer takes them: one row per key."""

    primary_keys: Any  # int64 numpy array, or a list of str
    vectors: dict[str, npt.NDArray[np.float32]]
    scalars: dict[str, list[Any]]
    dynamic: list[Any] | None
    timestamps: npt.NDArray[np.int64]


def newest_rows(schema: CollectionSchema, parts: Sequence[tuple[Batch, int]]) -> SegmentRows:
    """Batches (each with its timestamp, in order) as one segment: the newest row of each key only
    — a segment's keys are unique, and a key's later row replaces its earlier one, as a later
    write does. The sealer (log records) and bulk import (file chunks) both build segments so."""
    pks = [k for b, _ in parts for k in b.pks]
    newest = {k: i for i, k in enumerate(pks)}
    keep = np.fromiter(sorted(newest.values()), dtype=np.int64, count=len(newest))
    rows = keep.tolist()
    kept = [pks[i] for i in rows]
    dynamic = None
    if schema.dynamic_field:
        metas = [d for b, _ in parts for d in (b.dynamic or [{}] * b.rows)]
        dynamic = [metas[i] for i in rows]
    scalars = {}
    for f in schema.scalar_fields:
        column = [v for b, _ in parts for v in b.scalars[f.name]]
        scalars[f.name] = [column[i] for i in rows]
    return SegmentRows(
        primary_keys=np.asarray(kept, dtype=np.int64) if schema.primary_key.type == "int64" else kept,
        vectors={
            f.name: np.concatenate([b.vectors[f.name] for b, _ in parts])[keep] for f in schema.vector_fields
        },
        scalars=scalars,
        dynamic=dynamic,
        timestamps=np.concatenate([np.full(b.rows, t, dtype=np.int64) for b, t in parts])[keep],
    )
