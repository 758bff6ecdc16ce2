"""Read-only view of a storage root (`CollectionReader`) and segment file verification."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vectorload.storage.api import (
    NAME_PATTERN,
    SEGMENT_ID_PATTERN,
    CollectionSchema,
    DeltaManifest,
    RetiredSegment,
    SegmentFile,
    SegmentManifest,
    StorageBackend,
    StorageError,
)
from vectorload.storage.atomic import sha256_stream
from vectorload.storage.fs import FilesystemBackend
from vectorload.storage.generation import DELTAS_DIR, delta_seq, read_generation
from vectorload.storage.manifest import (
    DELTA_MANIFEST_NAME,
    MANIFEST_NAME,
    RETIRED_SUFFIX,
    delta_from_dict,
    manifest_from_dict,
    retired_from_dict,
    retired_marker_name,
)
from vectorload.storage.names import check_name, check_segment_id
from vectorload.storage.properties import effective_schema, read_properties
from vectorload.storage.schema_json import schema_from_dict

COLLECTION_FILE = "collection.json"


def segment_dir(collection: str, partition: str, segment_id: str) -> str:
    return f"{collection}/{partition}/{segment_id}"


def segment_file_rel_path(manifest: SegmentManifest, field_name: str) -> str:
    """Path of one field's file relative to the storage root (for `verify_file`)."""
    entry = manifest.files.get(field_name)
    if entry is None:
        raise StorageError(
            "FieldNotFound",
            f"segment {manifest.collection}/{manifest.partition}/{manifest.segment_id} "
            f"has no file for field {field_name!r}",
        )
    return f"{segment_dir(manifest.collection, manifest.partition, manifest.segment_id)}/{entry.path}"


def verify_file(backend: StorageBackend, rel_path: str, expected: SegmentFile) -> None:
    """Check existence, size and sha256 (streamed, 1 MiB chunks) of one segment file.

    Raises StorageError 'FileMissing', 'SizeMismatch' or 'ChecksumMismatch' naming the file.
    """
    if not backend.exists(rel_path):
        raise StorageError("FileMissing", f"segment file {rel_path} is missing")
    try:
        with backend.open(rel_path) as fh:
            size, digest = sha256_stream(fh)
    except OSError as exc:
        raise StorageError("FileMissing", f"segment file {rel_path} cannot be read: {exc}") from exc
    if size != expected.bytes:
        raise StorageError(
            "SizeMismatch", f"segment file {rel_path} has {size} bytes, manifest says {expected.bytes}"
        )
    if digest != expected.sha256:
        raise StorageError(
            "ChecksumMismatch",
            f"segment file {rel_path} has sha256 {digest}, manifest says {expected.sha256}",
        )


class BackendReader:
    """`CollectionReader` over any `StorageBackend`; every call re-reads storage."""

    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend

    def _subdirs(self, rel_path: str) -> list[str]:
        try:
            return self.backend.list_dir(rel_path)
        except StorageError:
            return []

    def list_collections(self) -> list[str]:
        return [
            name
            for name in self._subdirs("")
            if NAME_PATTERN.fullmatch(name) and self.backend.exists(f"{name}/{COLLECTION_FILE}")
        ]

    def schema(self, collection: str) -> CollectionSchema:
        check_name("collection", collection)
        rel = f"{collection}/{COLLECTION_FILE}"
        if not self.backend.exists(rel):
            raise StorageError("CollectionNotFound", f"collection {collection!r} not found")
        try:
            data = json.loads(self.backend.read_bytes(rel))
            schema = schema_from_dict(data, name=collection)
        except (ValueError, StorageError) as exc:
            message = exc.message if isinstance(exc, StorageError) else str(exc)
            raise StorageError("CorruptManifest", f"{rel}: {message}") from exc
        # an index definition (properties.json) decides its field's metric
        return effective_schema(schema, read_properties(self.backend, collection))

    def _require_collection(self, collection: str) -> None:
        check_name("collection", collection)
        if not self.backend.exists(f"{collection}/{COLLECTION_FILE}"):
            raise StorageError("CollectionNotFound", f"collection {collection!r} not found")

    def partitions(self, collection: str) -> list[str]:
        self._require_collection(collection)
        return [
            name
            for name in self._subdirs(collection)
            if NAME_PATTERN.fullmatch(name) and self._is_dir(f"{collection}/{name}")
        ]

    def _is_dir(self, rel_path: str) -> bool:
        try:
            self.backend.list_dir(rel_path)
        except StorageError:
            return False
        return True

    def _require_partition(self, collection: str, partition: str) -> None:
        self._require_collection(collection)
        check_name("partition", partition)
        if not self._is_dir(f"{collection}/{partition}"):
            raise StorageError(
                "PartitionNotFound", f"partition {partition!r} not found in collection {collection!r}"
            )

    def _manifest(self, collection: str, partition: str, segment_id: str) -> SegmentManifest:
        rel = f"{segment_dir(collection, partition, segment_id)}/{MANIFEST_NAME}"
        try:
            data = json.loads(self.backend.read_bytes(rel))
        except ValueError as exc:
            raise StorageError("CorruptManifest", f"{rel}: invalid JSON: {exc}") from exc
        manifest = manifest_from_dict(data, rel)
        if (manifest.collection, manifest.partition, manifest.segment_id) != (
            collection,
            partition,
            segment_id,
        ):
            raise StorageError(
                "CorruptManifest",
                f"{rel}: names {manifest.collection}/{manifest.partition}/{manifest.segment_id} "
                "do not match its location",
            )
        return manifest

    def _listing(self, collection: str, partition: str) -> tuple[list[SegmentManifest], dict[str, str]]:
        """Every segment with a manifest (sorted by id) and the retirement marker names by
        segment id, from one listing of the partition directory."""
        self._require_partition(collection, partition)
        base = f"{collection}/{partition}"
        found: list[SegmentManifest] = []
        markers: dict[str, str] = {}
        for name in self._subdirs(base):
            if name.endswith(RETIRED_SUFFIX):
                markers[name.removesuffix(RETIRED_SUFFIX)] = name
                continue
            if not SEGMENT_ID_PATTERN.fullmatch(name):
                continue
            try:
                found.append(self._manifest(collection, partition, name))
            except StorageError as exc:
                if exc.reason != "FileMissing":  # no manifest (yet), or removed while listing
                    raise
        return found, markers

    def segments(self, collection: str, partition: str) -> list[SegmentManifest]:
        """Live sealed segments sorted by id: directories without a manifest are invisible, and
        retired segments (see `retired_segments`) are not live."""
        found, markers = self._listing(collection, partition)
        return [m for m in found if m.segment_id not in markers]

    def retired_segments(self, collection: str, partition: str) -> list[RetiredSegment]:
        """Segments a compaction replaced that garbage collection has not removed yet, sorted by
        id. A marker whose segment is gone (garbage collection was interrupted) is ignored."""
        return self.partition_segments(collection, partition)[1]

    def partition_segments(
        self, collection: str, partition: str
    ) -> tuple[list[SegmentManifest], list[RetiredSegment]]:
        """(live, retired) segments of a partition from one listing (what a catalog shows)."""
        found, markers = self._listing(collection, partition)
        live = [m for m in found if m.segment_id not in markers]
        out: list[RetiredSegment] = []
        for m in found:
            marker = markers.get(m.segment_id)
            if marker is None:
                continue
            rel = f"{collection}/{partition}/{marker}"
            try:
                data = json.loads(self.backend.read_bytes(rel))
            except StorageError as exc:
                if exc.reason == "FileMissing":  # removed while listing
                    continue
                raise
            except ValueError as exc:
                raise StorageError("CorruptManifest", f"{rel}: invalid JSON: {exc}") from exc
            segment_id, replaced_by, retired_at, generation = retired_from_dict(data, rel)
            if segment_id != m.segment_id:
                raise StorageError("CorruptManifest", f"{rel}: names segment {segment_id!r}")
            out.append(RetiredSegment(m, replaced_by, retired_at, generation))
        return live, out

    def is_retired(self, manifest: SegmentManifest) -> bool:
        rel = f"{manifest.collection}/{manifest.partition}/{retired_marker_name(manifest.segment_id)}"
        return self.backend.exists(rel)

    # ---------------------------------------------------------------- generation and deltas

    def generation(self, collection: str) -> int:
        """The collection's generation (`generation.json`; 0 when it was never moved)."""
        self._require_collection(collection)
        return read_generation(self.backend, collection)

    def deltas(self, collection: str) -> list[DeltaManifest]:
        """Published deltas ordered by seq. Directories without a manifest are invisible."""
        self._require_collection(collection)
        out: list[DeltaManifest] = []
        for name in self._subdirs(f"{collection}/{DELTAS_DIR}"):
            if delta_seq(name) is None:
                continue
            rel = f"{collection}/{DELTAS_DIR}/{name}/{DELTA_MANIFEST_NAME}"
            try:
                data = json.loads(self.backend.read_bytes(rel))
            except StorageError as exc:
                if exc.reason == "FileMissing":
                    continue
                raise
            except ValueError as exc:
                raise StorageError("CorruptManifest", f"{rel}: invalid JSON: {exc}") from exc
            delta = delta_from_dict(data, rel)
            if delta.collection != collection or delta.delta_id != name or delta.seq != delta_seq(name):
                raise StorageError("CorruptManifest", f"{rel}: names another delta or collection")
            out.append(delta)
        out.sort(key=lambda d: d.seq)
        return out

    def delta_file_rel_path(self, delta: DeltaManifest, key: str) -> str:
        entry = delta.files.get(key)
        if entry is None:
            raise StorageError(
                "FieldNotFound", f"delta {delta.collection}/{delta.delta_id} has no {key!r} file"
            )
        return f"{delta.collection}/{DELTAS_DIR}/{delta.delta_id}/{entry.path}"

    def change_token(self, collection: str) -> str:
        """A cheap validator of everything the collection's catalog shows (an HTTP ETag): the
        generation plus, on a filesystem, the modification times of the collection, partition and
        delta directories — so even a change whose writer died before moving the generation
        (a retirement marker, a published segment) changes the token."""
        generation = self.generation(collection)
        backend = self.backend
        if not isinstance(backend, FilesystemBackend):
            return f"g{generation}"
        digest = hashlib.sha256()
        for rel in [collection, f"{collection}/{DELTAS_DIR}"] + [
            f"{collection}/{p}" for p in self.partitions(collection)
        ]:
            digest.update(f"{rel}:{backend.mtime_ns(rel)};".encode())
        return f"g{generation}-{digest.hexdigest()[:16]}"

    def segment(self, collection: str, partition: str, segment_id: str) -> SegmentManifest:
        """A segment's manifest, live or retired (retired segments stay readable until garbage
        collection removes them)."""
        self._require_partition(collection, partition)
        check_segment_id(segment_id)
        try:
            return self._manifest(collection, partition, segment_id)
        except StorageError as exc:
            if exc.reason != "FileMissing":
                raise
            raise StorageError(
                "SegmentNotFound", f"segment {segment_id!r} not found in {collection}/{partition}"
            ) from exc

    def segment_file_rel_path(self, manifest: SegmentManifest, field_name: str) -> str:
        return segment_file_rel_path(manifest, field_name)

    def segment_file_path(self, manifest: SegmentManifest, field_name: str) -> Path:
        return self.backend.local_path(segment_file_rel_path(manifest, field_name))

    def verify_segment(self, manifest: SegmentManifest) -> None:
        """`verify_file` for every file of the segment."""
        for name, entry in manifest.files.items():
            verify_file(self.backend, segment_file_rel_path(manifest, name), entry)


class FilesystemReader(BackendReader):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        super().__init__(FilesystemBackend(self.root))
