"""Writes collections, partitions, sealed segments, deltas and retirement markers atomically
(see docs/storage-format.md).

A segment is built in `<root>/<collection>/.staging/<uuid>/`, every file fsynced, `manifest.json`
written last, then the directory is renamed to `<root>/<collection>/<partition>/<segment_id>/`
under the collection lock, which also moves the collection's generation. A delta is built the
same way and renamed into `<root>/<collection>/.deltas/<seq>-<hex>/`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from vectorload.storage.api import (
    DEFAULT_PARTITION,
    DYNAMIC_FIELD,
    TS_FIELD,
    CollectionSchema,
    DeltaManifest,
    SegmentFile,
    SegmentManifest,
    StorageError,
)
from vectorload.storage.atomic import dump_json, durable_open, fsync_dir, fsync_file, sha256_file
from vectorload.storage.columns import file_name, write_lines, write_npy, write_varchar
from vectorload.storage.deltas import DELTA_TS_FILE, delete_columns, delta_key_file
from vectorload.storage.generation import DELTAS_DIR, LockedCollection, collection_lock
from vectorload.storage.hnsw import build_index
from vectorload.storage.manifest import (
    DELTA_MANIFEST_NAME,
    MANIFEST_NAME,
    delta_to_dict,
    manifest_to_dict,
    retired_marker_name,
    retired_to_dict,
)
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


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _replace_manifest(staging: Path, manifest: SegmentManifest) -> None:
    """Rewrite a staged (invisible) segment's manifest: temporary file, fsync, rename."""
    tmp = staging / f".{MANIFEST_NAME}.tmp"
    try:
        with durable_open(tmp) as fh:
            fh.write(dump_json(manifest_to_dict(manifest)))
        os.replace(tmp, staging / MANIFEST_NAME)
    finally:
        tmp.unlink(missing_ok=True)


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Create `path` durably with `data` unless it exists (temporary file + `link(2)`)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with durable_open(tmp) as fh:
            fh.write(data)
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


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
            with collection_lock(self.root / collection) as locked:
                if not pdir.is_dir():
                    pdir.mkdir()
                    fsync_dir(pdir.parent)
                    locked.bump()

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
        timestamps: object | None = None,
    ) -> SegmentManifest:
        """Validate, build and atomically publish one sealed segment.

        `on_rows(n)` is called as index building progresses (n rows per vector field chunk, so the
        total is rows × number of vector fields). `timestamps`: the rows' hybrid timestamps
        (`$ts`, int64 >= 0); without them no `$ts` file is written and every row reads as 0."""
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
            timestamps=timestamps,
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
        timestamps: object | None = None,
    ) -> StagedSegment:
        """Validate and build one segment in staging, invisible until `publish` (or `discard`).
        `schema`: as for `stage_columns`; `timestamps`: as for `write_segment`."""
        segment_id = new_segment_id() if segment_id is None else segment_id
        schema, _ = self._target(collection, partition, segment_id, M, ef_construction, schema)
        columns = prepare_segment(schema, vectors, primary_keys, scalars, dynamic, timestamps)
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
        compacted_from: tuple[str, ...] = (),
        deltas_applied: int = 0,
    ) -> StagedSegment:
        """`stage_segment` for columns `validate.prepare_segment` (or an equivalent check) produced.

        With `schema`, staging needs neither `collection.json` nor the partition directory: an
        ingest builds everything before it creates them, so a failed one leaves nothing visible.
        `compacted_from` / `deltas_applied` record a compaction's lineage in the manifest."""
        segment_id = new_segment_id() if segment_id is None else segment_id
        schema, target = self._target(collection, partition, segment_id, M, ef_construction, schema)
        self.clean_staging(collection)
        index_params = {f.name: {"M": M, "ef_construction": ef_construction} for f in schema.vector_fields}
        staging = self._new_staging(collection)
        try:
            files = self._write_files(schema, columns, staging, M, ef_construction, num_threads, on_rows)
            ts = columns.timestamps
            manifest = SegmentManifest(
                collection=collection,
                partition=partition,
                segment_id=segment_id,
                rows=columns.rows,
                files=files,
                index_params=index_params,
                created_at=_now_iso(),
                compacted_from=tuple(compacted_from),
                min_ts=None if ts is None else int(ts.min()),
                max_ts=None if ts is None else int(ts.max()),
                deltas_applied=deltas_applied,
            )
            with durable_open(staging / MANIFEST_NAME) as fh:
                fh.write(dump_json(manifest_to_dict(manifest)))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return StagedSegment(manifest, staging, target)

    def _new_staging(self, collection: str) -> Path:
        staging_root = self.root / collection / STAGING_DIR
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = staging_root / uuid.uuid4().hex
        staging.mkdir()
        owner = staging / OWNER_FILE
        owner.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        return staging

    def publish(self, staged: StagedSegment) -> SegmentManifest:
        """Make a staged segment visible: under the collection lock, record the generation it is
        published at in its manifest, drop `.owner`, one `rename(2)`, then move the generation."""
        m = staged.manifest
        try:
            with collection_lock(self.root / m.collection) as locked:
                return self.publish_locked(staged, locked)
        except BaseException:
            self.discard(staged)
            raise

    def publish_locked(self, staged: StagedSegment, locked: LockedCollection) -> SegmentManifest:
        """`publish` for a caller that holds the collection lock (compaction)."""
        m = staged.manifest
        if not staged.target.parent.is_dir():
            raise StorageError(
                "PartitionNotFound", f"partition {m.partition!r} not found in collection {m.collection!r}"
            )
        m = replace(m, generation=locked.current + 1)
        _replace_manifest(staged.staging, m)
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
        locked.bump()
        return m

    # -- retirement and deltas ---------------------------------------------------------------

    def retire_locked(
        self,
        locked: LockedCollection,
        partition: str,
        segment_ids: Sequence[str],
        replaced_by: tuple[str, ...],
        now: str | None = None,
    ) -> int:
        """Mark live segments retired (a compaction replaced them by `replaced_by`), then move the
        generation once. A segment already retired keeps its marker. Returns how many markers
        were written. The caller holds the collection lock."""
        collection = locked.cdir.name
        pdir = locked.cdir / partition
        written = 0
        for segment_id in segment_ids:
            if not (pdir / segment_id / MANIFEST_NAME).exists():
                raise StorageError(
                    "SegmentNotFound", f"segment {segment_id!r} not found in {collection}/{partition}"
                )
            marker = pdir / retired_marker_name(segment_id)
            doc = retired_to_dict(segment_id, replaced_by, now or _now_iso(), locked.current + 1)
            if _create_exclusive(marker, dump_json(doc)):
                written += 1
        if written:
            fsync_dir(pdir)
            locked.bump()
        return written

    def write_delta(
        self,
        collection: str,
        primary_keys: object,
        timestamps: object,
        partition: str | None = None,
    ) -> DeltaManifest:
        """Publish one delete record: each primary key is deleted at its timestamp (an int for
        all, or one per key; > 0), in `partition` or, when None, in every partition. A delete at
        t hides every row of that key whose `$ts` is < t. Keys repeated in the input keep their
        newest timestamp. Immutable and atomic: staged, then renamed into `.deltas/` under the
        collection lock with `seq` = the generation it is published at."""
        check_name("collection", collection, reason="InvalidArgument")
        schema = self.reader.schema(collection)
        if partition is not None:
            check_name("partition", partition, reason="InvalidArgument")
            if not (self.root / collection / partition).is_dir():
                raise StorageError(
                    "PartitionNotFound", f"partition {partition!r} not found in collection {collection!r}"
                )
        keys, ts = delete_columns(schema, primary_keys, timestamps)
        self.clean_staging(collection)
        staging = self._new_staging(collection)
        try:
            pk = schema.primary_key
            written = {pk.name: delta_key_file(pk), TS_FIELD: DELTA_TS_FILE}
            if isinstance(keys, list):
                write_varchar(staging / written[pk.name], keys)
            else:
                write_npy(staging / written[pk.name], keys)
            write_npy(staging / DELTA_TS_FILE, ts)
            files = {}
            for key, name in written.items():
                size, digest = sha256_file(staging / name)
                files[key] = SegmentFile(path=name, bytes=size, sha256=digest)
            deltas = self.root / collection / DELTAS_DIR
            with collection_lock(self.root / collection) as locked:
                seq = locked.current + 1
                delta = DeltaManifest(
                    collection=collection,
                    delta_id=f"{seq:016d}-{uuid.uuid4().hex[:12]}",
                    seq=seq,
                    partition=partition,
                    rows=len(keys),
                    min_ts=int(ts.min()),
                    max_ts=int(ts.max()),
                    files=files,
                    created_at=_now_iso(),
                )
                with durable_open(staging / DELTA_MANIFEST_NAME) as fh:
                    fh.write(dump_json(delta_to_dict(delta)))
                (staging / OWNER_FILE).unlink(missing_ok=True)
                fsync_dir(staging)
                if not deltas.is_dir():
                    deltas.mkdir()
                    fsync_dir(deltas.parent)
                os.rename(staging, deltas / delta.delta_id)
                fsync_dir(deltas)
                fsync_dir(staging.parent)
                locked.bump()
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return delta

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
        if columns.timestamps is not None:
            name = file_name(TS_FIELD)
            write_npy(staging / name, columns.timestamps)
            written[TS_FIELD] = name
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
