"""Ingest `.npy` vectors + JSONL rows, or Parquet files, into sealed segments of a collection.

Nothing of a failed ingest becomes visible: every segment is built in staging
(`CollectionWriter.stage_columns`), and only once the whole input has been read and validated —
row-level errors, primary keys unique over the input — are the collection and partition created
and the segments published, one `rename(2)` each. A Parquet input is streamed row group by row
group, so bad data deep in a large file is found after some index building, never after some
segments were published. Segment sizes come from `vectorload.storage.segsize`.
"""

from __future__ import annotations

import bisect
import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
from vectorload.storage.parquet import Batch, ParquetInput
from vectorload.storage.schema_json import schema_to_dict, validate_schema
from vectorload.storage.segsize import SegmentSize, default_segment_rows, estimate_row_bytes
from vectorload.storage.validate import (
    SegmentColumns,
    check_index_params,
    dynamic_rows,
    primary_key_column,
    scalar_column,
    vector_column,
)
from vectorload.storage.writer import STAGING_DIR, CollectionWriter, StagedSegment, new_segment_id

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
    segment_rows: int | None = None,
    M: int = 16,
    ef_construction: int = 200,
    progress: bool = True,
    schema: CollectionSchema | None = None,
    num_threads: int = -1,
    stream: TextIO | None = None,
    segment_bytes: int | None = None,
    parquet: Sequence[Path] | None = None,
) -> list[SegmentManifest]:
    """Validate, build every segment in staging, then create and publish.

    Input: `vectors` (`.npy` per vector field) + `rows_jsonl`, or `parquet` files. `schema` creates
    the collection when it does not exist (and must match when it does). Without `rows_jsonl` the
    collection may have no scalar fields and int64 primary keys are 0..n-1. Segments hold at most
    `segment_rows` rows / about `segment_bytes` bytes of files, else the default of
    `segsize.SegmentSize`."""
    writer = CollectionWriter(root)
    check_name("collection", collection, reason="InvalidArgument")
    check_name("partition", partition, reason="InvalidArgument")
    size = SegmentSize(segment_rows, segment_bytes)
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
    build = _Build(writer, schema, collection, partition, size, M, ef_construction, num_threads)
    if parquet is not None:
        if vectors or rows_jsonl is not None:
            raise _bad("pass Parquet files or .npy vectors with a rows file, not both")
        source = ParquetInput(schema, parquet)
        if source.total_rows == 0:
            raise _bad(f"nothing to ingest: the Parquet files have 0 rows ({', '.join(map(str, parquet))})")
        _check_existing_schema(writer, schema, schema_given)
        total, batches = source.total_rows, source.batches()
    else:
        arrays = load_vectors(schema, vectors or {})
        total = next(iter(arrays.values())).shape[0]
        if total == 0:
            raise _bad("nothing to ingest: the vector files have 0 rows")
        primary_keys, scalars, dynamic = _columns(schema, rows_jsonl, total)
        _check_vectors(schema, arrays, total)
        _check_existing_schema(writer, schema, schema_given)
        batches = _array_batches(schema, arrays, primary_keys, scalars, dynamic, total)
    created_dir = not (Path(root) / collection).exists()
    with contextlib.ExitStack() as stack:
        if progress:
            label = f"ingest {collection}/{partition}"
            bar = stack.enter_context(ProgressBar(total, label=label, unit="rows", stream=stream))
            build.on_rows = _advance(bar, 1.0 / len(schema.vector_fields))
        try:
            for batch in batches:
                build.add(batch, total)
            staged = build.finish()
            if schema_given:
                writer.create_collection(schema)
            writer.create_partition(collection, partition)
            return [writer.publish(s) for s in staged]
        except BaseException:
            build.discard()
            if created_dir:
                _remove_empty(Path(root) / collection)
            raise


def _advance(bar: ProgressBar, per_field: float) -> Callable[[int], None]:
    return lambda n: bar.update(n * per_field)


def _columns(
    schema: CollectionSchema, rows_jsonl: Path | None, total: int
) -> tuple[Column, dict[str, Column], list[bytes] | None]:
    """Primary keys, scalar columns and dynamic rows for the whole input, fully validated."""
    if rows_jsonl is None:
        needs = [f.name for f in schema.scalar_fields]
        if needs or schema.primary_key.type != "int64":
            raise _bad(
                f"a rows file is required: collection {schema.name!r} needs values for "
                f"{needs or [schema.primary_key.name]}"
            )
        return np.arange(total, dtype=np.int64), {}, dynamic_rows(schema, None, total)
    rows = read_rows(schema, rows_jsonl)
    if len(rows.primary_keys) != total:
        raise _bad(f"rows file {rows_jsonl} has {len(rows.primary_keys)} rows, the vector files have {total}")
    keys = primary_key_column(schema.primary_key, rows.primary_keys)
    scalars = {f.name: scalar_column(f, rows.scalars[f.name], total) for f in schema.scalar_fields}
    return keys, scalars, dynamic_rows(schema, rows.dynamic, total)


def _check_vectors(schema: CollectionSchema, arrays: Mapping[str, npt.NDArray[Any]], total: int) -> None:
    for f in schema.vector_fields:
        for start in range(0, total, CHECK_CHUNK):
            stop = min(start + CHECK_CHUNK, total)
            vector_column(f, arrays[f.name][start:stop], stop - start, row_offset=start)


def _check_existing_schema(writer: CollectionWriter, schema: CollectionSchema, given: bool) -> None:
    """Fail before any work if the collection exists with another schema."""
    if not given:
        return
    try:
        existing = writer.schema(schema.name)
    except StorageError as exc:
        if exc.reason == "CollectionNotFound":
            return
        raise
    if existing != schema:
        raise StorageError(
            "SchemaMismatch",
            f"collection {schema.name!r} already exists with a different schema: "
            f"{json.dumps(schema_to_dict(existing), sort_keys=True)}",
        )


def _remove_empty(cdir: Path) -> None:
    """Undo the directories a failed ingest created (only while they are empty)."""
    for path in (cdir / STAGING_DIR, cdir):
        with contextlib.suppress(OSError):
            path.rmdir()


def _array_batches(
    schema: CollectionSchema,
    arrays: Mapping[str, npt.NDArray[Any]],
    primary_keys: Column,
    scalars: Mapping[str, Column],
    dynamic: list[bytes] | None,
    total: int,
) -> Iterator[Batch]:
    """The validated `.npy` + JSONL input as batches of `CHECK_CHUNK` rows."""
    for start in range(0, total, CHECK_CHUNK):
        stop = min(start + CHECK_CHUNK, total)
        yield Batch(
            where=f"rows {start}..{stop - 1}",
            first_row=start,
            vectors={
                f.name: vector_column(f, arrays[f.name][start:stop], stop - start, row_offset=start)
                for f in schema.vector_fields
            },
            primary_keys=primary_keys[start:stop],
            scalars={n: c[start:stop] for n, c in scalars.items()},
            dynamic=None if dynamic is None else dynamic[start:stop],
        )


def _concat(parts: Sequence[Column]) -> Column:
    if isinstance(parts[0], list):
        out: list[str] = []
        for p in parts:
            out += p
        return out
    return np.concatenate(parts)


def _slice(batch: Batch, start: int, stop: int) -> Batch:
    return Batch(
        batch.where,
        batch.first_row + start,
        {n: v[start:stop] for n, v in batch.vectors.items()},
        batch.primary_keys[start:stop],
        {n: c[start:stop] for n, c in batch.scalars.items()},
        None if batch.dynamic is None else batch.dynamic[start:stop],
    )


class _Build:
    """Cuts a stream of validated batches into the planned segments, staging each as it fills,
    and checks primary keys over the whole input."""

    def __init__(
        self,
        writer: CollectionWriter,
        schema: CollectionSchema,
        collection: str,
        partition: str,
        size: SegmentSize,
        M: int,
        ef_construction: int,
        num_threads: int,
    ) -> None:
        self.writer, self.schema = writer, schema
        self.collection, self.partition = collection, partition
        self.size, self.M, self.ef_construction, self.num_threads = size, M, ef_construction, num_threads
        self.on_rows: Callable[[int], None] | None = None
        self.base = new_segment_id()
        self.plan: list[int] | None = None
        self.pending: list[Batch] = []
        self.pending_rows = 0
        self.staged: list[StagedSegment] = []
        self.keys: list[Column] = []  # every batch's primary keys, for the check over the input
        self.wheres: list[tuple[int, str, int]] = []  # (input row of the batch, where, first_row)
        self.seen_text: set[str] = set()
        self.rows_in = 0

    def add(self, batch: Batch, total: int) -> None:
        if self.plan is None:
            self.plan = self.size.plan(
                total, default_segment_rows(self.schema, self.M), self._row_bytes(batch)
            )
        self._check_keys(batch)
        while batch.rows:
            room = self.plan[len(self.staged)] - self.pending_rows
            head, batch = _slice(batch, 0, room), _slice(batch, room, batch.rows)
            self.pending.append(head)
            self.pending_rows += head.rows
            if self.pending_rows == self.plan[len(self.staged)]:
                self._stage()

    def finish(self) -> list[StagedSegment]:
        if self.pending_rows:  # fewer rows arrived than the metadata promised
            raise _bad(f"the input ended after {self.rows_in} rows, fewer than announced")
        self._check_int_keys()
        return self.staged

    def discard(self) -> None:
        for staged in self.staged:
            self.writer.discard(staged)
        self.staged = []

    def _row_bytes(self, batch: Batch) -> float:
        varchar = {n: _mean_utf8(c) for n, c in batch.scalars.items() if isinstance(c, list)}
        if self.schema.primary_key.type == "varchar":
            varchar[self.schema.primary_key.name] = _mean_utf8(batch.primary_keys)
        meta = 2.0 if not batch.dynamic else sum(len(b) + 1 for b in batch.dynamic) / len(batch.dynamic)
        return estimate_row_bytes(self.schema, self.M, varchar, meta)

    def _check_keys(self, batch: Batch) -> None:
        if self.plan is not None and self.rows_in + batch.rows > sum(self.plan):
            raise _bad(f"{batch.where}: the input has more rows than announced ({sum(self.plan)})")
        if isinstance(batch.primary_keys, list):
            pk = self.schema.primary_key.name
            for i, key in enumerate(batch.primary_keys):
                if key in self.seen_text:
                    row = batch.first_row + i
                    raise _bad(f"{batch.where}: column {pk!r}: row {row}: duplicate primary key {key!r}")
                self.seen_text.add(key)
        else:
            self.keys.append(batch.primary_keys)
            self.wheres.append((self.rows_in, batch.where, batch.first_row))
        self.rows_in += batch.rows

    def _check_int_keys(self) -> None:
        if not self.keys:
            return
        keys = np.concatenate(self.keys)
        order = np.argsort(keys, kind="stable")
        same = keys[order[1:]] == keys[order[:-1]]
        if same.any():
            second = int(order[1:][same].min())  # the first row that repeats an earlier key
            k = bisect.bisect_right([w[0] for w in self.wheres], second) - 1
            start, where, first_row = self.wheres[k]
            pk = self.schema.primary_key.name
            raise _bad(
                f"{where}: column {pk!r}: row {first_row + second - start}: "
                f"duplicate primary key {int(keys[second])}"
            )

    def _stage(self) -> None:
        parts, self.pending, self.pending_rows = self.pending, [], 0
        s = self.schema
        columns = SegmentColumns(
            rows=sum(p.rows for p in parts),
            vectors={f.name: np.concatenate([p.vectors[f.name] for p in parts]) for f in s.vector_fields},
            primary_keys=_concat([p.primary_keys for p in parts]),
            scalars={f.name: _concat([p.scalars[f.name] for p in parts]) for f in s.scalar_fields},
            dynamic=None if parts[0].dynamic is None else [b for p in parts for b in p.dynamic or []],
        )
        self.staged.append(
            self.writer.stage_columns(
                self.collection,
                self.partition,
                f"{self.base}-{len(self.staged):05d}",
                columns,
                M=self.M,
                ef_construction=self.ef_construction,
                num_threads=self.num_threads,
                on_rows=self.on_rows,
                schema=s,
            )
        )


def _mean_utf8(values: Iterable[str] | Column) -> float:
    items = list(values)
    return sum(len(str(v).encode()) for v in items) / max(len(items), 1)
