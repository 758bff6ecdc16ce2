"""Ingest `.npy` vectors + JSONL rows into sealed segments of a collection."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from vectorload.progress import ProgressBar
from vectorload.storage.api import (
    DEFAULT_PARTITION,
    CollectionSchema,
    SegmentManifest,
    StorageError,
)
from vectorload.storage.columns import Column
from vectorload.storage.names import check_name
from vectorload.storage.schema_json import validate_schema
from vectorload.storage.validate import (
    check_index_params,
    dynamic_rows,
    primary_key_column,
    scalar_column,
    vector_column,
)
from vectorload.storage.writer import CollectionWriter, new_segment_id

DEFAULT_SEGMENT_ROWS = 100_000
CHECK_CHUNK = 65_536


def _bad(message: str) -> StorageError:
    return StorageError("InvalidArgument", message)


@dataclass
class _Rows:
    primary_keys: list[Any]
    scalars: dict[str, list[Any]]
    dynamic: list[dict[str, Any]] | None


def load_vectors(schema: CollectionSchema, vectors: Mapping[str, Path]) -> dict[str, npt.NDArray[Any]]:
    """Memory-map each field's `.npy`; check field names, shapes and equal row counts."""
    out: dict[str, npt.NDArray[Any]] = {}
    for name, path in vectors.items():
        f = schema.field(name)
        if f is None or f.type != "float_vector":
            raise _bad(f"field {name!r}: not a float_vector field of collection {schema.name!r}")
        try:
            arr = np.load(Path(path), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _bad(f"field {name!r}: cannot read {path}: {exc}") from exc
        if arr.ndim != 2 or arr.shape[1] != f.dim or arr.dtype.kind not in "iuf":
            raise _bad(
                f"field {name!r}: {path} must hold a (rows, {f.dim}) float array, got {arr.shape} {arr.dtype}"
            )
        out[name] = arr
    for f in schema.vector_fields:
        if f.name not in out:
            raise _bad(f"field {f.name!r}: missing vectors (pass --vector {f.name}=path.npy)")
    counts = {name: arr.shape[0] for name, arr in out.items()}
    if len(set(counts.values())) > 1:
        raise _bad(f"vector files have different row counts: {counts}")
    return out


def read_rows(schema: CollectionSchema, path: Path) -> _Rows:
    """Parse a JSONL rows file into columns; extra keys go to `$meta` (dynamic field)."""
    scalar_names = [f.name for f in schema.scalar_fields]
    rows = _Rows([], {n: [] for n in scalar_names}, [] if schema.dynamic_field else None)
    try:
        with Path(path).open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    _add_row(schema, rows, line, f"{path} line {number}")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(f"rows file {path}: {exc}") from exc
    return rows


def _add_row(schema: CollectionSchema, rows: _Rows, line: str, where: str) -> None:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise _bad(f"{where}: invalid JSON: {exc}") from exc
    if not isinstance(row, dict):
        raise _bad(f"{where}: expected a JSON object")
    pk = schema.primary_key.name
    for name in (pk, *rows.scalars):
        if row.get(name) is None:
            raise _bad(f"{where}: field {name!r} is missing or null")
    rows.primary_keys.append(row.pop(pk))
    for name, column in rows.scalars.items():
        column.append(row.pop(name))
    for name in row:
        if name in {f.name for f in schema.vector_fields}:
            raise _bad(f"{where}: field {name!r} is a vector field; pass it with --vector")
    if rows.dynamic is not None:
        rows.dynamic.append(row)
    elif row:
        raise _bad(
            f"{where}: field {sorted(row)[0]!r} is not in the schema and collection "
            f"{schema.name!r} has no dynamic field"
        )


def ingest(
    root: Path,
    collection: str,
    partition: str = DEFAULT_PARTITION,
    vectors: Mapping[str, Path] | None = None,
    rows_jsonl: Path | None = None,
    segment_rows: int = DEFAULT_SEGMENT_ROWS,
    M: int = 16,
    ef_construction: int = 200,
    progress: bool = True,
    schema: CollectionSchema | None = None,
    num_threads: int = -1,
    stream: TextIO | None = None,
) -> list[SegmentManifest]:
    """Validate everything first, then write segments of at most `segment_rows` rows.

    `schema` creates the collection when it does not exist (and must match when it does). Without
    `rows_jsonl` the collection may have no scalar fields and int64 primary keys are 0..n-1."""
    writer = CollectionWriter(root)
    check_name("collection", collection, reason="InvalidArgument")
    check_name("partition", partition, reason="InvalidArgument")
    if isinstance(segment_rows, bool) or not isinstance(segment_rows, int) or segment_rows < 1:
        raise _bad(f"segment_rows must be a positive integer, got {segment_rows!r}")
    check_index_params(M, ef_construction)
    if schema is not None:
        validate_schema(schema)
        if schema.name != collection:
            raise _bad(f"schema name {schema.name!r} does not match collection {collection!r}")
    schema_given = schema is not None
    if schema is None:
        try:
            schema = writer.schema(collection)
        except StorageError as exc:
            if exc.reason == "CollectionNotFound":
                raise StorageError(
                    "CollectionNotFound",
                    f"collection {collection!r} does not exist; pass a schema to create it",
                ) from exc
            raise
    arrays = load_vectors(schema, vectors or {})
    total = next(iter(arrays.values())).shape[0]
    if total == 0:
        raise _bad("nothing to ingest: the vector files have 0 rows")
    primary_keys, scalars, dynamic = _columns(schema, rows_jsonl, total)
    _check_vectors(schema, arrays, total)
    if schema_given:
        writer.create_collection(schema)
    writer.create_partition(collection, partition)
    base = new_segment_id()
    manifests: list[SegmentManifest] = []
    per_field = 1.0 / len(arrays)
    with contextlib.ExitStack() as stack:
        bar = None
        if progress:
            label = f"ingest {collection}/{partition}"
            bar = stack.enter_context(ProgressBar(total, label=label, unit="rows", stream=stream))
        for number, start in enumerate(range(0, total, segment_rows)):
            stop = min(start + segment_rows, total)
            manifests.append(
                writer.write_segment(
                    collection,
                    partition,
                    f"{base}-{number:05d}",
                    {n: np.asarray(a[start:stop]) for n, a in arrays.items()},
                    primary_keys[start:stop],
                    {n: c[start:stop] for n, c in scalars.items()},
                    None if dynamic is None else dynamic[start:stop],
                    M=M,
                    ef_construction=ef_construction,
                    num_threads=num_threads,
                    on_rows=None if bar is None else _advance(bar, per_field),
                )
            )
    return manifests


def _advance(bar: ProgressBar, per_field: float) -> Callable[[int], None]:
    return lambda n: bar.update(n * per_field)


def _columns(
    schema: CollectionSchema, rows_jsonl: Path | None, total: int
) -> tuple[Column, dict[str, Column], list[dict[str, Any]] | None]:
    """Primary keys, scalar columns and dynamic rows for the whole input, fully validated."""
    if rows_jsonl is None:
        needs = [f.name for f in schema.scalar_fields]
        if needs or schema.primary_key.type != "int64":
            raise _bad(
                f"a rows file is required: collection {schema.name!r} needs values for "
                f"{needs or [schema.primary_key.name]}"
            )
        return np.arange(total, dtype=np.int64), {}, None
    rows = read_rows(schema, rows_jsonl)
    if len(rows.primary_keys) != total:
        raise _bad(f"rows file {rows_jsonl} has {len(rows.primary_keys)} rows, the vector files have {total}")
    keys = primary_key_column(schema.primary_key, rows.primary_keys)
    scalars = {f.name: scalar_column(f, rows.scalars[f.name], total) for f in schema.scalar_fields}
    dynamic_rows(schema, rows.dynamic, total)
    return keys, scalars, rows.dynamic


def _check_vectors(schema: CollectionSchema, arrays: Mapping[str, npt.NDArray[Any]], total: int) -> None:
    for f in schema.vector_fields:
        for start in range(0, total, CHECK_CHUNK):
            stop = min(start + CHECK_CHUNK, total)
            vector_column(f, arrays[f.name][start:stop], stop - start, row_offset=start)
