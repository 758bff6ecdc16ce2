"""The storage interface shared by the writer (ingest, sample), the querynode and the catalog.

This module fixes the *shape* of a collection in storage; `docs/storage-format.md` fixes the bytes.
Readers depend on `StorageBackend` only, so an object store can be added beside the filesystem
backend without touching the querynode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
SEGMENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_PARTITION = "_default"
DYNAMIC_FIELD = "$meta"
TS_FIELD = "$ts"
"""Manifest key of a segment's per-row hybrid timestamps (int64; absent = every row is 0, "before
any write"). Not a schema field: like `$meta` it cannot clash with a field name."""

ScalarType = Literal["int64", "float", "bool", "varchar"]
FieldType = Literal["int64", "float", "bool", "varchar", "float_vector"]
Metric = Literal["l2", "ip", "cosine"]


class StorageError(Exception):
    """A storage problem; `reason` is a CamelCase word, the message names the object."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class FieldSchema:
    name: str
    type: FieldType
    is_primary: bool = False
    dim: int | None = None  # float_vector only
    metric: Metric | None = None  # float_vector only
    max_length: int | None = None  # varchar only


@dataclass(frozen=True)
class CollectionSchema:
    name: str
    fields: tuple[FieldSchema, ...]
    dynamic_field: bool = True
    description: str = ""

    @property
    def primary_key(self) -> FieldSchema:
        return next(f for f in self.fields if f.is_primary)

    @property
    def vector_fields(self) -> tuple[FieldSchema, ...]:
        return tuple(f for f in self.fields if f.type == "float_vector")

    @property
    def scalar_fields(self) -> tuple[FieldSchema, ...]:
        return tuple(f for f in self.fields if f.type != "float_vector" and not f.is_primary)

    def field(self, name: str) -> FieldSchema | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass(frozen=True)
class SegmentFile:
    path: str  # relative to the segment directory
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SegmentManifest:
    """One immutable sealed segment. `files` is keyed by field name; the primary keys are
    keyed by the primary-key field's name and the dynamic field by `$meta`."""

    collection: str
    partition: str
    segment_id: str
    rows: int
    files: dict[str, SegmentFile]
    # vector field -> {"M": .., "ef_construction": ..}
    index_params: dict[str, dict[str, int]] = field(default_factory=dict)
    created_at: str = ""
    # the collection generation this segment was published at (0: before generations existed)
    generation: int = 0
    # ids of the segments (same partition) a compaction merged into this one; () = not compacted
    compacted_from: tuple[str, ...] = ()
    # smallest / largest row timestamp (None: no `$ts` file, every row is 0)
    min_ts: int | None = None
    max_ts: int | None = None
    # every delta of the collection with seq <= this was applied to the rows (compaction)
    deltas_applied: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files.values())

    def bytes_for(self, fields: frozenset[str] | None, include_dynamic: bool) -> int:
        """Bytes that loading this field subset reads (None = every field). The row timestamps
        (`$ts`) are read by every load."""
        total = 0
        for name, f in self.files.items():
            if name == DYNAMIC_FIELD:
                if include_dynamic:
                    total += f.bytes
            elif name == TS_FIELD or fields is None or name in fields:
                total += f.bytes
        return total

    @property
    def has_timestamps(self) -> bool:
        return TS_FIELD in self.files


@dataclass(frozen=True)
class RetiredSegment:
    """A segment a compaction replaced: still readable (its manifest and files are unchanged)
    until garbage collection removes it after a grace period. `replaced_by` names the live
    segments (same partition) that hold its surviving rows; () when a compaction found every
    row deleted."""

    manifest: SegmentManifest
    replaced_by: tuple[str, ...]
    retired_at: str  # ISO 8601 UTC, seconds
    generation: int  # the collection generation of the retirement


@dataclass(frozen=True)
class DeltaManifest:
    """One immutable delete record of a collection: primary keys and their delete timestamps.

    A delete at timestamp t hides every row of that primary key whose `$ts` is < t — in
    `partition` only, or in every partition when `partition` is None. `seq` orders deltas: it is
    the collection generation the delta was published at, so a reader that has seen generation G
    has seen every delta with seq <= G."""

    collection: str
    delta_id: str
    seq: int
    partition: str | None
    rows: int
    min_ts: int
    max_ts: int
    files: dict[str, SegmentFile]  # primary-key field name -> keys, `$ts` -> timestamps
    created_at: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files.values())


class StorageBackend(Protocol):
    """Where segment files live. The filesystem backend ships; an object store (e.g. S3 through
    `boto3`/`fsspec`) would implement the same methods and stage files to local disk for hnswlib."""

    def exists(self, rel_path: str) -> bool: ...

    def list_dir(self, rel_path: str) -> list[str]: ...

    def read_bytes(self, rel_path: str) -> bytes: ...

    def open(self, rel_path: str) -> BinaryIO: ...

    def local_path(self, rel_path: str) -> Path:
        """A local file path for readers that need one (hnswlib.Index.load_index)."""
        ...


class CollectionReader(Protocol):
    """Read-only view of a storage root. Every call re-reads storage, so segments written after
    a load are discovered by the next call."""

    def list_collections(self) -> list[str]: ...

    def schema(self, collection: str) -> CollectionSchema:
        """Raises StorageError('CollectionNotFound', ...)."""
        ...

    def partitions(self, collection: str) -> list[str]: ...

    def segments(self, collection: str, partition: str) -> list[SegmentManifest]:
        """Live segments (retired ones excluded). Raises StorageError('PartitionNotFound', ...)."""
        ...

    def segment(self, collection: str, partition: str, segment_id: str) -> SegmentManifest: ...

    def segment_file_path(self, manifest: SegmentManifest, field_name: str) -> Path: ...

    def retired_segments(self, collection: str, partition: str) -> list[RetiredSegment]:
        """Segments a compaction replaced and garbage collection has not removed yet."""
        ...

    def deltas(self, collection: str) -> list[DeltaManifest]:
        """Published deltas ordered by `seq`."""
        ...

    def generation(self, collection: str) -> int:
        """The collection's generation: moves on every publish, delta and retirement (0: none)."""
        ...
