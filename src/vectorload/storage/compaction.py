"""Compaction (merge sealed segments of one partition, applying deletes) and garbage collection.

Why: small segments pile up when data arrives continuously (each hnswlib index has a fixed cost
of 2.6 MB and every segment is a unit of planning, loading and searching), and deleted rows stay
in their segments until something rewrites them. `compact` rewrites N segments as one; the
operator then swaps the new segment in the way Milvus swaps targets — the new copy is loaded
before the old ones are released — so searches never see a row twice or miss one.

Crash safety (docs/storage-format.md, "Compaction"): the steps are

1. read: verify and read every source, read the deltas up to the generation read first, keep the
   newest row of each primary key and drop the rows a delete hides;
2. stage the merged segment (same index parameters), invisible;
3. under the collection lock: check the sources are still live, publish the new segment (its
   manifest names them in `compactedFrom`), then write a retirement marker on each source naming
   the new segment, moving the generation after each step.

A process killed before 3 leaves only a staging directory (removed by `clean_staging`). Killed
inside 3, it leaves the new segment live beside sources that are still live or already retired:
readers resolve a primary key found twice to the newest row, so no row is lost or shown twice,
and running the same compaction again finds the published segment and only finishes the
retirement. Retired segments stay readable until `collect_garbage` removes them after a grace
period, long enough for every querynode to have swapped to the new segment.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import (
    DYNAMIC_FIELD,
    TS_FIELD,
    CollectionSchema,
    SegmentManifest,
    StorageError,
)
from vectorload.storage.atomic import fsync_dir
from vectorload.storage.columns import Column, read_column, read_timestamps
from vectorload.storage.deltas import DeleteSet, newest_rows, read_delta
from vectorload.storage.generation import DELTAS_DIR, collection_lock
from vectorload.storage.hnsw import open_index
from vectorload.storage.manifest import RETIRED_SUFFIX, retired_marker_name
from vectorload.storage.names import check_name, check_segment_id
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.validate import SegmentColumns
from vectorload.storage.writer import CollectionWriter, new_segment_id

TRASH_DIR = ".trash"
DEFAULT_GRACE_SECONDS = 600.0

Step = Callable[[str], None]
STEPS = ("read", "staged", "published", "retired")
"""What `on_step` is called with, in order (a compaction that finds every row deleted skips
"staged" and "published")."""


@dataclass(frozen=True)
class CompactionResult:
    collection: str
    partition: str
    sources: tuple[str, ...]  # the segments merged (now retired)
    segment: SegmentManifest | None  # the new segment; None when every row was deleted
    rows_in: int
    rows_out: int
    deleted_rows: int  # rows a delete hid (dropped for good)
    duplicate_rows: int  # older rows of a primary key found again in a newer row
    resumed: bool  # an earlier, interrupted run had published: this one finished its retirement


def _bad(message: str) -> StorageError:
    return StorageError("InvalidArgument", message)


def _index_params(schema: CollectionSchema, sources: Sequence[SegmentManifest]) -> tuple[int, int]:
    """The (M, ef_construction) every source's indexes were built with (they must agree)."""
    seen: set[tuple[int, int]] = set()
    for m in sources:
        for f in schema.vector_fields:
            params = m.index_params.get(f.name)
            if params is None or "M" not in params or "ef_construction" not in params:
                raise _bad(f"segment {m.segment_id}: no index parameters recorded for {f.name!r}")
            seen.add((params["M"], params["ef_construction"]))
    if len(seen) != 1:
        listed = ", ".join(f"M={a} ef_construction={b}" for a, b in sorted(seen))
        raise _bad(f"segments were built with different index parameters ({listed}); compact them apart")
    return next(iter(seen))


@dataclass
class _Rows:
    """The rows of every source, concatenated in source order."""

    pks: npt.NDArray[Any]
    ts: npt.NDArray[np.int64]
    scalars: dict[str, list[Column]]
    vectors: dict[str, list[npt.NDArray[np.float32]]]
    dynamic: list[bytes] | None


def _read_sources(
    reader: FilesystemReader, schema: CollectionSchema, sources: Sequence[SegmentManifest]
) -> _Rows:
    pk = schema.primary_key
    keys: list[Column] = []
    stamps: list[npt.NDArray[np.int64]] = []
    scalars: dict[str, list[Column]] = {f.name: [] for f in schema.scalar_fields}
    vectors: dict[str, list[npt.NDArray[np.float32]]] = {f.name: [] for f in schema.vector_fields}
    dynamic: list[bytes] | None = [] if schema.dynamic_field else None
    for m in sources:
        reader.verify_segment(m)
        keys.append(read_column(reader.segment_file_path(m, pk.name), pk))
        for f in schema.scalar_fields:
            scalars[f.name].append(read_column(reader.segment_file_path(m, f.name), f))
        for f in schema.vector_fields:
            index = open_index(reader.segment_file_path(m, f.name), f)
            got = np.asarray(index.get_items(np.arange(m.rows, dtype=np.int64)), dtype=np.float32)
            vectors[f.name].append(got.reshape(m.rows, f.dim or 0))
        if dynamic is not None:
            if DYNAMIC_FIELD in m.files:
                lines = reader.segment_file_path(m, DYNAMIC_FIELD).read_bytes().split(b"\n")[:-1]
                if len(lines) != m.rows:
                    raise StorageError("CorruptFile", f"segment {m.segment_id}: {len(lines)} $meta lines")
                dynamic.extend(lines)
            else:
                dynamic.extend([b"{}"] * m.rows)
        if m.has_timestamps:
            stamps.append(read_timestamps(reader.segment_file_path(m, TS_FIELD), m.rows))
        else:
            stamps.append(np.zeros(m.rows, dtype=np.int64))
    pks: npt.NDArray[Any] = (
        np.asarray([k for part in keys for k in part], dtype=object)
        if pk.type == "varchar"
        else np.concatenate([np.asarray(k, dtype=np.int64) for k in keys])
    )
    return _Rows(pks, np.concatenate(stamps), scalars, vectors, dynamic)


def _take(parts: list[Column], rows: npt.NDArray[np.intp]) -> Column:
    if parts and isinstance(parts[0], list):
        flat = [v for part in parts for v in part]
        return [flat[i] for i in rows.tolist()]
    return np.concatenate([np.asarray(p) for p in parts])[rows]


def _delete_set(
    reader: FilesystemReader, schema: CollectionSchema, partition: str, generation: int
) -> DeleteSet:
    deletes = DeleteSet(schema.primary_key.type)
    for delta in reader.deltas(schema.name):
        if delta.seq <= generation and delta.partition in (None, partition):
            keys, ts = read_delta(reader, delta, schema)
            deletes.add(keys, ts, delta.partition)
    return deletes


def compact(
    root: Path,
    collection: str,
    partition: str,
    segment_ids: Sequence[str],
    *,
    segment_id: str | None = None,
    num_threads: int = -1,
    on_step: Step | None = None,
) -> CompactionResult:
    """Merge live segments of one partition into one new segment and retire them.

    Drops rows hidden by the collection's deltas (those published up to the generation read at
    the start) and all but the newest row of each primary key, rebuilds every index with the
    sources' parameters, publishes the new segment with `compactedFrom` = the sources, then marks
    each source retired, naming it. Running it again after an interruption converges (see the
    module docstring). Errors: `InvalidArgument` (no ids, different index parameters),
    `SegmentNotFound`, `SegmentRetired` (a source was compacted by another run)."""
    step = on_step or (lambda _: None)
    check_name("collection", collection, reason="InvalidArgument")
    check_name("partition", partition, reason="InvalidArgument")
    ids = tuple(sorted(set(segment_ids)))
    if not ids:
        raise _bad("compaction needs at least one segment id")
    for i in ids:
        check_segment_id(i, reason="InvalidArgument")
    writer = CollectionWriter(root)
    reader = writer.reader
    schema = reader.schema(collection)
    cdir = Path(root) / collection
    live = {m.segment_id: m for m in reader.segments(collection, partition)}
    retired = {r.manifest.segment_id: r for r in reader.retired_segments(collection, partition)}

    earlier = [m for m in live.values() if m.compacted_from and set(m.compacted_from) <= set(ids)]
    if earlier:  # an interrupted run published already: finish its retirement
        out = earlier[0]
        leftover = sorted(set(ids) - set(out.compacted_from) - set(retired))
        if leftover:
            raise _bad(
                f"segments {', '.join(leftover)} are not part of the earlier compaction into "
                f"{out.segment_id}; compact them separately"
            )
        with collection_lock(cdir) as locked:
            writer.retire_locked(
                locked, partition, [i for i in out.compacted_from if i in live], (out.segment_id,)
            )
        step("retired")
        return CompactionResult(collection, partition, out.compacted_from, out, 0, out.rows, 0, 0, True)

    for i in ids:
        r = retired.get(i)
        if r is not None and r.replaced_by:
            raise StorageError(
                "SegmentRetired",
                f"segment {i} of {collection}/{partition} was compacted into {', '.join(r.replaced_by)}",
            )
        if r is None and i not in live:
            raise StorageError("SegmentNotFound", f"segment {i!r} not found in {collection}/{partition}")
    sources = [live[i] for i in ids if i in live]
    if not sources:  # an earlier run found every row deleted and retired them all
        step("retired")
        return CompactionResult(collection, partition, (), None, 0, 0, 0, 0, True)
    M, ef_construction = _index_params(schema, sources)

    generation = reader.generation(collection)
    deletes = _delete_set(reader, schema, partition, generation)
    rows = _read_sources(reader, schema, sources)
    total = len(rows.pks)
    keep = newest_rows(rows.pks, rows.ts, np.arange(total, dtype=np.int64))
    duplicates = total - int(keep.sum())
    hidden = deletes.hidden(rows.pks, rows.ts, partition)
    deleted = int((keep & hidden).sum())
    keep &= ~hidden
    chosen = np.flatnonzero(keep)
    source_ids = tuple(m.segment_id for m in sources)
    step("read")

    if len(chosen) == 0:
        with collection_lock(cdir) as locked:
            _require_live(reader, collection, partition, source_ids)
            writer.retire_locked(locked, partition, source_ids, ())
        step("retired")
        return CompactionResult(collection, partition, source_ids, None, total, 0, deleted, duplicates, False)

    pk_values: Column = (
        [str(v) for v in rows.pks[chosen].tolist()]
        if schema.primary_key.type == "varchar"
        else rows.pks[chosen]
    )
    columns = SegmentColumns(
        rows=len(chosen),
        vectors={name: np.concatenate(parts)[chosen] for name, parts in rows.vectors.items()},
        primary_keys=pk_values,
        scalars={name: _take(parts, chosen) for name, parts in rows.scalars.items()},
        dynamic=None if rows.dynamic is None else [rows.dynamic[i] for i in chosen.tolist()],
        timestamps=rows.ts[chosen].astype("<i8"),
    )
    staged = writer.stage_columns(
        collection,
        partition,
        segment_id or new_segment_id(),
        columns,
        M=M,
        ef_construction=ef_construction,
        num_threads=num_threads,
        schema=schema,
        compacted_from=source_ids,
        deltas_applied=generation,
    )
    step("staged")
    try:
        with collection_lock(cdir) as locked:
            _require_live(reader, collection, partition, source_ids)
            manifest = writer.publish_locked(staged, locked)
            step("published")
            writer.retire_locked(locked, partition, source_ids, (manifest.segment_id,))
            step("retired")
    finally:
        writer.discard(staged)  # nothing left to remove once published
    return CompactionResult(
        collection, partition, source_ids, manifest, total, len(chosen), deleted, duplicates, False
    )


def _require_live(reader: FilesystemReader, collection: str, partition: str, ids: Sequence[str]) -> None:
    """Under the lock: every source is still live (no concurrent compaction retired one)."""
    live = {m.segment_id for m in reader.segments(collection, partition)}
    gone = [i for i in ids if i not in live]
    if gone:
        raise StorageError(
            "SegmentRetired",
            f"segments {', '.join(gone)} of {collection}/{partition} were retired by another "
            "compaction meanwhile",
        )


# ---------------------------------------------------------------------------- garbage collection


@dataclass(frozen=True)
class GarbageResult:
    segments: tuple[str, ...]  # "<partition>/<segment id>" removed
    deltas: tuple[str, ...]  # delta ids removed
    markers: int  # retirement markers removed


def _age(retired_at: str, now: float) -> float:
    try:
        return now - datetime.fromisoformat(retired_at).timestamp()
    except ValueError:
        return float("inf")  # an unreadable time never protects a segment forever


def collect_garbage(
    root: Path,
    collection: str,
    *,
    grace_s: float = DEFAULT_GRACE_SECONDS,
    now: float | None = None,
    sealed_through: int | None = None,
) -> GarbageResult:
    """Remove retired segments retired at least `grace_s` seconds ago (wall time `now`), markers
    whose segment is gone, and — only when the caller says every row with a timestamp below
    `sealed_through` is in a published segment — deltas no segment can need any more: each
    segment of the delta's scope either applied it (`deltasApplied` >= its seq) or has only rows
    at least as new as its newest delete (`minTs` >= its `maxTs`). Without `sealed_through` no
    delta is removed: a row acknowledged before a delete may still be on its way into a segment.
    Removal renames into `<collection>/.trash/` under the collection lock (atomic for readers),
    then deletes outside it."""
    wall = time.time() if now is None else now
    check_name("collection", collection, reason="InvalidArgument")
    reader = FilesystemReader(root)
    reader.schema(collection)
    cdir = Path(root) / collection
    trash = cdir / TRASH_DIR
    removed_segments: list[str] = []
    removed_deltas: list[str] = []
    markers = 0
    with collection_lock(cdir) as locked:
        segments_left: list[SegmentManifest] = []
        for partition in reader.partitions(collection):
            pdir = cdir / partition
            for m in reader.segments(collection, partition):
                segments_left.append(m)
            for r in reader.retired_segments(collection, partition):
                sid = r.manifest.segment_id
                if _age(r.retired_at, wall) < grace_s:
                    segments_left.append(r.manifest)
                    continue
                _to_trash(pdir / sid, trash)
                (pdir / retired_marker_name(sid)).unlink(missing_ok=True)
                removed_segments.append(f"{partition}/{sid}")
                markers += 1
            markers += _orphan_markers(pdir)
        if sealed_through is not None:
            for delta in reader.deltas(collection):
                if delta.max_ts > sealed_through:
                    continue
                scope = [m for m in segments_left if delta.partition in (None, m.partition)]
                if all(
                    m.deltas_applied >= delta.seq or (m.min_ts is not None and m.min_ts >= delta.max_ts)
                    for m in scope
                ):
                    _to_trash(cdir / DELTAS_DIR / delta.delta_id, trash)
                    removed_deltas.append(delta.delta_id)
        if removed_segments or removed_deltas or markers:
            for partition in reader.partitions(collection):
                fsync_dir(cdir / partition)
            if removed_deltas:
                fsync_dir(cdir / DELTAS_DIR)
            locked.bump()
    shutil.rmtree(trash, ignore_errors=True)
    return GarbageResult(tuple(removed_segments), tuple(removed_deltas), markers)


def _to_trash(path: Path, trash: Path) -> None:
    trash.mkdir(exist_ok=True)
    os.rename(path, trash / uuid.uuid4().hex)


def _orphan_markers(pdir: Path) -> int:
    """Remove retirement markers whose segment directory is gone (an interrupted collection)."""
    count = 0
    for entry in pdir.iterdir():
        name = entry.name
        if name.endswith(RETIRED_SUFFIX) and not (pdir / name.removesuffix(RETIRED_SUFFIX)).is_dir():
            entry.unlink(missing_ok=True)
            count += 1
    return count


def pick_small_segments(
    segments: Sequence[SegmentManifest], *, small_rows: int, target_rows: int, min_group: int = 2
) -> list[tuple[str, ...]]:
    """Groups of small live segments of one partition worth compacting (a simple policy for the
    background compactor): segments under `small_rows` rows, oldest id first, packed greedily into
    groups of at most `target_rows` rows; only groups of at least `min_group` segments."""
    if small_rows < 1 or target_rows < 1 or min_group < 1:
        raise _bad("small_rows, target_rows and min_group must be >= 1")
    groups: list[tuple[str, ...]] = []
    current: list[str] = []
    rows = 0
    for m in sorted((m for m in segments if m.rows < small_rows), key=lambda m: m.segment_id):
        if current and rows + m.rows > target_rows:
            groups.append(tuple(current))
            current, rows = [], 0
        current.append(m.segment_id)
        rows += m.rows
    if current:
        groups.append(tuple(current))
    return [g for g in groups if len(g) >= min_group]
