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
- **All or nothing for bad data.** Every row of every file is checked with the insert path's own
  rules (`rows.batch_from_rows`, Milvus' texts) before the first row is written; a bad row fails
  the job with the reason naming the file and nothing becomes visible. Then the rows go through the
  write path in chunks (`WriteApi.insert`: durable in the write-ahead log, sealed, loaded
  automatically), and the job is Completed once they are sealed into segments. A proxy killed in
  the middle of the second pass leaves the chunks it had acknowledged (they are durable) and the
  job Failed ("the proxy running it stopped") — Milvus' import is atomic there, this one is not.
- **Job state on the storage root** (`<root>/.imports/<job id>.json`, replaced atomically), so a
  `GetImportState` reaching another replica than the one that runs the job answers the same. The
  runner rewrites it at every chunk; a Pending or Importing job not rewritten for
  `STALE_AFTER` seconds belongs to a proxy that is gone and reads as Failed. Job ids come from the
  storage root's id allocator: unique across replicas. Finished jobs are kept `RETENTION` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vectorload.storage.api import StorageError
from vectorload.storage.atomic import write_json_atomic

from .errors import MilvusError, echo, import_failed, parameter_invalid
from .rows import batch_from_rows

if TYPE_CHECKING:
    from .writes import WriteApi

log = logging.getLogger(__name__)

JOBS_DIR = ".imports"
IMPORT_DIR = ".import"
CHUNK_ROWS = 10_000
STALE_AFTER = 60.0
RETENTION = 24 * 3600.0
MAX_JSON_BYTES = 512 << 20  # a row-based JSON file is parsed whole
MAX_FILES = 1024
STOPPED = "the proxy running the import stopped"
STATES = ("Pending", "Importing", "Completed", "Failed")
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

    @property
    def progress(self) -> int:
        """0-100, as Milvus reports it."""
        if self.state == "Completed":
            return 100
        if self.total_rows <= 0:
            return 0
        return min(99, self.imported_rows * 100 // self.total_rows)


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


def read_chunks(path: Path, name: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[list[Any]]:
    """The file's rows, `chunk_rows` at a time (Parquet streamed by record batch)."""
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
            for rb in pf.iter_batches(batch_size=chunk_rows):
                yield [_row(r, name) for r in rb.to_pylist()]
        except MilvusError:
            raise
        except Exception as exc:  # pyarrow's errors: the file is not (valid) Parquet
            raise parameter_invalid(
                f"import file {echo(name)}: not a readable Parquet file ({exc})"
            ) from None
        return
    if path.stat().st_size > MAX_JSON_BYTES:
        raise parameter_invalid(
            f"import file {echo(name)}: a row-based JSON file is limited to {MAX_JSON_BYTES} bytes; "
            "use Parquet for larger files"
        )
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise parameter_invalid(f"import file {echo(name)}: not valid JSON ({exc})") from None
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise parameter_invalid(f'import file {echo(name)}: expected {{"rows": [...]}} or a list of rows')
    for i in range(0, len(rows), chunk_rows):
        yield [_row(r, name) for r in rows[i : i + chunk_rows]]


class ImportJobs:
    """The import jobs of one storage root; runs the jobs this process accepted."""

    def __init__(
        self, writes: WriteApi, import_root: Path | None = None, chunk_rows: int = CHUNK_ROWS
    ) -> None:
        self.writes = writes
        self.import_root = import_root or writes.root / IMPORT_DIR
        self.directory = writes.root / JOBS_DIR
        self.chunk_rows = chunk_rows
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
        try:
            data = json.loads(path.read_bytes())
            data.pop("formatVersion", None)
            job = ImportJob(**data)
        except (OSError, ValueError, TypeError):
            return None  # being replaced, or not a job file
        if job.state in ("Pending", "Importing") and time.time() - job.updated > STALE_AFTER:
            return replace(job, state="Failed", reason=STOPPED)
        return job

    def get(self, job_id: int) -> ImportJob:
        job = self._load(self._path(job_id)) if job_id > 0 else None
        if job is None:
            raise import_failed(f"import job not found: jobID={job_id}")
        return job

    def list(self, database: str, collection: str = "", limit: int = 0) -> list[ImportJob]:
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
        try:
            job = await asyncio.to_thread(self._save, replace(job, state="Importing"))
            total = await asyncio.to_thread(self._check, job)
            job = await asyncio.to_thread(self._save, replace(job, total_rows=total))
            job = await self._insert(job)
            await self.writes.flush(job.database, [job.collection])
            job = replace(job, state="Completed", imported_rows=total, finished=time.time())
        except asyncio.CancelledError:
            job = replace(
                job, state="Failed", reason="the proxy running the import stopped", finished=time.time()
            )
            with contextlib.suppress(OSError):
                self._save(job)
            raise
        except MilvusError as exc:
            job = replace(job, state="Failed", reason=exc.message, finished=time.time())
        except (OSError, StorageError) as exc:
            job = replace(
                job, state="Failed", reason=f"reading the import files: {exc}", finished=time.time()
            )
        except Exception as exc:  # a bug: the job fails with it, the proxy keeps serving
            log.exception("import job %d failed", job.id)
            job = replace(job, state="Failed", reason=f"internal error: {exc}", finished=time.time())
        self.writes.metrics.import_jobs.labels(job.state).inc()
        try:
            await asyncio.to_thread(self._save, job)
        except OSError:
            log.exception("writing the state of import job %d", job.id)
        log.info(
            "import job %d of %s: %s (%d rows) %s",
            job.id,
            job.collection,
            job.state,
            job.imported_rows,
            job.reason,
        )

    def _schema_and_auto_id(self, job: ImportJob) -> tuple[Any, bool]:
        return self.writes.schema(job.collection), self.writes.auto_id(job.collection)

    def _check(self, job: ImportJob) -> int:
        """Every row of every file, checked as an insert checks it; the row count."""
        schema, auto_id = self._schema_and_auto_id(job)
        total = 0
        for name in job.files:
            path = resolve(self.import_root, name)
            rows_in_file = 0
            for rows in read_chunks(path, name, self.chunk_rows):
                try:
                    batch_from_rows(schema, auto_id, rows, lambda n: list(range(n)), False)
                except MilvusError as exc:
                    raise MilvusError(exc.code, f"import file {name}: {exc.message}") from None
                rows_in_file += len(rows)
            if rows_in_file == 0:
                raise parameter_invalid(f"import file {echo(name)} has no rows")
            total += rows_in_file
        return total

    async def _insert(self, job: ImportJob) -> ImportJob:
        schema, auto_id = await asyncio.to_thread(self._schema_and_auto_id, job)
        for name in job.files:
            path = await asyncio.to_thread(resolve, self.import_root, name)
            chunks = read_chunks(path, name, self.chunk_rows)
            while (rows := await asyncio.to_thread(next, chunks, None)) is not None:
                batch = await asyncio.to_thread(
                    batch_from_rows, schema, auto_id, rows, self.writes.allocate_ids, False
                )
                await self.writes.insert(job.database, job.collection, job.partition, batch)
                self.writes.metrics.import_rows.inc(batch.rows)
                ranges = list(job.id_ranges)
                if auto_id and batch.pks:
                    ranges += [int(batch.pks[0]), int(batch.pks[-1])]
                job = replace(job, imported_rows=job.imported_rows + batch.rows, id_ranges=ranges)
                job = await asyncio.to_thread(self._save, job)
        return job

    async def close(self) -> None:
        """Stop running jobs (their state turns Failed once stale: their acknowledged chunks stay)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
