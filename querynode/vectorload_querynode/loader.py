"""Load one segment from storage: verify each file's sha256, then parse it; cancellable between steps."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import (
    DYNAMIC_FIELD,
    TS_FIELD,
    CollectionSchema,
    FieldSchema,
    SegmentFile,
    SegmentManifest,
    StorageBackend,
    StorageError,
)
from vectorload.storage.columns import decode_varchar, read_column
from vectorload.storage.hnsw import open_index
from vectorload.storage.reader import BackendReader, segment_dir

from .hasher import Hasher, Ticket, hash_fd
from .segment import LoadedSegment, MetaColumn, VectorIndex


class SegmentDirectory:
    """One segment directory, resolved against the storage root once.

    The filesystem backend resolves every path (realpath) on each call; here names are plain file
    names from the manifest (no `/`, no `..`) and files are opened with O_NOFOLLOW, so nothing
    can leave the directory."""

    def __init__(self, backend: StorageBackend, rel_dir: str) -> None:
        self.dir = backend.local_path(rel_dir)

    def path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or "\x00" in name or name in {".", ".."}:
            raise StorageError("InvalidName", f"invalid segment file name {name!r}")
        return self.dir / name

    def open_fd(self, name: str) -> int:
        """A read-only descriptor of a regular file (OSError when there is none)."""
        # O_NONBLOCK: opening a FIFO planted in the directory must not hang the worker
        fd = os.open(self.path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file")
        return fd


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


def memory_bytes(manifest: SegmentManifest, schema: CollectionSchema) -> dict[str, int]:
    """Predicted resident bytes per file key (field name or `$meta`): the file's size plus the
    measured overheads above. The catalog publishes this so the operator places segments with
    the same arithmetic that admission applies."""
    rows = manifest.rows
    result: dict[str, int] = {}
    for name, entry in manifest.files.items():
        total = entry.bytes
        field = schema.field(name)
        if name == DYNAMIC_FIELD:
            total += META_ROW_BYTES * rows
        elif field is not None and field.type == "float_vector":
            total += HNSW_FIXED_BYTES + HNSW_ROW_BYTES * rows
        elif field is not None and field.type == "varchar":
            total += VARCHAR_ROW_BYTES * rows
        result[name] = total
    return result


def predicted_bytes(manifest: SegmentManifest, spec: LoadSpec, schema: CollectionSchema) -> int:
    """Bytes the loaded segment will hold for this load spec's files, plus its row timestamps
    (`$ts`, kept for every load to apply deletes and resolve duplicates)."""
    per_file = memory_bytes(manifest, schema)
    return sum(per_file.get(name, 0) for name in spec.files(schema)) + per_file.get(TS_FIELD, 0)


@dataclass
class _SegmentFile:
    """One file of the segment being loaded: opened once, verified, then parsed from that fd."""

    name: str
    rel: str  # relative to the storage root, for messages
    entry: SegmentFile | None = None
    fd: int = -1
    error: StorageError | None = None  # raised when the loader reaches this file
    ticket: Ticket | None = None

    @property
    def parse_path(self) -> Path:
        """A path that opens the very file that was verified (not whatever the name holds now)."""
        return _PROC_FD / str(self.fd)


_PROC_FD = Path("/proc/self/fd")


def _open_file(
    directory: SegmentDirectory, manifest: SegmentManifest, seg_rel: str, name: str
) -> _SegmentFile:
    entry = manifest.files.get(name)
    if entry is None:
        return _SegmentFile(
            name,
            seg_rel,
            error=StorageError(
                "FileMissing",
                f"segment {manifest.collection}/{manifest.partition}/{manifest.segment_id} "
                f"has no file for field {name} in its manifest",
            ),
        )
    file = _SegmentFile(name, f"{seg_rel}/{entry.path}", entry)
    try:
        file.fd = directory.open_fd(entry.path)
        size = os.fstat(file.fd).st_size
    except StorageError as exc:
        file.error = exc
        return file
    except FileNotFoundError:
        file.error = StorageError("FileMissing", f"segment file {file.rel} is missing")
        return file
    except OSError as exc:
        file.error = StorageError("FileMissing", f"segment file {file.rel} cannot be read: {exc}")
        return file
    if size != entry.bytes:  # no need to hash it
        file.error = _size_mismatch(file.rel, size, entry.bytes)
    return file


def _size_mismatch(rel: str, size: int, expected: int) -> StorageError:
    return StorageError("SizeMismatch", f"segment file {rel} has {size} bytes, manifest says {expected}")


def _verify(file: _SegmentFile, cancel: threading.Event) -> None:
    """Check the file's size and sha256 against the manifest (the helper's answer, or hash here)."""
    if file.error is not None or file.entry is None:
        raise file.error or StorageError("FileMissing", f"segment file {file.rel} is missing")
    ticket = file.ticket
    if ticket is not None and not ticket.wait(cancel):
        raise LoadCancelled()
    if ticket is not None and ticket.errno:
        raise StorageError(
            "FileMissing", f"segment file {file.rel} cannot be read: {os.strerror(ticket.errno)}"
        )
    if ticket is not None and not ticket.lost:
        size, digest = ticket.size, ticket.digest
    else:
        try:
            size, digest = hash_fd(file.fd)
        except OSError as exc:
            raise StorageError("FileMissing", f"segment file {file.rel} cannot be read: {exc}") from exc
    if size != file.entry.bytes:
        raise _size_mismatch(file.rel, size, file.entry.bytes)
    if digest.hex() != file.entry.sha256:
        raise StorageError(
            "ChecksumMismatch",
            f"segment file {file.rel} has sha256 {digest.hex()}, manifest says {file.entry.sha256}",
        )


class OpenedSegment:
    """The files of one segment, opened and (with a hasher) queued for hashing; `close` once."""

    def __init__(
        self,
        reader: BackendReader,
        schema: CollectionSchema,
        manifest: SegmentManifest,
        spec: LoadSpec,
        hasher: Hasher | None = None,
    ) -> None:
        seg_rel = segment_dir(manifest.collection, manifest.partition, manifest.segment_id)
        directory = SegmentDirectory(reader.backend, seg_rel)
        self.files: list[_SegmentFile] = []
        try:
            for name in spec.files(schema):
                file = _open_file(directory, manifest, seg_rel, name)
                self.files.append(file)
                if file.error is None:
                    with contextlib.suppress(OSError):  # a hint: read ahead if it is not cached yet
                        os.posix_fadvise(file.fd, 0, 0, os.POSIX_FADV_WILLNEED)
                    if hasher is not None:
                        file.ticket = hasher.submit(file.fd)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for file in self.files:
            if file.fd >= 0:
                os.close(file.fd)
                file.fd = -1


def load_segment(
    reader: BackendReader,
    schema: CollectionSchema,
    manifest: SegmentManifest,
    spec: LoadSpec,
    cancel: threading.Event,
    step_delay: float = 0.0,
    on_step: Callable[[str], None] | None = None,
    hasher: Hasher | None = None,
    opened: OpenedSegment | None = None,
) -> LoadedSegment:
    """Read the requested files of one segment. Every file is checked against the manifest's
    size and sha256 before it is parsed. Raises StorageError (naming the file) or LoadCancelled.

    The files are opened and queued for hashing up front (`opened`, made by the caller ahead of
    time for queued segments, else here): `hasher`'s helper process hashes them on another core
    while hnswlib loads earlier files, and each file is parsed only after its own hash matched,
    from the descriptor that was hashed. Without a hasher each file is hashed in this thread
    just before it is parsed. `opened` is closed here whatever happens."""
    columns: dict[str, npt.NDArray[Any]] = {}
    vectors: dict[str, VectorIndex] = {}
    meta: MetaColumn | None = None
    try:
        _checkpoint(cancel, 0.0)
        if opened is None:
            opened = OpenedSegment(reader, schema, manifest, spec, hasher)
        for file in opened.files:
            _checkpoint(cancel, step_delay)
            _verify(file, cancel)
            _checkpoint(cancel, 0.0)
            name, rel = file.name, file.rel
            if name == DYNAMIC_FIELD:
                meta = MetaColumn(_read_all(file.fd), manifest.rows, rel)
            else:
                field = schema.field(name)
                if field is None:
                    raise StorageError("CorruptManifest", f"{rel}: field {name} is not in the schema")
                if field.type == "float_vector":
                    vectors[name] = VectorIndex(
                        field, _open_index(file.parse_path, field, rel, manifest.rows)
                    )
                else:
                    columns[name] = _column(_read_column(file, field), manifest.rows, rel)
            if on_step is not None:
                on_step(name)
    finally:
        if opened is not None:
            opened.close()
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


def _read_all(fd: int) -> bytes:
    """The whole file behind `fd` (pread: the descriptor's offset does not matter)."""
    chunks = []
    offset = 0
    size = os.fstat(fd).st_size
    while chunk := os.pread(fd, max(size - offset, 1 << 16), offset):
        chunks.append(chunk)
        offset += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_column(file: _SegmentFile, field: FieldSchema) -> npt.NDArray[Any] | list[str]:
    if field.type == "varchar":
        return _read_varchar(_read_all(file.fd), file.rel)
    path = file.parse_path
    try:
        return read_column(path, field)
    except StorageError as exc:  # name the segment file, not /proc/self/fd/N
        raise StorageError(exc.reason, exc.message.replace(str(path), file.rel)) from exc


def _read_varchar(data: bytes, rel: str) -> npt.NDArray[np.object_]:
    """A `.vstr` column as an object array (decoded by the storage format's own decoder)."""
    decoded = decode_varchar(data, rel)
    values = np.empty(len(decoded), dtype=object)
    values[:] = decoded
    return values


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
