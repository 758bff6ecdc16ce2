"""Writes collections, partitions and sealed segments atomically (see docs/storage-format.md).

A segment is built in `<root>/<collection>/.staging/<uuid>/`, every file fsynced, `manifest.json`
written last, then the directory is renamed to `<root>/<collection>/<partition>/<segment_id>/`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from vectorload.storage.api import (
    DEFAULT_PARTITION,
    DYNAMIC_FIELD,
    CollectionSchema,
    SegmentFile,
    SegmentManifest,
    StorageError,
)
from vectorload.storage.atomic import dump_json, durable_open, fsync_dir, fsync_file, sha256_file
from vectorload.storage.columns import file_name, write_lines, write_npy, write_varchar
from vectorload.storage.hnsw import build_index
from vectorload.storage.manifest import MANIFEST_NAME, manifest_to_dict
from vectorload.storage.names import check_name, check_segment_id
from vectorload.storage.reader import COLLECTION_FILE, FilesystemReader
from vectorload.storage.schema_json import schema_to_dict, validate_schema
from vectorload.storage.validate import SegmentColumns, check_index_params, prepare_segment

STAGING_DIR = ".staging"
OWNER_FILE = ".owner"
STALE_AFTER_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class StagedSegment:
    """A segment built in `<collection>/.staging/<uuid>/` (manifest included, `.owner` still
    there so `clean_staging` leaves it alone), not yet renamed to `target`."""

    manifest: SegmentManifest
    staging: Path
    target: Path


def new_segment_id() -> str:
    """A fresh, time-sortable segment id."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CollectionWriter:
    def __init__(self, root: Path, stale_after: float = STALE_AFTER_SECONDS) -> None:
        self.root = Path(root)
        self.stale_after = stale_after
        self.reader = FilesystemReader(self.root)

    # -- collections and partitions ------------------------------------------------------------

    def create_collection(self, schema: CollectionSchema) -> None:
        """Create the collection (and its `_default` partition). Idempotent for an identical
        schema; StorageError('SchemaMismatch') if it exists with a different one."""
        validate_schema(schema)
        cdir = self.root / schema.name
        cdir.mkdir(parents=True, exist_ok=True)
        target = cdir / COLLECTION_FILE
        if not target.exists():
            tmp = cdir / f".{COLLECTION_FILE}.{uuid.uuid4().hex}.tmp"
            try:
                with durable_open(tmp) as fh:
                    fh.write(dump_json(schema_to_dict(schema)))
                os.link(tmp, target)  # exclusive: fails if a concurrent writer won the race
                fsync_dir(cdir)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        existing = self.reader.schema(schema.name)
        if existing != schema:
            raise StorageError(
                "SchemaMismatch",
                f"collection {schema.name!r} already exists with a different schema "
                f"({target}): {json.dumps(schema_to_dict(existing), sort_keys=True)}",
            )
        self.create_partition(schema.name, DEFAULT_PARTITION)

    def create_partition(self, collection: str, name: str) -> None:
        """Create a partition directory; idempotent."""
        check_name("collection", collection, reason="InvalidArgument")
        check_name("partition", name, reason="InvalidArgument")
        self.reader.schema(collection)  # CollectionNotFound
        pdir = self.root / collection / name
        if not pdir.is_dir():
            pdir.mkdir(exist_ok=True)
            fsync_dir(pdir.parent)

    def schema(self, collection: str) -> CollectionSchema:
        return self.reader.schema(collection)

    # -- segments --------------------------------------------------------------------------------

    def write_segment(
        self,
        collection: str,
        partition: str,
        segment_id: str | None,
        vectors: Mapping[str, object],
        primary_keys: object,
        scalars: Mapping[str, object],
        dynamic: Sequence[object] | None = None,
        M: int = 16,
        ef_construction: int = 200,
        num_threads: int = -1,
        on_rows: Callable[[int], None] | None = None,
    ) -> SegmentManifest:
        """Validate, build and atomically publish one sealed segment.

        `on_rows(n)` is called as index building progresses (n rows per vector field chunk, so the
        total is rows × number of vector fields)."""
        staged = self.stage_segment(
            collection,
            partition,
            segment_id,
            vectors,
            primary_keys,
            scalars,
            dynamic,
            M=M,
            ef_construction=ef_construction,
            num_threads=num_threads,
            on_rows=on_rows,
        )
        return self.publish(staged)

    def stage_segment(
        self,
        collection: str,
        partition: str,
        segment_id: str | None,
        vectors: Mapping[str, object],
        primary_keys: object,
        scalars: Mapping[str, object],
        dynamic: Sequence[object] | None = None,
        M: int = 16,
        ef_construction: int = 200,
        num_threads: int = -1,
        on_rows: Callable[[int], None] | None = None,
        schema: CollectionSchema | None = None,
    ) -> StagedSegment:
        """Validate and build one segment in staging, invisible until `publish` (or `discard`).
        `schema`: as for `stage_columns`."""
        segment_id = new_segment_id() if segment_id is None else segment_id
        schema, _ = self._target(collection, partition, segment_id, M, ef_construction, schema)
        columns = prepare_segment(schema, vectors, primary_keys, scalars, dynamic)
        return self.stage_columns(
            collection, partition, segment_id, columns, M, ef_construction, num_threads, on_rows, schema
        )

    def _target(
        self,
        collection: str,
        partition: str,
        segment_id: str,
        M: int,
        ef_construction: int,
        schema: CollectionSchema | None = None,
    ) -> tuple[CollectionSchema, Path]:
        """Check names and index parameters; the schema and the segment's final directory. With
        `schema`, the collection and partition need not exist yet (they must by `publish`)."""
        check_name("collection", collection, reason="InvalidArgument")
        check_name("partition", partition, reason="InvalidArgument")
        check_segment_id(segment_id, reason="InvalidArgument")
        check_index_params(M, ef_construction)
        pdir = self.root / collection / partition
        if schema is None:
            schema = self.reader.schema(collection)
            if not pdir.is_dir():
                raise StorageError(
                    "PartitionNotFound", f"partition {partition!r} not found in collection {collection!r}"
                )
        else:
            validate_schema(schema)
        target = pdir / segment_id
        if target.exists():
            raise StorageError("SegmentExists", f"segment {collection}/{partition}/{segment_id} exists")
        return schema, target

    def stage_columns(
        self,
        collection: str,
        partition: str,
        segment_id: str | None,
        columns: SegmentColumns,
        M: int = 16,
        ef_construction: int = 200,
        num_threads: int = -1,
        on_rows: Callable[[int], None] | None = None,
        schema: CollectionSchema | None = None,
    ) -> StagedSegment:
        """`stage_segment` for columns `validate.prepare_segment` (or an equivalent check) produced.

        With `schema`, staging needs neither `collection.json` nor the partition directory: an
        ingest builds everything before it creates them, so a failed one leaves nothing visible."""
        segment_id = new_segment_id() if segment_id is None else segment_id
        schema, target = self._target(collection, partition, segment_id, M, ef_construction, schema)
        self.clean_staging(collection)
        index_params = {f.name: {"M": M, "ef_construction": ef_construction} for f in schema.vector_fields}
        staging_root = self.root / collection / STAGING_DIR
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = staging_root / uuid.uuid4().hex
        staging.mkdir()
        owner = staging / OWNER_FILE
        owner.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        try:
            files = self._write_files(schema, columns, staging, M, ef_construction, num_threads, on_rows)
            manifest = SegmentManifest(
                collection=collection,
                partition=partition,
                segment_id=segment_id,
                rows=columns.rows,
                files=files,
                index_params=index_params,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            with durable_open(staging / MANIFEST_NAME) as fh:
                fh.write(dump_json(manifest_to_dict(manifest)))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return StagedSegment(manifest, staging, target)

    def publish(self, staged: StagedSegment) -> SegmentManifest:
        """Make a staged segment visible: drop its `.owner`, then one `rename(2)`."""
        m = staged.manifest
        try:
            if not staged.target.parent.is_dir():
                raise StorageError(
                    "PartitionNotFound", f"partition {m.partition!r} not found in collection {m.collection!r}"
                )
            (staged.staging / OWNER_FILE).unlink(missing_ok=True)
            fsync_dir(staged.staging)
            try:
                os.rename(staged.staging, staged.target)
            except OSError as exc:
                raise StorageError(
                    "SegmentExists", f"segment {m.collection}/{m.partition}/{m.segment_id} exists"
                ) from exc
            fsync_dir(staged.target.parent)
            fsync_dir(staged.staging.parent)
        except BaseException:
            self.discard(staged)
            raise
        return m

    def discard(self, staged: StagedSegment) -> None:
        """Remove a staged segment that will not be published."""
        shutil.rmtree(staged.staging, ignore_errors=True)

    def _write_files(
        self,
        schema: CollectionSchema,
        columns: SegmentColumns,
        staging: Path,
        M: int,
        ef_construction: int,
        num_threads: int,
        on_rows: Callable[[int], None] | None,
    ) -> dict[str, SegmentFile]:
        written: dict[str, str] = {}
        for vf in schema.vector_fields:
            name = file_name(vf)
            build_index(
                staging / name, vf, columns.vectors[vf.name], M, ef_construction, num_threads, on_rows=on_rows
            )
            fsync_file(staging / name)
            written[vf.name] = name
        pk = schema.primary_key
        for f, column in [
            (pk, columns.primary_keys),
            *((f, columns.scalars[f.name]) for f in schema.scalar_fields),
        ]:
            name = file_name(f)
            if isinstance(column, list):
                write_varchar(staging / name, column)
            else:
                write_npy(staging / name, column)
            written[f.name] = name
        if columns.dynamic is not None:
            name = file_name(DYNAMIC_FIELD)
            write_lines(staging / name, columns.dynamic)
            written[DYNAMIC_FIELD] = name
        files: dict[str, SegmentFile] = {}
        for field_name, name in written.items():
            size, digest = sha256_file(staging / name)
            files[field_name] = SegmentFile(path=name, bytes=size, sha256=digest)
        return files

    # -- staging cleanup -------------------------------------------------------------------------

    def _is_stale(self, staging: Path) -> bool:
        try:
            age = time.time() - staging.stat().st_mtime
        except FileNotFoundError:
            return False
        if age > self.stale_after:
            return True
        try:
            owner = json.loads((staging / OWNER_FILE).read_text())
            host, pid = owner["host"], int(owner["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return age > 60.0  # no owner yet (or just removed before publishing): give it time
        return bool(host == socket.gethostname() and not _pid_alive(pid))

    def clean_staging(self, collection: str) -> int:
        """Remove staging directories left by crashed writers; returns how many were removed.

        Stale = its writer process on this host is gone, or older than `stale_after` seconds."""
        check_name("collection", collection, reason="InvalidArgument")
        staging_root = self.root / collection / STAGING_DIR
        if not staging_root.is_dir():
            return 0
        removed = 0
        for entry in sorted(staging_root.iterdir()):
            if entry.is_dir() and self._is_stale(entry):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed
