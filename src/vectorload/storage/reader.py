"""Read-only view of a storage root (`CollectionReader`) and segment file verification."""

from __future__ import annotations

import json
from pathlib import Path

from vectorload.storage.api import (
    NAME_PATTERN,
    SEGMENT_ID_PATTERN,
    CollectionSchema,
    SegmentFile,
    SegmentManifest,
    StorageBackend,
    StorageError,
)
from vectorload.storage.atomic import sha256_stream
from vectorload.storage.fs import FilesystemBackend
from vectorload.storage.manifest import MANIFEST_NAME, manifest_from_dict
from vectorload.storage.names import check_name, check_segment_id
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
            return schema_from_dict(data, name=collection)
        except (ValueError, StorageError) as exc:
            message = exc.message if isinstance(exc, StorageError) else str(exc)
            raise StorageError("CorruptManifest", f"{rel}: {message}") from exc

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

    def segments(self, collection: str, partition: str) -> list[SegmentManifest]:
        """Sealed segments sorted by id; directories without a manifest are invisible."""
        self._require_partition(collection, partition)
        base = f"{collection}/{partition}"
        found: list[SegmentManifest] = []
        for name in self._subdirs(base):
            if not SEGMENT_ID_PATTERN.fullmatch(name):
                continue
            try:
                found.append(self._manifest(collection, partition, name))
            except StorageError as exc:
                if exc.reason != "FileMissing":  # no manifest (yet), or removed while listing
                    raise
        return found

    def segment(self, collection: str, partition: str, segment_id: str) -> SegmentManifest:
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
