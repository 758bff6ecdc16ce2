"""Load one segment from storage: verify each file's sha256, then read it; cancellable between steps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import DYNAMIC_FIELD, CollectionSchema, FieldSchema, SegmentManifest, StorageError
from vectorload.storage.columns import read_column
from vectorload.storage.hnsw import open_index
from vectorload.storage.reader import BackendReader, segment_file_rel_path, verify_file

from .segment import LoadedSegment, MetaColumn, VectorIndex


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


def predicted_bytes(manifest: SegmentManifest, spec: LoadSpec) -> int:
    """Bytes the load will hold: hnswlib and column memory ≈ the files' sizes."""
    return manifest.bytes_for(spec.fields, spec.dynamic)


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
    for name in spec.files(schema):
        _checkpoint(cancel, step_delay)
        entry = manifest.files.get(name)
        if entry is None:
            raise StorageError(
                "FileMissing",
                f"segment {manifest.collection}/{manifest.partition}/{manifest.segment_id} "
                f"has no file for field {name} in its manifest",
            )
        rel = segment_file_rel_path(manifest, name)
        verify_file(reader.backend, rel, entry)
        _checkpoint(cancel, 0.0)
        path = reader.backend.local_path(rel)
        if name == DYNAMIC_FIELD:
            meta = MetaColumn(reader.backend.read_bytes(rel), manifest.rows, rel)
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
        bytes=predicted_bytes(manifest, spec),
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
