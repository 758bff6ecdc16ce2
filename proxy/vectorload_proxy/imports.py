"""Bulk import, as Milvus serves it (gRPC `Import` / `GetImportState` / `ListImportTasks`, which
pymilvus' `utility.do_bulk_insert` uses, and REST v2 `jobs/import/{create,describe,list}`, which
`pymilvus.bulk_writer.bulk_import` uses): files users already have — Parquet, or Milvus'
row-based JSON — become rows of a collection as one job whose state any proxy replica answers.

Why this shape:

- **Files on the shared storage.** Milvus reads import files from its object-storage bucket; a
  vectorload deployment shares one storage root, so files are paths relative to the import root
  (`--import-root`, default `<storage root>/.import`). A path that is absolute, has `..` or
  resolves outside the import root (a symlink) is refused: a client must never make the proxy read
  a file it was not given.
- **All or nothing.** Every row of every file is checked with the insert path's own rules
  (`rows.batch_from_rows`, Milvus' texts) as it is built into a segment in staging (invisible;
  storage's default segment size; one timestamp per chunk so a key given twice keeps its later
  row, as two inserts would); a bad row anywhere fails the job with the reason naming the file,
  what was staged is removed and nothing was ever visible. The rows do not go through the
  write-ahead log: the files are the durable copy until the job is Completed, so the rows are
  read and written once. A Parquet record batch of fields only is checked as columns
  (`rows.batch_from_arrow`, no Python object per vector value). The staged segments are published in
  one hold of the collection lock, and the job is Completed in the same hold. The segments are
  named in the job file before the first rename; a proxy that dies between two renames leaves
  them to `recover` (every proxy looks every 10 s, or every half `stale_after` if shorter), which
  retires the ones it published once the job is stale — Milvus' import is atomic too. Until then the
  compactor leaves an unfinished job's segments alone (`settled`), so retiring them takes back
  exactly their rows. A stopped proxy's staging directories are removed by storage's stale
  staging cleanup.
- **Job state on the storage root** (`<root>/.imports/<job id>.json`, replaced atomically), so a
  `GetImportState` reaching another replica than the one that runs the job answers the same. The
  runner rewrites it at every chunk and touches it six times per `stale_after` (an index build may
  take longer than a chunk); a Pending or Importing job neither rewritten nor touched for
  `stale_after` seconds (`--import-stale-after`, default 60) belongs to a proxy that is gone and
  reads as Failed. Job ids come from the
  storage root's id allocator: unique across replicas. Finished jobs are kept `RETENTION` seconds.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from vectorload.storage.api import DEFAULT_PARTITION, CollectionSchema, StorageError
from vectorload.storage.atomic import write_json_atomic
from vectorload.storage.generation import LockedCollection, collection_lock
from vectorload.storage.manifest import MANIFEST_NAME, retired_marker_name
from vectorload.storage.segsize import default_segment_rows
from vectorload.storage.writer import CollectionWriter, StagedSegment

from .errors import MilvusError, collection_not_found, echo, import_failed, parameter_invalid
from .rows import Batch, arrow_fields_only, batch_from_arrow, batch_from_rows, newest_rows

if TYPE_CHECKING:
    from .writes import WriteApi

log = logging.getLogger(__name__)

Chunk = list[Any] | Any  # row objects, or a pyarrow.RecordBatch

JOBS_DIR = ".imports"
IMPORT_DIR = ".import"
CHUNK_ROWS = 10_000
STALE_AFTER = 60.0  # default of --import-stale-after
HEARTBEAT_SHARE = 6  # a running job's file is touched every stale_after / 6 seconds
IMPORT_PREFIX = "i-"  # segment ids `i-<job id>-<n>`
RETENTION = 24 * 3600.0
MAX_JSON_BYTES = 512 << 20  # a row-based JSON file is parsed whole
MAX_FILES = 1024
STOPPED = "the proxy running the import stopped"
_JOB_FILE = re.compile(r"^(\d{1,19})\.json$")


@dataclass(frozen=True)
class ImportJob:
    id: int
    database: str
    collection: str
    partition: str
    files: list[str]
    state: str = "Pending"
    total_rows: int = 0
    imported_rows: int = 0
    reason: str = ""
    created: float = 0.0  # wall seconds
    updated: float = 0.0
    finished: float = 0.0
    id_ranges: list[int] = field(default_factory=list)  # auto ids as [first, last, first, last, ...]
    segments: list[list[str]] = field(default_factory=list)  # [partition, segment id]: being published
    percent: int = 0  # rows staged of the rows known so far; never goes back

    @property
    def progress(self) -> int:
        """0-100, as Milvus reports it."""
        return 100 if self.state == "Completed" else self.percent

    def staged(self, rows: int, total_rows: int, id_ranges: list[int]) -> ImportJob:
        """`rows` more rows staged, of `total_rows` known (a JSON file's rows are known once read)."""
        imported = self.imported_rows + rows
        percent = min(99, imported * 100 // total_rows) if total_rows > 0 else 0
        return replace(
            self,
            imported_rows=imported,
            total_rows=total_rows,
            id_ranges=id_ranges,
            percent=max(self.percent, percent),
        )


def _failed(job: ImportJob, reason: str) -> ImportJob:
    """The job ended without publishing anything: Failed, 0 rows imported, no publish intent."""
    return replace(job, state="Failed", reason=reason, finished=time.time(), segments=[], imported_rows=0)


class _Stopped(Exception):
    """The proxy is stopping (or the job was judged stopped): end the job as Failed."""


def _batch(schema: CollectionSchema, auto_id: bool, chunk: Chunk, ids: Any, name: str) -> Batch:
    """A chunk checked as an insert is: a Parquet record batch of fields only as columns, any
    other chunk as rows (`$meta` spread)."""
    try:
        if isinstance(chunk, list):
            return batch_from_rows(schema, auto_id, chunk, ids, False)
        if arrow_fields_only(schema, chunk.schema.names):
            return batch_from_arrow(schema, auto_id, chunk, ids)
        return batch_from_rows(schema, auto_id, _arrow_rows(chunk, name), ids, False)
    except MilvusError as exc:
        raise MilvusError(exc.code, f"import file {name}: {exc.message}") from None


def _arrow_rows(record_batch: Any, name: str) -> list[Any]:
    return [_row(r, name) for r in record_batch.to_pylist()]


def _chunk_rows(chunk: Chunk) -> int:
    return len(chunk) if isinstance(chunk, list) else int(chunk.num_rows)


def _retire(writer: CollectionWriter, locked: LockedCollection, segments: Sequence[Sequence[str]]) -> int:
    """Retire the live ones of `segments` ([partition, segment id]) as holding no rows; the
    caller holds the collection lock. Returns how many were retired."""
    by_partition: dict[str, list[str]] = {}
    for partition, segment_id in segments:
        pdir = locked.cdir / partition
        if (pdir / segment_id / MANIFEST_NAME).exists() and not (
            pdir / retired_marker_name(segment_id)
        ).exists():
            by_partition.setdefault(partition, []).append(segment_id)
    return sum(writer.retire_locked(locked, p, ids, replaced_by=()) for p, ids in by_partition.items())


def resolve(import_root: Path, name: str) -> Path:
    """The file `name` inside the import root, or 1100 naming it."""
    if not name or "\x00" in name or name.startswith("/") or "\\" in name:
        raise parameter_invalid(f"import file {echo(name)}: a path relative to the import root is required")
    parts = Path(name).parts
    if ".." in parts:
        raise parameter_invalid(f"import file {echo(name)}: '..' is not allowed")
    root = import_root.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise parameter_invalid(f"import file {echo(name)} resolves outside the import root")
    if not path.is_file():
        raise parameter_invalid(f"import file {echo(name)} does not exist in the import root")
    return path


def check_files(files: Sequence[str]) -> list[str]:
    """Milvus' import takes one JSON or Parquet file per entry (a set of `.npy` files is its numpy
    form, which vectorload does not read)."""
    if not files:
        raise parameter_invalid("import request is empty: no files given")
    if len(files) > MAX_FILES:
        raise parameter_invalid(f"at most {MAX_FILES} files per import, got {len(files)}")
    for name in files:
        if not (name.endswith(".json") or name.endswith(".parquet")):
            raise parameter_invalid(
                f"import file {echo(name)}: unsupported file type (vectorload imports .json row-based "
                "and .parquet files; numpy file sets are not supported)"
            )
    return list(files)


def _row(raw: Any, where: str) -> Any:
    """A row with its `$meta` (the dynamic field as Milvus exports it: an object or its JSON text)
    spread into its keys."""
    if isinstance(raw, dict) and "$meta" in raw:
        meta = raw["$meta"]
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except ValueError:
                raise parameter_invalid(f"{where}: $meta is not a JSON object") from None
        if not isinstance(meta, dict):
            raise parameter_invalid(f"{where}: $meta is not a JSON object")
        return {**meta, **{k: v for k, v in raw.items() if k != "$meta"}}
    return raw


def open_rows(path: Path, name: str, chunk_rows: int = CHUNK_ROWS) -> tuple[int, Iterator[Chunk]]:
    """The file's row count and its chunks of `chunk_rows` rows: Parquet record batches
    (streamed, the count from the footer) or lists of row objects (a row-based JSON file, parsed
    whole, `$meta` spread)."""
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow's errors: the file is not (valid) Parquet
            raise _not_parquet(name, exc) from None
        return int(pf.metadata.num_rows), _parquet_chunks(pf, name, chunk_rows)
    if path.stat().st_size > MAX_JSON_BYTES:
        raise parameter_invalid(
            f"import file {echo(name)}: a row-based JSON file is limited to {MAX_JSON_BYTES} bytes; "
            "use Parquet for larger files"
        )
    try:
        data = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError as exc:
        raise parameter_invalid(f"import file {echo(name)}: not valid JSON ({exc})") from None
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise parameter_invalid(f'import file {echo(name)}: expected {{"rows": [...]}} or a list of rows')
    return len(rows), _json_chunks(rows, name, chunk_rows)


def _not_parquet(name: str, exc: Exception) -> MilvusError:
    return parameter_invalid(f"import file {echo(name)}: not a readable Parquet file ({exc})")


def _parquet_chunks(pf: Any, name: str, chunk_rows: int) -> Iterator[Chunk]:
    try:
        yield from pf.iter_batches(batch_size=chunk_rows)
    except Exception as exc:
        raise _not_parquet(name, exc) from None


def _json_chunks(rows: list[Any], name: str, chunk_rows: int) -> Iterator[list[Any]]:
    for i in range(0, len(rows), chunk_rows):
        yield [_row(r, name) for r in rows[i : i + chunk_rows]]


def read_chunks(path: Path, name: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[list[Any]]:
    """The file's rows as objects, `chunk_rows` at a time (`$meta` spread into keys)."""
    _, chunks = open_rows(path, name, chunk_rows)
    for chunk in chunks:
        yield chunk if isinstance(chunk, list) else _arrow_rows(chunk, name)


class ImportJobs:
    """The import jobs of one storage root; runs the jobs this process accepted."""

    def __init__(
        self,
        writes: WriteApi,
        import_root: Path | None = None,
        chunk_rows: int = CHUNK_ROWS,
        segment_rows: int = 0,  # 0: storage's default segment size for the schema
        stale_after: float = STALE_AFTER,  # --import-stale-after: the same on every replica
    ) -> None:
        self.writes = writes
        self.import_root = import_root or writes.root / IMPORT_DIR
        self.directory = writes.root / JOBS_DIR
        self.chunk_rows = chunk_rows
        self.segment_rows = segment_rows
        self.stale_after = stale_after
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ job state, shared
    def _path(self, job_id: int) -> Path:
        return self.directory / f"{job_id}.json"

    def _save(self, job: ImportJob) -> ImportJob:
        job = replace(job, updated=time.time())
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._path(job.id), {"formatVersion": 1, **asdict(job)})
        return job

    def _load(self, path: Path) -> ImportJob | None:
        job = self._read(path)
        if job is not None and self._stale(path, job):
            return replace(job, state="Failed", reason=STOPPED, imported_rows=0)  # nothing published
        return job

    def _read(self, path: Path) -> ImportJob | None:
        try:
            data = json.loads(path.read_bytes())
            data.pop("formatVersion", None)
            return ImportJob(**data)
        except (OSError, ValueError, TypeError):
            return None  # being replaced, or not a job file

    def _stale(self, path: Path, job: ImportJob) -> bool:
        """Pending or Importing, and neither rewritten nor touched (the runner's heartbeat) for
        `stale_after` seconds: its proxy is gone."""
        if job.state not in ("Pending", "Importing"):
            return False
        try:
            touched = path.stat().st_mtime
        except OSError:
            touched = 0.0
        return time.time() - max(job.updated, touched) > self.stale_after

    def _heartbeat(self, job_id: int) -> None:
        with contextlib.suppress(OSError):
            os.utime(self._path(job_id))

    def get(self, job_id: int) -> ImportJob:
        job = self._load(self._path(job_id)) if job_id > 0 else None
        if job is None:
            raise import_failed(f"import job not found: jobID={job_id}")
        return job

    def list(self, database: str, collection: str = "", limit: int = 0) -> builtins.list[ImportJob]:
        databases = self.writes.api.databases
        namespace = databases.namespace(database)  # an unknown database: Milvus' 800
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        jobs = []
        now = time.time()
        for n in names:
            if not _JOB_FILE.match(n):
                continue
            job = self._load(self.directory / n)
            if job is None:
                continue
            if job.finished and now - job.finished > RETENTION:
                with contextlib.suppress(OSError):
                    (self.directory / n).unlink()
                continue
            try:
                same_database = databases.namespace(job.database) == namespace  # "" is "default"
            except MilvusError:
                continue  # a database this proxy no longer serves
            if same_database and (not collection or job.collection == collection):
                jobs.append(job)
        jobs.sort(key=lambda j: (j.created, j.id))
        return jobs[-limit:] if limit > 0 else jobs

    # ------------------------------------------------------------------ accepting and running
    async def create(self, database: str, collection: str, partition: str, files: Sequence[str]) -> ImportJob:
        writes = self.writes
        writes.api.databases.namespace(database)
        names = check_files(files)
        info = await writes.api.catalog.get(collection)
        if partition:
            await writes.check_partition(info.name, partition)
        for name in names:
            await asyncio.to_thread(resolve, self.import_root, name)
        (job_id,) = writes.allocate_ids(1)
        now = time.time()
        job = ImportJob(job_id, database, info.name, partition, names, created=now)
        job = await asyncio.to_thread(self._save, job)
        task = asyncio.create_task(self._run(job), name=f"import-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: ImportJob) -> None:
        stop = threading.Event()
        beat = asyncio.create_task(self._beat(job.id))
        try:
            job = await asyncio.to_thread(self._execute, job, stop)
        except asyncio.CancelledError:
            # the worker ends at its next chunk: it records the job Failed and discards what it
            # staged (a publish under way completes: the job is then Completed)
            stop.set()
            raise
        finally:
            beat.cancel()
        self.writes.metrics.import_jobs.labels(job.state).inc()
        log.info(
            "import job %d of %s: %s (%d rows) %s",
            job.id,
            job.collection,
            job.state,
            job.imported_rows,
            job.reason,
        )

    async def _beat(self, job_id: int) -> None:
        while True:
            await asyncio.sleep(self.stale_after / HEARTBEAT_SHARE)
            await asyncio.to_thread(self._heartbeat, job_id)

    def _execute(self, job: ImportJob, stop: threading.Event) -> ImportJob:
        """The job, in a worker thread: check every row, stage the segments, publish them all."""
        staged: builtins.list[StagedSegment] = []
        try:
            job = self._save(replace(job, state="Importing"))
            job = self._stage(job, stop, staged)
            return self._publish(job, staged)
        except _Stopped:
            job = _failed(job, STOPPED)
        except MilvusError as exc:
            job = _failed(job, exc.message)
        except (OSError, StorageError) as exc:
            job = _failed(job, f"reading the import files: {exc}")
        except Exception as exc:  # a bug: the job fails with it, the proxy keeps serving
            log.exception("import job %d failed", job.id)
            job = _failed(job, f"internal error: {exc}")
        finally:
            for s in staged:  # not published (a published segment's staging directory is gone)
                self.writes.writer.discard(s)
        try:
            return self._save(job)
        except OSError:
            log.exception("writing the state of import job %d", job.id)
            return job

    def _schema_and_auto_id(self, job: ImportJob) -> tuple[Any, bool]:
        return self.writes.schema(job.collection), self.writes.auto_id(job.collection)

    def _stage(
        self, job: ImportJob, stop: threading.Event, staged: builtins.list[StagedSegment]
    ) -> ImportJob:
        """Every row, checked as an insert checks it, into segments built in staging (invisible
        until `_publish`: a bad row anywhere fails the job with nothing visible); each chunk has
        its own timestamp, so a key given twice resolves to its later row, as two inserts."""
        writes = self.writes
        schema, auto_id = self._schema_and_auto_id(job)
        partition = job.partition or DEFAULT_PARTITION
        m, efc = writes.index_params(schema, writes.properties(job.collection), partition)
        per_segment = self.segment_rows or default_segment_rows(schema, m)
        pending: builtins.list[tuple[Batch, int]] = []
        known = 0  # rows of the files opened so far
        for name in job.files:
            count, chunks = open_rows(resolve(self.import_root, name), name, self.chunk_rows)
            if count == 0:
                raise parameter_invalid(f"import file {echo(name)} has no rows")
            known += count
            for rows in chunks:
                if stop.is_set():
                    raise _Stopped
                batch = _batch(schema, auto_id, rows, writes.allocate_ids, name)
                pending.append((batch, writes.clock.now()))
                ranges = list(job.id_ranges)
                if auto_id and batch.pks:
                    ranges += [int(batch.pks[0]), int(batch.pks[-1])]
                if sum(b.rows for b, _ in pending) >= per_segment:
                    staged.append(self._stage_segment(job, schema, partition, pending, m, efc, len(staged)))
                    pending = []
                job = self._save(job.staged(batch.rows, known, ranges))
        if pending:
            staged.append(self._stage_segment(job, schema, partition, pending, m, efc, len(staged)))
        return job

    def _stage_segment(
        self,
        job: ImportJob,
        schema: CollectionSchema,
        partition: str,
        parts: builtins.list[tuple[Batch, int]],
        m: int,
        efc: int,
        n: int,
    ) -> StagedSegment:
        columns = newest_rows(schema, parts)
        return self.writes.writer.stage_segment(
            job.collection,
            partition,
            f"{IMPORT_PREFIX}{job.id}-{n}",
            vectors=columns.vectors,
            primary_keys=columns.primary_keys,
            scalars=columns.scalars,
            dynamic=columns.dynamic,
            M=m,
            ef_construction=efc,
            num_threads=self.writes.settings.build_threads,
            timestamps=columns.timestamps,
        )

    def _publish(self, job: ImportJob, staged: builtins.list[StagedSegment]) -> ImportJob:
        """Every staged segment, in one hold of the collection lock, and the job Completed in the
        same hold. The segments are named in the job file first: if this process dies in the
        middle, `recover` retires the ones it published."""
        names = [[s.manifest.partition, s.manifest.segment_id] for s in staged]
        job = self._save(replace(job, segments=names))
        cdir = self.writes.root / job.collection
        if not cdir.is_dir():
            raise collection_not_found(job.collection)
        with collection_lock(cdir) as locked:
            current = self._read(self._path(job.id))
            if current is None or current.state != "Importing":
                raise _Stopped  # judged stopped (another proxy's `recover`) while this one stalled
            published: builtins.list[list[str]] = []
            try:
                for s, name in zip(staged, names, strict=True):
                    self.writes.writer.publish_locked(s, locked)
                    published.append(name)
                done = replace(job, state="Completed", total_rows=job.imported_rows, finished=time.time())
                job = self._save(replace(done, segments=[]))
            except BaseException:
                _retire(self.writes.writer, locked, published)
                raise
        self.writes.metrics.import_rows.inc(job.total_rows)
        return job

    def settled(self, segment_id: str) -> bool:
        """Whether a segment may be compacted: not one of an import job still publishing (its
        rows must stay in segments `recover` can retire)."""
        if not segment_id.startswith(IMPORT_PREFIX):
            return True
        head = segment_id[len(IMPORT_PREFIX) :].split("-", 1)[0]
        if not head.isdigit():
            return True
        job = self._read(self._path(int(head)))
        return job is None or job.state not in ("Pending", "Importing")

    def recover(self) -> int:
        """Record the jobs of proxies that are gone as Failed; a job that was publishing has the
        segments it published retired first (under the collection lock), so an import is never
        half visible for longer than `stale_after`. Returns how many jobs it ended."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        ended = 0
        for n in names:
            if not _JOB_FILE.match(n):
                continue
            path = self.directory / n
            job = self._read(path)
            if job is None or not self._stale(path, job):
                continue
            cdir = self.writes.root / job.collection
            if job.segments and cdir.is_dir():
                with collection_lock(cdir) as locked:
                    job = self._read(path)  # again, under the lock a publisher holds
                    if job is None or not self._stale(path, job):
                        continue
                    retired = _retire(self.writes.writer, locked, job.segments)
                    reason = f"{STOPPED} while publishing; its {retired} published segments were retired"
                    self._save(_failed(job, reason))
            else:
                self._save(_failed(job, STOPPED))
            log.warning("import job %d of %s: its proxy stopped; recorded Failed", job.id, job.collection)
            ended += 1
        return ended

    async def close(self) -> None:
        """Stop running jobs: each records itself Failed at its next chunk and discards what it
        staged (a process killed instead leaves its job to `recover`)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
