"""Parquet input for `vectorload ingest`: schema check up front, then row groups streamed.

Users already hold their data as Parquet (pandas, Spark, Milvus' own bulk-import format), so
ingest reads it directly instead of asking for `.npy` + JSONL. A file is read one row group at a
time, in batches of at most `BATCH_ROWS` rows, so memory holds one batch plus the segment being
built, whatever the file size. Every column is checked against the collection schema from the
file footer before any data is read; data errors name the file, the row group, the column and
the row within the row group. pyarrow is imported here only (the `parquet` extra).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import DYNAMIC_FIELD, CollectionSchema, FieldSchema, StorageError
from vectorload.storage.columns import Column, encode_json_row
from vectorload.storage.validate import dynamic_rows, primary_key_column, scalar_column, vector_column

BATCH_ROWS = 65_536


def _bad(message: str) -> StorageError:
    return StorageError("InvalidArgument", message)


def _pyarrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise StorageError(
            "MissingDependency", "reading Parquet needs pyarrow: pip install 'vectorload[parquet]'"
        ) from exc
    return pa, pc, pq


@dataclass(frozen=True)
class Batch:
    """Validated columns of consecutive rows of one row group."""

    where: str  # "<file> row group <g>"
    first_row: int  # of the row group, within the row group
    vectors: dict[str, npt.NDArray[np.float32]]
    primary_keys: Column
    scalars: dict[str, Column]
    dynamic: list[bytes] | None

    @property
    def rows(self) -> int:
        return len(self.primary_keys)


def _json_type(pa: Any, t: Any) -> bool:
    """Whether values of Arrow type `t` become JSON values through `to_pylist`."""
    types = pa.types
    if types.is_null(t) or types.is_boolean(t) or types.is_integer(t) or types.is_floating(t):
        return True
    if types.is_string(t) or types.is_large_string(t) or _is_string_view(pa, t):
        return True
    if types.is_list(t) or types.is_large_list(t) or types.is_fixed_size_list(t):
        return _json_type(pa, t.value_type)
    if types.is_struct(t):
        return all(_json_type(pa, t.field(i).type) for i in range(t.num_fields))
    return False


def _is_string_view(pa: Any, t: Any) -> bool:
    check = getattr(pa.types, "is_string_view", None)
    return bool(check(t)) if check is not None else False


def _is_text(pa: Any, t: Any) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(pa, t))


def _type_error(pa: Any, f: FieldSchema, t: Any) -> str | None:
    """Why a column of Arrow type `t` cannot hold field `f` (None when it can)."""
    types = pa.types
    if f.type == "float_vector":
        if not (types.is_fixed_size_list(t) or types.is_list(t) or types.is_large_list(t)):
            return f"expected a list of float (dim {f.dim}), got {t}"
        if not types.is_floating(t.value_type):
            return f"expected a list of float (dim {f.dim}), got a list of {t.value_type}"
        if types.is_fixed_size_list(t) and t.list_size != f.dim:
            return f"expected {f.dim} values per vector, the column has fixed size {t.list_size}"
        return None
    ok = {
        "int64": types.is_integer(t),
        "float": types.is_floating(t) or types.is_integer(t),
        "bool": types.is_boolean(t),
        "varchar": _is_text(pa, t),
    }[f.type]
    return None if ok else f"expected {f.type} values, got {t}"


class ParquetInput:
    """One or more Parquet files whose columns match `schema` (checked on construction)."""

    def __init__(self, schema: CollectionSchema, paths: Sequence[Path]) -> None:
        self._pa, self._pc, pq = _pyarrow()
        if not paths:
            raise _bad("no Parquet files given")
        self.schema = schema
        self.paths = [Path(p) for p in paths]
        self._files: list[Any] = []
        self._extra: list[list[str]] = []  # per file: columns that go to $meta
        for path in self.paths:
            try:
                pf = pq.ParquetFile(path)
            except (OSError, self._pa.ArrowException) as exc:
                raise _bad(f"{path}: cannot read as Parquet: {exc}") from exc
            self._extra.append(self._check_columns(path, pf.schema_arrow))
            self._files.append(pf)
        self.total_rows = sum(int(pf.metadata.num_rows) for pf in self._files)

    def _check_columns(self, path: Path, arrow_schema: Any) -> list[str]:
        pa, schema = self._pa, self.schema
        names = list(arrow_schema.names)
        for name in names:
            if names.count(name) > 1:
                raise _bad(f"{path}: column {name!r} appears more than once")
        for f in schema.fields:
            if f.name not in names:
                raise _bad(
                    f"{path}: column {f.name!r} is missing "
                    f"(field {f.name!r}: {f.type} of collection {schema.name!r})"
                )
            problem = _type_error(pa, f, arrow_schema.field(f.name).type)
            if problem is not None:
                raise _bad(f"{path}: column {f.name!r}: {problem}")
        extra = [n for n in names if schema.field(n) is None]
        for name in extra:
            t = arrow_schema.field(name).type
            if not schema.dynamic_field:
                raise _bad(
                    f"{path}: column {name!r} is not a field of collection {schema.name!r}, "
                    "which has no dynamic field"
                )
            if name == DYNAMIC_FIELD and not _is_text(pa, t):
                raise _bad(f"{path}: column {name!r} must hold JSON objects as strings, got {t}")
            if name != DYNAMIC_FIELD and not _json_type(pa, t):
                raise _bad(
                    f"{path}: column {name!r} has type {t}, which {DYNAMIC_FIELD} (JSON) cannot hold: "
                    "use numbers, strings, booleans, lists or structs"
                )
        return extra

    def batches(self) -> Iterator[Batch]:
        """Validated batches in file order; a file is read one row group at a time."""
        columns = [f.name for f in self.schema.fields]
        for path, pf, extra in zip(self.paths, self._files, self._extra, strict=True):
            for group in range(pf.num_row_groups):
                where = f"{path} row group {group}"
                first = 0
                try:
                    batches = pf.iter_batches(
                        batch_size=BATCH_ROWS, row_groups=[group], columns=columns + extra, use_threads=False
                    )
                    for record_batch in batches:
                        yield self._convert(where, first, record_batch, extra)
                        first += record_batch.num_rows
                except (OSError, self._pa.ArrowException) as exc:
                    raise _bad(f"{where}: cannot read: {exc}") from exc

    def _convert(self, where: str, first: int, rb: Any, extra: list[str]) -> Batch:
        n = rb.num_rows
        schema = self.schema

        def fail(column: str, message: str) -> StorageError:
            return _bad(f"{where}: column {column!r}: {message}")

        def column(name: str) -> Any:
            arr = rb.column(name)
            if arr.null_count:
                row = first + int(np.argmax(self._pc.is_null(arr).to_numpy(zero_copy_only=False)))
                raise fail(name, f"row {row} is null")
            return arr

        try:
            vectors = {f.name: self._vectors(f, column(f.name), n, first, fail) for f in schema.vector_fields}
            pk = schema.primary_key
            keys = primary_key_column(pk, self._scalar_values(pk, column(pk.name)), row_offset=first)
            scalars = {
                f.name: scalar_column(f, self._scalar_values(f, column(f.name)), n, row_offset=first)
                for f in schema.scalar_fields
            }
            dynamic = self._dynamic(rb, extra, n, first, fail) if schema.dynamic_field else None
        except StorageError as exc:
            if exc.reason != "InvalidArgument" or exc.message.startswith(where):
                raise
            message = exc.message  # validate's "field 'x': ..." is the column of that name here
            raise _bad(f"{where}: column {message.removeprefix('field ')}") from exc
        return Batch(where, first, vectors, keys, scalars, dynamic)

    def _vectors(self, f: FieldSchema, arr: Any, n: int, first: int, fail: Any) -> npt.NDArray[np.float32]:
        pa, pc = self._pa, self._pc
        dim = f.dim or 0
        if not pa.types.is_fixed_size_list(arr.type):
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            wrong = lengths != dim
            if wrong.any():
                row = int(np.argmax(wrong))
                raise fail(
                    f.name, f"row {first + row}: vector has {int(lengths[row])} values, expected {dim}"
                )
        values = arr.flatten()
        if values.null_count:
            flat = int(np.argmax(pc.is_null(values).to_numpy(zero_copy_only=False)))
            raise fail(f.name, f"row {first + flat // max(dim, 1)}: vector has a null component")
        flat_values = values.to_numpy(zero_copy_only=False)
        return vector_column(f, flat_values.reshape(n, dim), n, row_offset=first)

    def _scalar_values(self, f: FieldSchema, arr: Any) -> Any:
        if f.type == "varchar":
            return arr.to_pylist()
        return arr.to_numpy(zero_copy_only=False)

    def _dynamic(self, rb: Any, extra: list[str], n: int, first: int, fail: Any) -> list[bytes] | None:
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        if DYNAMIC_FIELD in extra:
            for i, text in enumerate(rb.column(DYNAMIC_FIELD).to_pylist()):
                if text is None:
                    continue
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    raise fail(DYNAMIC_FIELD, f"row {first + i}: invalid JSON: {exc}") from exc
                if not isinstance(value, dict):
                    raise fail(DYNAMIC_FIELD, f"row {first + i}: expected a JSON object, got {text[:40]!r}")
                rows[i] = value
        for name in extra:
            if name == DYNAMIC_FIELD:
                continue
            for i, value in enumerate(rb.column(name).to_pylist()):
                if value is None:
                    continue  # a null is an absent key
                if name in rows[i]:
                    raise fail(name, f"row {first + i}: key {name!r} is also in the {DYNAMIC_FIELD} column")
                rows[i][name] = value
        try:
            return dynamic_rows(self.schema, rows, n, row_offset=first)
        except StorageError as exc:
            for i, row in enumerate(rows):  # name the column whose value JSON cannot hold
                for key, value in row.items():
                    try:
                        encode_json_row({key: value})
                    except (TypeError, ValueError) as bad:
                        column = key if key in extra else DYNAMIC_FIELD
                        raise fail(column, f"row {first + i}: {value!r} is not a JSON value: {bad}") from exc
            raise
