"""Validation and normalisation of `write_segment` inputs; errors are StorageError('InvalidArgument')
with a message naming the field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import DYNAMIC_FIELD, TS_FIELD, CollectionSchema, FieldSchema, StorageError
from vectorload.storage.columns import Column, encode_json_row

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class SegmentColumns:
    rows: int
    vectors: dict[str, npt.NDArray[np.float32]]
    primary_keys: Column
    scalars: dict[str, Column]
    dynamic: list[bytes] | None  # encoded JSON rows, None when the schema has no dynamic field
    timestamps: npt.NDArray[np.int64] | None = None  # `$ts` per row; None writes no `$ts` file


def _bad(field: str, message: str) -> StorageError:
    return StorageError("InvalidArgument", f"field {field!r}: {message}")


def _check_len(field: str, values: Sequence[Any] | npt.NDArray[Any], rows: int) -> None:
    if len(values) != rows:
        raise _bad(field, f"has {len(values)} rows, expected {rows}")


def _int64_column(field: str, values: object, row_offset: int = 0) -> npt.NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise _bad(field, f"must be a 1-D sequence of int64, got shape {arr.shape}")
    if arr.dtype.kind == "u":
        if arr.size and int(arr.max()) > _INT64_MAX:
            row = int(np.argmax(arr > np.uint64(_INT64_MAX)))
            raise _bad(field, f"row {row_offset + row}: {int(arr[row])} is out of int64 range")
    elif arr.dtype.kind == "O":
        for i, v in enumerate(arr.tolist()):
            if isinstance(v, bool) or not isinstance(v, int):
                raise _bad(field, f"row {row_offset + i}: expected an integer, got {v!r}")
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise _bad(field, f"row {row_offset + i}: {v} is out of int64 range")
    elif arr.dtype.kind != "i" and not (arr.size == 0 and arr.dtype.kind == "f"):
        raise _bad(field, f"expected int64 values, got dtype {arr.dtype}")
    return arr.astype("<i8")


def int64_values(field: str, values: object) -> npt.NDArray[np.int64]:
    """A validated 1-D int64 column (no length or uniqueness rule); errors name `field`."""
    return _int64_column(field, values)


def varchar_values(field: FieldSchema, values: object) -> list[str]:
    """A validated varchar column (maxLength applies; no uniqueness rule)."""
    return _varchar_column(field, values)


def _float_column(field: str, values: object, row_offset: int = 0) -> npt.NDArray[np.float32]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise _bad(field, f"must be a 1-D sequence of floats, got shape {arr.shape}")
    if arr.dtype.kind == "O":
        for i, v in enumerate(arr.tolist()):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise _bad(field, f"row {row_offset + i}: expected a number, got {v!r}")
    elif arr.dtype.kind not in "iuf":
        raise _bad(field, f"expected float values, got dtype {arr.dtype}")
    out = arr.astype("<f4")
    bad = ~np.isfinite(out)
    if bad.any():
        raise _bad(
            field,
            f"row {row_offset + int(np.argmax(bad))}: value is not finite (NaN/inf or out of float32 range)",
        )
    return out


def _bool_column(field: str, values: object, row_offset: int = 0) -> npt.NDArray[np.bool_]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise _bad(field, f"must be a 1-D sequence of booleans, got shape {arr.shape}")
    if arr.dtype.kind == "O":
        for i, v in enumerate(arr.tolist()):
            if not isinstance(v, bool):
                raise _bad(field, f"row {row_offset + i}: expected a boolean, got {v!r}")
    elif arr.dtype.kind != "b" and arr.size:
        raise _bad(field, f"expected booleans, got dtype {arr.dtype}")
    return arr.astype("|b1")


def _varchar_column(field: FieldSchema, values: object, row_offset: int = 0) -> list[str]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise _bad(field.name, "must be a sequence of strings")
    out = list(values)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise _bad(field.name, f"row {row_offset + i}: expected a string, got {v!r}")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _bad(field.name, f"row {row_offset + i}: not valid UTF-8 text: {exc}") from exc
        if field.max_length is not None and len(v) > field.max_length:
            raise _bad(
                field.name, f"row {row_offset + i}: length {len(v)} exceeds maxLength {field.max_length}"
            )
    return out


def scalar_column(field: FieldSchema, values: object, rows: int, row_offset: int = 0) -> Column:
    """A validated column; `row_offset` shifts row numbers in error messages."""
    column: Column
    if field.type == "int64":
        column = _int64_column(field.name, values, row_offset)
    elif field.type == "float":
        column = _float_column(field.name, values, row_offset)
    elif field.type == "bool":
        column = _bool_column(field.name, values, row_offset)
    else:
        column = _varchar_column(field, values, row_offset)
    _check_len(field.name, column, rows)
    return column


def vector_column(
    field: FieldSchema, values: object, rows: int, row_offset: int = 0
) -> npt.NDArray[np.float32]:
    """Float32 copy of a (rows, dim) block; `row_offset` shifts row numbers in error messages."""
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[1] != field.dim:
        raise _bad(field.name, f"expected shape (rows, {field.dim}), got {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise _bad(field.name, f"expected float vectors, got dtype {arr.dtype}")
    _check_len(field.name, arr, rows)
    out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        raise _bad(field.name, f"row {row_offset + int(np.argmin(finite))}: vector has NaN/inf components")
    if field.metric == "cosine":
        zero = ~np.any(out != 0, axis=1)
        if zero.any():
            raise _bad(
                field.name, f"row {row_offset + int(np.argmax(zero))}: zero vector cannot be used with cosine"
            )
    return out


def primary_key_column(field: FieldSchema, values: object, row_offset: int = 0) -> Column:
    keys: Column
    if field.type == "int64":
        keys = _int64_column(field.name, values, row_offset)
        unique, counts = np.unique(keys, return_counts=True)
        if unique.size != keys.size:
            raise _bad(field.name, f"duplicate primary key {int(unique[np.argmax(counts > 1)])}")
    else:
        keys = _varchar_column(field, values, row_offset)
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                raise _bad(field.name, f"duplicate primary key {key!r}")
            seen.add(key)
    return keys


def dynamic_rows(
    schema: CollectionSchema, dynamic: Sequence[object] | None, rows: int, row_offset: int = 0
) -> list[bytes] | None:
    if not schema.dynamic_field:
        if dynamic is not None and any(dynamic):
            raise _bad(DYNAMIC_FIELD, f"collection {schema.name!r} has no dynamic field")
        return None
    if dynamic is None:
        return [b"{}"] * rows
    _check_len(DYNAMIC_FIELD, dynamic, rows)
    names = {f.name for f in schema.fields}
    encoded: list[bytes] = []
    for i, row in enumerate(dynamic):
        if not isinstance(row, dict) or not all(isinstance(k, str) for k in row):
            raise _bad(
                DYNAMIC_FIELD, f"row {row_offset + i}: expected an object with string keys, got {row!r}"
            )
        clash = names.intersection(row)
        if clash:
            raise _bad(DYNAMIC_FIELD, f"row {row_offset + i}: key {sorted(clash)[0]!r} is a schema field")
        try:
            encoded.append(encode_json_row(row))
        except (TypeError, ValueError) as exc:
            raise _bad(DYNAMIC_FIELD, f"row {row_offset + i}: not JSON-serialisable: {exc}") from exc
    return encoded


def timestamp_column(values: object, rows: int, row_offset: int = 0) -> npt.NDArray[np.int64]:
    """Row timestamps (`$ts`): int64 values >= 0, one per row."""
    column = _int64_column(TS_FIELD, values, row_offset)
    _check_len(TS_FIELD, column, rows)
    if column.size and int(column.min()) < 0:
        row = int(np.argmax(column < 0))
        raise _bad(TS_FIELD, f"row {row_offset + row}: timestamp {int(column[row])} is negative")
    return column


def check_index_params(M: int, ef_construction: int) -> None:
    for label, value, low in (("M", M, 2), ("ef_construction", ef_construction, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise StorageError("InvalidArgument", f"{label} must be an integer >= {low}, got {value!r}")


def prepare_segment(
    schema: CollectionSchema,
    vectors: Mapping[str, object],
    primary_keys: object,
    scalars: Mapping[str, object],
    dynamic: Sequence[object] | None,
    timestamps: object | None = None,
) -> SegmentColumns:
    """Validated columns of one segment; `timestamps` (optional) are the rows' `$ts`."""
    pk_field = schema.primary_key
    keys = primary_key_column(pk_field, primary_keys)
    rows = len(keys)
    if rows == 0:
        raise _bad(pk_field.name, "a segment needs at least one row")
    vector_names = {f.name for f in schema.vector_fields}
    scalar_names = {f.name for f in schema.scalar_fields}
    for name in vectors:
        if name not in vector_names:
            raise _bad(str(name), f"not a float_vector field of collection {schema.name!r}")
    for name in scalars:
        if name not in scalar_names:
            raise _bad(str(name), f"not a scalar field of collection {schema.name!r}")
    out_vectors: dict[str, npt.NDArray[np.float32]] = {}
    for f in schema.vector_fields:
        if f.name not in vectors:
            raise _bad(f.name, "missing vector data")
        out_vectors[f.name] = vector_column(f, vectors[f.name], rows)
    out_scalars: dict[str, Column] = {}
    for f in schema.scalar_fields:
        if f.name not in scalars:
            raise _bad(f.name, "missing column data")
        out_scalars[f.name] = scalar_column(f, scalars[f.name], rows)
    ts = None if timestamps is None else timestamp_column(timestamps, rows)
    return SegmentColumns(rows, out_vectors, keys, out_scalars, dynamic_rows(schema, dynamic, rows), ts)
