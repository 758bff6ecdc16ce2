"""Load one segment from storage: verify each file's sha256, then read it; cancellable between steps."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import (
    DYNAMIC_FIELD,
    CollectionSchema,
    FieldSchema,
    SegmentManifest,
    StorageBackend,
    StorageError,
)
from vectorload.storage.columns import read_column
from vectorload.storage.hnsw import open_index
from vectorload.storage.reader import BackendReader, segment_dir, verify_file

from .segment import LoadedSegment, MetaColumn, VectorIndex


class SegmentDirectory:
    """A `StorageBackend` over one segment directory, checked against the storage root once.

    The filesystem backend resolves every path (realpath) on each call, which costs more than
    hashing the small column files; here names are plain file names from the manifest (no `/`,
    no `..`) and files are opened with O_NOFOLLOW, so nothing can leave the directory."""

    def __init__(self, backend: StorageBackend, rel_dir: str) -> None:
        self.dir = backend.local_path(rel_dir)

    def _path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or "\x00" in name or name in {".", ".."}:
            raise StorageError("InvalidName", f"invalid segment file name {name!r}")
        return self.dir / name

    def exists(self, rel_path: str) -> bool:
        return self._path(rel_path).exists()

    def list_dir(self, rel_path: str) -> list[str]:
        return sorted(p.name for p in self._path(rel_path).iterdir())

    def read_bytes(self, rel_path: str) -> bytes:
        with self.open(rel_path) as fh:
            return fh.read()

    def open(self, rel_path: str) -> BinaryIO:
        path = self._path(rel_path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise StorageError("FileMissing", f"file {path} is missing") from exc
        return os.fdopen(fd, "rb")

    def local_path(self, rel_path: str) -> Path:
        return self._path(rel_path)


class LoadCancelled(Exception):
    """The load was cancelled (released) between two steps."""


@dataclass(frozen=True)
class LoadSpec:
    fields: frozenset[str]  # schema fields to load, primary key and >= 1 vector field included
    dynamic: bool  # load `$meta`

    def files(self, schema: CollectionSchema) -> list[str]:
        """Manifest file keys to read, primary key first, in schema order."""
        pk = schema.primary_key.name
        names = [pk] + [f.name for f in schema.fields if f.name in self.fields and f.name != pk]
        if self.dynamic and schema.dynamic_field:
            names.append(DYNAMIC_FIELD)
        return names


# Memory a loaded file takes beyond its size, measured on hnswlib 0.8 / CPython 3.11:
HNSW_FIXED_BYTES = 65536 * 40  # every hnswlib index allocates 65536 std::mutex (label_op_locks_)
HNSW_ROW_BYTES = 96  # per element: label map entry, element lock, level, visited-list slot
VARCHAR_ROW_BYTES = 57  # per value: str object header + array pointer
META_ROW_BYTES = 16  # per row: start and end offsets into the raw JSON lines


def predicted_bytes(manifest: SegmentManifest, spec: LoadSpec, schema: CollectionSchema) -> int:
    """Bytes the loaded segment will hold: each file's size plus the measured overheads above."""
    rows = manifest.rows
    total = 0
    for name in spec.files(schema):
        entry = manifest.files.get(name)
        if entry is None:
            continue
        total += entry.bytes
        field = schema.field(name)
        if name == DYNAMIC_FIELD:
            total += META_ROW_BYTES * rows
        elif field is not None and field.type == "float_vector":
            total += HNSW_FIXED_BYTES + HNSW_ROW_BYTES * rows
        elif field is not None and field.type == "varchar":
            total += VARCHAR_ROW_BYTES * rows
    return total


def load_segment(
    reader: BackendReader,
    schema: CollectionSchema,
    manifest: SegmentManifest,
    spec: LoadSpec,
    cancel: threading.Event,
    step_delay: float = 0.0,
    on_step: Callable[[str], None] | None = None,
) -> LoadedSegment:
    """Read the requested files of one segment. Every file is checked against the manifest's
    size and sha256 before it is parsed. Raises StorageError (naming the file) or LoadCancelled."""
    columns: dict[str, npt.NDArray[Any]] = {}
    vectors: dict[str, VectorIndex] = {}
    meta: MetaColumn | None = None
    seg_rel = segment_dir(manifest.collection, manifest.partition, manifest.segment_id)
    directory = SegmentDirectory(reader.backend, seg_rel)
    for name in spec.files(schema):
        _checkpoint(cancel, step_delay)
        entry = manifest.files.get(name)
        if entry is None:
            raise StorageError(
                "FileMissing",
                f"segment {manifest.collection}/{manifest.partition}/{manifest.segment_id} "
                f"has no file for field {name} in its manifest",
            )
        rel = f"{seg_rel}/{entry.path}"  # names the file in error messages
        try:
            verify_file(directory, entry.path, entry)
        except StorageError as exc:  # say which segment file, relative to the storage root
            raise StorageError(exc.reason, exc.message.replace(entry.path, rel, 1)) from exc
        _checkpoint(cancel, 0.0)
        path = directory.local_path(entry.path)
        if name == DYNAMIC_FIELD:
            meta = MetaColumn(directory.read_bytes(entry.path), manifest.rows, rel)
        else:
            field = schema.field(name)
            if field is None:
                raise StorageError("CorruptManifest", f"{rel}: field {name} is not in the schema")
            if field.type == "float_vector":
                vectors[name] = VectorIndex(field, _open_index(path, field, rel, manifest.rows))
            else:
                columns[name] = _column(read_column(path, field), manifest.rows, rel)
        if on_step is not None:
            on_step(name)
    _checkpoint(cancel, 0.0)
    return LoadedSegment(
        collection=manifest.collection,
        partition=manifest.partition,
        segment_id=manifest.segment_id,
        rows=manifest.rows,
        fields=spec.fields,
        dynamic=meta is not None,
        bytes=predicted_bytes(manifest, spec, schema),
        pk_field=schema.primary_key.name,
        columns=columns,
        vectors=vectors,
        meta=meta,
    )


def _checkpoint(cancel: threading.Event, delay: float) -> None:
    if delay > 0 and cancel.wait(delay):
        raise LoadCancelled()
    if cancel.is_set():
        raise LoadCancelled()


def _open_index(path: Path, field: FieldSchema, rel: str, rows: int) -> Any:
    try:
        index = open_index(path, field)
    except (RuntimeError, ValueError, MemoryError) as exc:
        raise StorageError("CorruptFile", f"cannot open hnswlib index {rel}: {exc}") from exc
    if index.get_current_count() != rows:
        raise StorageError(
            "CorruptFile",
            f"{rel}: index holds {index.get_current_count()} vectors, manifest says {rows} rows",
        )
    return index


def _column(values: npt.NDArray[Any] | list[str], rows: int, rel: str) -> npt.NDArray[Any]:
    if isinstance(values, list):
        array = np.empty(len(values), dtype=object)
        array[:] = values
    else:
        array = values
    if len(array) != rows:
        raise StorageError("CorruptFile", f"{rel}: column has {len(array)} values, manifest says {rows} rows")
    return array
