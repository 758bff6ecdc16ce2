"""The write path of the front door: collections, partitions and indexes; insert, upsert, delete
and flush with durable acknowledgements; the sealer and the background compactor.

Why this shape (docs/proxy.md, "The write path"): storage holds immutable sealed segments and
delete deltas, written under each collection's lock; the querynodes follow both. A write is
acknowledged once its record is in this process's write-ahead log on the shared storage, fsynced
(`wal.py`, group commit), so a kill -9 of anything right after the answer loses nothing. The
sealer turns the logged records into storage every `seal_interval` seconds (and on Flush):

- inserted and upserted rows of each (collection, partition) become one segment whose id names
  the log range it covers (`w-<instance>-<first seq>-<last seq>`), with each row's hybrid
  timestamp as `$ts` — replaying a log skips records a published segment covers, so a replay
  after a crash between publishing and checkpointing writes nothing twice;
- deletes and the deletes of upserted keys become deltas, published after the segments, so an
  upserted key is never without a visible version (the querynodes keep the newest row per key);
- then the log's checkpoint moves past what was sealed.

Timestamps come from one `HybridClock` per proxy (seeded above the newest timestamp in storage)
and are taken in log order, so a proxy's writes apply in the order they were acknowledged. Two
proxy replicas order their writes by their clocks (wall time in ms, then a counter): writes to
one key through different proxies within a clock-skew apart may resolve either way. `auto_id`
keys come from the storage root's id allocator (`vectorload.storage.ids`: blocks reserved under a
flock), not from the clock, so two proxies inserting in the same millisecond never share a key.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vectorload.storage.api import DEFAULT_PARTITION, CollectionSchema, StorageError
from vectorload.storage.compaction import collect_garbage, compact, pick_small_segments
from vectorload.storage.ids import IdAllocator
from vectorload.storage.properties import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_M,
    METRICS,
    CollectionProperties,
    IndexDefinition,
    read_properties,
    write_properties,
)
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.tso import HybridClock
from vectorload.storage.writer import CollectionWriter

from . import wal
from .errors import (
    MilvusError,
    collection_not_found,
    echo,
    parameter_invalid,
    partition_not_found,
    service_unavailable,
)
from .imports import ImportJobs
from .names import check_collection_name, check_partition_name
from .rows import Batch, newest_rows
from .wal import Record, WriteAheadLog

if TYPE_CHECKING:
    from .api import MilvusApi

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "w-"
_SEGMENT_RE = re.compile(r"^w-([0-9a-f]{12})-(\d{1,20})-(\d{1,20})$")
COMPACTOR_LOCK = ".compactor.lock"
INDEX_NOT_FOUND = 700
AUTOINDEX = "AUTOINDEX"
RECOVER_IMPORTS_EVERY = 10.0  # seconds between looks for import jobs whose proxy is gone
INLINE_ROWS = 256  # a request this small is checked on the event loop: a thread hop costs more


@dataclass(frozen=True)
class WriteSettings:
    seal_interval: float = 0.25  # --seal-interval
    compaction: bool = True  # --no-compaction turns the background compactor off
    compaction_interval: float = 5.0  # --compaction-interval
    # segments under this many rows are merged (a merged output under it is merged again with new
    # small ones, so this bounds the rows one pass re-indexes) ...
    small_rows: int = 4096
    target_rows: int = 200_000  # ... into segments of at most this many
    gc_grace: float = 60.0  # --gc-grace: seconds a retired segment stays for searches in flight
    build_threads: int = -1  # hnswlib threads of a sealed segment's index build (-1: every core)
    upsert_delta_wait: float = 10.0  # at most this long an upsert's delete waits for its new rows to load
    compaction_threads: int = 1  # the compactor's: background work leaves the cores to sealing and searches
    import_root: Path | None = None  # --import-root: bulk import files (None: <storage root>/.import)
    import_stale_after: float = 60.0  # --import-stale-after: an import job silent this long is stopped


@dataclass(frozen=True)
class MutationOutcome:
    ids: list[Any]
    insert_count: int
    delete_count: int
    upsert_count: int
    timestamp: int


@dataclass
class _Log:
    """One log's records not yet sealed: this process's own, or an adopted one's."""

    instance: str
    directory: Path
    records: list[tuple[int, Record]] = field(default_factory=list)
    lock_fd: int | None = None
    own: bool = False


@dataclass
class _Deferred:
    """The deletes of upserted keys, published once every load of the collection holds the new
    rows (status.loadedCatalogGeneration >= the generation after the new segments) or at
    `deadline`."""

    instance: str
    collection: str
    seqs: tuple[int, ...]
    keys: dict[Any, int]  # key -> delete timestamp (the upsert's)
    generation: int
    deadline: float


async def to_batch(rows: int, convert: Callable[[], Batch]) -> Batch:
    """Check and convert a request's rows (`rows.batch_from_*`) without stalling the event loop.

    A large insert takes milliseconds to check (every float, every key) and may reserve a block
    of auto ids (a flock and an fsync): it runs in a worker thread, so searches and health checks
    on the same loop go on. A small one runs inline — the hop would be most of its cost.
    """
    if rows <= INLINE_ROWS:
        return convert()
    return await asyncio.to_thread(convert)


def covered_ranges(
    reader: FilesystemReader, collection: str, partition: str, instance: str
) -> list[tuple[int, int]]:
    """The log ranges of `instance` that segments of the partition (live, retired, or merged into
    a compacted one) already hold."""
    names: set[str] = set()
    try:
        live, retired = reader.partition_segments(collection, partition)
    except StorageError:
        return []
    for m in live:
        names.add(m.segment_id)
        names.update(m.compacted_from)
    for r in retired:
        names.add(r.manifest.segment_id)
        names.update(r.manifest.compacted_from)
    out = []
    for name in names:
        match = _SEGMENT_RE.match(name)
        if match and match.group(1) == instance:
            out.append((int(match.group(2)), int(match.group(3))))
    return out


def _covered(seq: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(lo <= seq <= hi for lo, hi in ranges)


def parse_pk_list(expr: str, pk_name: str, pk_type: str) -> list[Any] | None:
    """The keys of `pk in [..]` / `pk == v`, the form every SDK's delete(ids=...) sends; None
    for any other expression (evaluated by the querynodes)."""
    text = expr.strip()
    m = re.fullmatch(rf"{re.escape(pk_name)}\s+in\s+\[(.*)\]", text, re.S) or re.fullmatch(
        rf"{re.escape(pk_name)}\s*==\s*(.+)", text, re.S
    )
    if m is None:
        return None
    body = m.group(1).strip()
    if not body:
        return []
    parts = [p.strip() for p in body.split(",")]
    out: list[Any] = []
    for part in parts:
        if pk_type == "int64":
            if not re.fullmatch(r"-?\d+", part):
                return None
            out.append(int(part))
        else:
            if len(part) < 2 or part[0] != part[-1] or part[0] not in "'\"" or "\\" in part:
                return None
            inner = part[1:-1]
            if part[0] in inner:
                return None
            out.append(inner)
    return out


class WriteApi:
    """The write methods of the domain layer (`api.MilvusApi` keeps the read side and loads)."""

    def __init__(self, root: Path, api: MilvusApi, settings: WriteSettings | None = None) -> None:
        self.root = Path(root)
        self.api = api
        self.settings = settings or WriteSettings()
        self.writer = CollectionWriter(self.root)
        self.reader = FilesystemReader(self.root)
        self.clock = HybridClock()
        self.clock.observe(self._newest_ts())
        # auto ids: blocks reserved on the storage root, unique across proxy replicas
        self.ids = IdAllocator(self.root, self.clock.now)
        self.imports = ImportJobs(  # bulk import jobs (imports.py)
            self, self.settings.import_root, stale_after=self.settings.import_stale_after
        )
        self._lock = threading.Lock()
        self._seal_lock = threading.Lock()  # one seal at a time
        self.metrics = api.metrics
        self.wal = WriteAheadLog(self.root, self._durable, on_commit=self._committed)
        self.metrics.unsealed_records.set_function(self._unsealed)
        self._own = _Log(self.wal.instance, self.wal.directory, own=True)
        self._adopted: dict[str, _Log] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sealed_seq = 0  # own log: every record <= this is in storage
        self._last_seq = 0  # own log: the newest durable record
        self._seal_done = threading.Condition()
        self._held: frozenset[int] = frozenset()  # own records waiting for an index
        # upserts whose new rows are sealed and whose deletes wait for those rows to be loaded
        self._deferred: list[_Deferred] = []
        self._deferred_seqs: set[tuple[str, int]] = set()
        self.seals = 0
        self.compactions = 0
        self._threads = [
            threading.Thread(target=self._seal_loop, name="sealer", daemon=True),
        ]
        if self.settings.compaction:
            self._threads.append(threading.Thread(target=self._compact_loop, name="compactor", daemon=True))

    def _committed(self, records: int, seconds: float) -> None:
        self.metrics.wal_fsyncs.inc()
        self.metrics.wal_records.inc(records)
        self.metrics.wal_fsync_seconds.observe(seconds)

    def _unsealed(self) -> float:
        with self._lock:
            return float(len(self._own.records) + sum(len(lg.records) for lg in self._adopted.values()))

    def start(self) -> None:
        self._adopt()
        self.imports.recover()
        for t in self._threads:
            t.start()

    def close(self) -> None:
        """Stop the sealer after one last seal (a graceful stop leaves nothing to replay)."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(30)
        try:
            self.seal_once()
        except Exception:
            log.exception("the last seal failed; the log is replayed by the next proxy")
        self.wal.close()
        with self._lock:
            adopted, self._adopted = list(self._adopted.values()), {}
            fds = [lg.lock_fd for lg in adopted if lg.lock_fd is not None]
            for lg in adopted:
                lg.lock_fd = None
        for fd in fds:  # unsealed records stay in those logs: the next proxy adopts them
            os.close(fd)

    def _newest_ts(self) -> int:
        newest = 0
        try:
            for name in self.reader.list_collections():
                for d in self.reader.deltas(name):
                    newest = max(newest, d.max_ts)
                for p in self.reader.partitions(name):
                    for m in self.reader.segments(name, p):
                        newest = max(newest, m.max_ts or 0)
        except (StorageError, OSError) as exc:
            log.warning("reading the newest timestamp in storage: %s", exc)
        return newest

    # --------------------------------------------------------------------------- schema side

    def _schema(self, collection: str) -> CollectionSchema:
        try:
            return self.reader.schema(check_collection_name(collection))
        except StorageError as exc:
            if exc.reason == "CollectionNotFound":
                raise collection_not_found(collection) from None
            raise service_unavailable(f"collection {collection}: {exc.message}") from None

    def schema(self, collection: str) -> CollectionSchema:
        """The collection's schema, or Milvus' collection-not-found."""
        return self._schema(collection)

    async def check_partition(self, collection: str, partition: str) -> str:
        """The partition's name (`_default` for none), or Milvus' partition-not-found."""
        return await self._partition(collection, partition)

    def properties(self, collection: str) -> CollectionProperties:
        try:
            return read_properties(self.reader.backend, collection)
        except StorageError as exc:
            raise service_unavailable(exc.message) from None

    def is_managed(self, collection: str) -> bool:
        """Created through the front door (its indexes are definitions, not what segments hold)."""
        return self.reader.backend.exists(f"{collection}/properties.json")

    async def create_collection(self, database: str, schema: CollectionSchema, auto_id: bool) -> None:
        self.api.databases.namespace(database)
        check_collection_name(schema.name)
        await asyncio.to_thread(self._create_collection, schema, auto_id)
        self.api.catalog.invalidate(schema.name)

    def _create_collection(self, schema: CollectionSchema, auto_id: bool) -> None:
        if self.reader.backend.exists(f"{schema.name}/collection.json"):
            existing = self.reader.schema(schema.name)
            if existing.fields != schema.fields or existing.dynamic_field != schema.dynamic_field:
                raise parameter_invalid(
                    f"create duplicate collection with different parameters, collection: {schema.name}"
                )
            return
        try:
            self.writer.create_collection(schema)
        except StorageError as exc:
            raise parameter_invalid(f"collection {schema.name}: {exc.message}") from None
        write_properties(self.root, schema.name, CollectionProperties(auto_id=auto_id))

    async def drop_collection(self, database: str, collection: str) -> None:
        self._schema(collection)
        for db in self.api.databases.names():  # every database's load of it goes first
            await self.api.release_collection(db, collection)
        with self._lock:
            for lg in (self._own, *self._adopted.values()):
                lg.records = [(s, r) for s, r in lg.records if r.collection != collection]
        await asyncio.to_thread(self._remove_storage, collection)
        self.api.catalog.invalidate(collection)

    def _remove_storage(self, collection: str) -> None:
        cdir = self.root / collection
        trash = self.root / f".dropped-{collection}-{uuid.uuid4().hex[:8]}"
        with self._seal_lock:
            os.rename(cdir, trash)  # one atomic step for every reader
        shutil.rmtree(trash, ignore_errors=True)

    async def create_partition(self, database: str, collection: str, partition: str) -> None:
        self.api.databases.namespace(database)
        self._schema(collection)
        check_partition_name(partition)
        info = await self.api.catalog.get(collection)
        if info.partition(partition) is not None:
            raise parameter_invalid(f"partition already exists[partition={partition}]")
        await asyncio.to_thread(self.writer.create_partition, collection, partition)
        self.api.catalog.invalidate(collection)

    async def drop_partition(self, database: str, collection: str, partition: str) -> None:
        namespace = self.api.databases.namespace(database)
        self._schema(collection)
        check_partition_name(partition)
        if partition == DEFAULT_PARTITION:
            raise parameter_invalid("default partition cannot be deleted")
        if partition not in self.reader.partitions(collection):
            raise partition_not_found(partition)
        view = self.api.kube.view(namespace, collection)
        if view is not None and not view.deleting and (not view.partitions or partition in view.partitions):
            raise MilvusError(
                65535, "partition cannot be dropped, partition is loaded, please release it first"
            )
        await asyncio.to_thread(self._remove_partition, collection, partition)
        self.api.catalog.invalidate(collection)

    def _remove_partition(self, collection: str, partition: str) -> None:
        from vectorload.storage.generation import collection_lock

        cdir = self.root / collection
        trash = cdir / f".dropped-{partition}-{uuid.uuid4().hex[:8]}"
        with self._seal_lock, collection_lock(cdir) as locked:
            os.rename(cdir / partition, trash)
            locked.bump()
        shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------------------------ indexes

    async def create_index(
        self, database: str, collection: str, field_name: str, index_name: str, params: dict[str, str]
    ) -> None:
        self.api.databases.namespace(database)
        schema = self._schema(collection)
        f = schema.field(field_name)
        if f is None:
            raise parameter_invalid(f"cannot create index on non-exist field: {echo(field_name)}")
        if f.type != "float_vector":
            raise parameter_invalid(
                f"index on scalar field {f.name} is not supported: vectorload indexes float vector fields "
                "(HNSW); filters scan the loaded columns"
            )
        definition = index_definition(f.name, index_name or f.name, params)
        await asyncio.to_thread(self._set_index, collection, definition)
        self.api.catalog.invalidate(collection)

    def _set_index(self, collection: str, definition: IndexDefinition) -> None:
        props = self.properties(collection)
        current = props.index(definition.field)
        if current is not None:
            if current == definition:
                return
            raise parameter_invalid("at most one distinct index is allowed per field")
        built = [m for p in self.reader.partitions(collection) for m in self.reader.segments(collection, p)]
        schema = self.reader.schema(collection)
        f = schema.field(definition.field)
        if built and f is not None and f.metric != definition.metric:
            raise parameter_invalid(
                f"metric type {definition.metric.upper()} of the new index differs from "
                f"{(f.metric or 'l2').upper()}, the metric the collection's {len(built)} sealed segments "
                "were built with; drop and recreate the collection to change it"
            )
        write_properties(self.root, collection, props.with_index(definition))
        self._wake.set()  # rows waiting for this index can seal now

    async def drop_index(self, database: str, collection: str, field_name: str, index_name: str) -> None:
        namespace = self.api.databases.namespace(database)
        self._schema(collection)
        props = self.properties(collection)
        target = next(
            (
                i
                for i in props.indexes
                if (field_name and i.field == field_name) or (index_name and i.index_name == index_name)
            ),
            None,
        )
        if target is None:
            return  # Milvus: dropping an index that does not exist succeeds
        view = self.api.kube.view(namespace, collection)
        if view is not None and not view.deleting:
            raise MilvusError(65535, "index cannot be dropped, collection is loaded, please release it first")
        await asyncio.to_thread(write_properties, self.root, collection, props.without_index(target.field))
        self.api.catalog.invalidate(collection)

    def check_loadable(self, collection: str) -> None:
        """A managed collection loads only with an index on every vector field (Milvus' rule)."""
        try:
            if not self.is_managed(collection):
                return
            schema = self.reader.schema(collection)
        except StorageError:
            return  # the load call itself reports it
        props = self.properties(collection)
        missing = [f.name for f in schema.vector_fields if props.index(f.name) is None]
        if missing:
            raise MilvusError(
                INDEX_NOT_FOUND,
                f"there is no vector index on field: [{', '.join(missing)}], please create index firstly: "
                f"index not found[collection={collection}]",
            )

    # ------------------------------------------------------------------------------- writes

    def auto_id(self, collection: str) -> bool:
        return self.properties(collection).auto_id

    def allocate_ids(self, n: int) -> list[int]:
        try:
            return list(self.ids.allocate(n))
        except StorageError as exc:
            raise service_unavailable(f"allocating auto ids: {exc.message}") from None
        except OSError as exc:
            raise service_unavailable(f"allocating auto ids in {self.ids.directory}: {exc}") from None

    async def _partition(self, collection: str, partition: str) -> str:
        name = partition or DEFAULT_PARTITION
        check_partition_name(name)
        info = await self.api.catalog.get(collection)
        if info.partition(name) is None and name not in self.reader.partitions(collection):
            raise partition_not_found(name)
        return name

    async def insert(
        self, database: str, collection: str, partition: str, batch: Batch, upsert: bool = False
    ) -> MutationOutcome:
        self.api.databases.namespace(database)
        self._schema(collection)
        name = await self._partition(collection, partition)
        record = Record(
            op="upsert" if upsert else "insert",
            collection=collection,
            ts=0,
            pks=list(batch.pks),
            partition=name,
            vectors={
                k: np.ascontiguousarray(v, dtype=np.float32).tobytes() for k, v in batch.vectors.items()
            },
            scalars=batch.scalars,
            dynamic=batch.dynamic,
        )
        ts = await self._append(record)
        n = batch.rows
        self.metrics.rows_written.labels(record.op).inc(n)
        return MutationOutcome(list(batch.pks), n, n if upsert else 0, n if upsert else 0, ts)

    async def delete(self, database: str, collection: str, partition: str, expr: str) -> MutationOutcome:
        schema = self._schema(collection)
        pk = schema.primary_key
        if partition:
            await self._partition(collection, partition)
        if not expr.strip():
            raise parameter_invalid("delete plan can't be empty or always true")
        keys = parse_pk_list(expr, pk.name, pk.type)
        if keys is None:  # any other filter: the loaded rows that match it, through the querynodes
            outcome = await self.api.query(
                database, collection, expr, [pk.name], [partition] if partition else [], {}
            )
            keys = [row[pk.name] for row in outcome.rows]
        keys = list(dict.fromkeys(keys))
        if not keys:
            return MutationOutcome([], 0, 0, 0, self.clock.now())
        record = Record(op="delete", collection=collection, ts=0, pks=keys, partition=partition or None)
        ts = await self._append(record)
        self.metrics.rows_written.labels("delete").inc(len(keys))
        return MutationOutcome(keys, 0, len(keys), 0, ts)

    async def _append(self, record: Record) -> int:
        try:
            future = self.wal.append(record, stamp=self.clock.now)
        except RuntimeError as exc:
            raise service_unavailable(str(exc)) from None
        try:
            _, ts = await asyncio.wrap_future(future)
        except OSError as exc:
            raise service_unavailable(f"the write-ahead log could not be written: {exc}") from None
        return ts

    def _durable(self, seq: int, record: Record) -> None:
        with self._lock:
            self._own.records.append((seq, record))
            self._last_seq = seq

    async def flush(self, database: str, collections: Sequence[str]) -> dict[str, int]:
        """Seal everything logged so far; returns each collection's flush timestamp."""
        self.api.databases.namespace(database)
        for name in collections:
            self._schema(name)
        with self._lock:
            target = self._last_seq
        await asyncio.to_thread(self._wait_sealed, target)
        ts = self.clock.now()
        return {name: ts for name in collections}

    def _wait_sealed(self, target: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._wake.set()
            with self._seal_done:
                if self._sealed_through_or_held(target):
                    return
                self._seal_done.wait(0.05)
            if time.monotonic() > deadline:
                raise service_unavailable("flush: the sealer did not finish in time")

    def _sealed_through_or_held(self, target: int) -> bool:
        """Every own record <= target is sealed, or waits for an index (it is durable in the log)."""
        with self._lock:
            waiting = [s for s, r in self._own.records if s <= target]
            held = self._held
            adopted = any(lg.records for lg in self._adopted.values())
        return not adopted and all(s in held for s in waiting)

    # ------------------------------------------------------------------------------- sealer

    def _seal_loop(self) -> None:
        recover_every = min(RECOVER_IMPORTS_EVERY, self.settings.import_stale_after / 2)
        recover_at = time.monotonic() + recover_every
        while not self._stop.is_set():
            self._wake.wait(self.settings.seal_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.seal_once()
            except Exception:
                log.exception("sealing failed; retrying")
                time.sleep(0.5)
            if time.monotonic() >= recover_at:
                recover_at = time.monotonic() + recover_every
                try:
                    self.imports.recover()
                except Exception:
                    log.exception("rolling back stopped import jobs failed; retrying")

    def seal_once(self) -> int:
        """Seal what every log (own and adopted) holds; returns the number of records sealed."""
        with self._seal_lock:
            started = time.perf_counter()
            sealed = 0
            with self._lock:
                logs = [self._own, *self._adopted.values()]
                snapshot = {lg.instance: list(lg.records) for lg in logs}
                newest_durable = self._last_seq
            held_all: set[int] = set()
            for lg in logs:
                records = snapshot[lg.instance]
                done, held = self._seal_records(lg.instance, records) if records else (set(), set())
                sealed += len(done)
                with self._lock:
                    lg.records = [(s, r) for s, r in lg.records if s not in done]
                    remaining = [s for s, _ in lg.records]
                if lg.own:
                    held_all = held
                    through = min(remaining) - 1 if remaining else newest_durable
                    if through > self._sealed_seq:
                        self._sealed_seq = through
                        self.wal.rotate()
                        self.wal.checkpoint(through)
                elif not remaining:
                    self._retire_adopted(lg)
            self._publish_deferred()
            with self._lock:
                self._held = frozenset(held_all)
            self.seals += 1
            if sealed:
                self.metrics.seal_seconds.observe(time.perf_counter() - started)
        with self._seal_done:
            self._seal_done.notify_all()
        return sealed

    def _seal_records(self, instance: str, records: list[tuple[int, Record]]) -> tuple[set[int], set[int]]:
        """Write one log's records; returns (sealed seqs, seqs held for a missing index)."""
        done: set[int] = set()
        held: set[int] = set()
        by_collection: dict[str, list[tuple[int, Record]]] = defaultdict(list)
        for seq, r in records:
            by_collection[r.collection].append((seq, r))
        for collection, items in by_collection.items():
            try:
                schema = self.reader.schema(collection)
                props = read_properties(self.reader.backend, collection)
            except StorageError as exc:
                if exc.reason == "CollectionNotFound":  # dropped: its writes go with it
                    done.update(s for s, _ in items)
                    continue
                raise
            managed = self.is_managed(collection)
            if managed and any(props.index(f.name) is None for f in schema.vector_fields):
                held.update(s for s, _ in items)
                continue
            fresh = [(s, r) for s, r in items if (instance, s) not in self._deferred_seqs]
            deferred = self._seal_collection(instance, schema, props, fresh) if fresh else set()
            done.update(s for s, _ in fresh if s not in deferred)
            if fresh:
                self.api.catalog.invalidate(collection)  # row counts and index progress at once
        return done, held

    def _seal_collection(
        self,
        instance: str,
        schema: CollectionSchema,
        props: CollectionProperties,
        items: list[tuple[int, Record]],
    ) -> set[int]:
        """Write the records' segments, then their deltas; returns the seqs of upserts whose
        deletes wait (`_Deferred`) for the new rows to be loaded."""
        collection = schema.name
        rows_by_partition: dict[str, list[tuple[int, Record]]] = defaultdict(list)
        deletes: dict[str | None, dict[Any, int]] = defaultdict(dict)
        upserted: dict[Any, int] = {}
        upsert_seqs: list[int] = []
        for seq, r in items:
            if r.op in ("insert", "upsert"):
                rows_by_partition[r.partition or DEFAULT_PARTITION].append((seq, r))
            if r.op == "upsert":
                upsert_seqs.append(seq)
                for k in r.pks:
                    upserted[k] = max(upserted.get(k, 0), r.ts)
            elif r.op == "delete":
                for k in r.pks:
                    deletes[r.partition][k] = max(deletes[r.partition].get(k, 0), r.ts)
        # segments first, then the deltas
        for partition, recs in rows_by_partition.items():
            if partition not in self.reader.partitions(collection):
                log.warning(
                    "partition %s/%s was dropped: %d logged rows dropped with it",
                    collection,
                    partition,
                    sum(len(r.pks) for _, r in recs),
                )
                continue
            ranges = covered_ranges(self.reader, collection, partition, instance)
            fresh = [(s, r) for s, r in recs if not _covered(s, ranges)]
            if fresh:
                self._write_segment(instance, schema, props, partition, fresh)
        for scope, keys in deletes.items():
            if scope is not None and scope not in self.reader.partitions(collection):
                continue
            pks = list(keys)
            self.writer.write_delta(collection, pks, [keys[k] for k in pks], scope)
        if not upserted:
            return set()
        if not self._views(collection):  # not loaded anywhere: nothing to wait for
            pks = list(upserted)
            self.writer.write_delta(collection, pks, [upserted[k] for k in pks], None)
            return set()
        deferred = _Deferred(
            instance,
            collection,
            tuple(upsert_seqs),
            upserted,
            self.reader.generation(collection),
            time.monotonic() + self.settings.upsert_delta_wait,
        )
        with self._lock:
            self._deferred.append(deferred)
            self._deferred_seqs.update((instance, s) for s in upsert_seqs)
        return set(upsert_seqs)

    def _views(self, collection: str) -> list[Any]:
        """The CollectionLoads of the collection in every database, being deleted ones aside."""
        views = []
        for namespace in self.api.databases.served:
            view = self.api.kube.view(namespace, collection)
            if view is not None and not view.deleting:
                views.append(view)
        return views

    def _publish_deferred(self) -> None:
        """Publish the deletes of upserts whose new rows every load of the collection holds now
        (or that waited `upsert_delta_wait`): until then each querynode shows the newest row of a
        key among what it holds, so no node hides the old row before another serves the new one."""
        with self._lock:
            pending = list(self._deferred)
        now = time.monotonic()
        for d in pending:
            # the operator's target holds the new segments (generation) and none of the new data
            # is still loading (loadedCatalogGeneration moves while small new data loads)
            ready = all(
                v.loaded_catalog_generation >= d.generation and v.pending_segments == 0
                for v in self._views(d.collection)
            )
            if not ready and now < d.deadline:
                continue
            if not ready:
                log.warning(
                    "upsert deletes of %s published before its new rows were loaded (waited %.0f s)",
                    d.collection,
                    self.settings.upsert_delta_wait,
                )
            try:
                pks = list(d.keys)
                self.writer.write_delta(d.collection, pks, [d.keys[k] for k in pks], None)
            except StorageError as exc:
                if exc.reason != "CollectionNotFound":
                    raise
            with self._lock:
                self._deferred.remove(d)
                self._deferred_seqs.difference_update((d.instance, s) for s in d.seqs)
                for lg in (self._own, *self._adopted.values()):
                    if lg.instance == d.instance:
                        lg.records = [(s, r) for s, r in lg.records if s not in d.seqs]

    def _write_segment(
        self,
        instance: str,
        schema: CollectionSchema,
        props: CollectionProperties,
        partition: str,
        recs: list[tuple[int, Record]],
    ) -> None:
        dims = {f.name: int(f.dim or 0) for f in schema.vector_fields}
        batches = [
            (
                Batch(
                    r.pks,
                    {
                        n: np.frombuffer(r.vectors[n], dtype=np.float32).reshape(-1, d)
                        for n, d in dims.items()
                    },
                    r.scalars,
                    r.dynamic,
                ),
                r.ts,
            )
            for _, r in recs
        ]
        columns = newest_rows(schema, batches)
        first, last = recs[0][0], recs[-1][0]
        segment_id = f"{SEGMENT_PREFIX}{instance}-{first}-{last}"
        m, efc = self.index_params(schema, props, partition)
        self.writer.write_segment(
            schema.name,
            partition,
            segment_id,
            vectors=columns.vectors,
            primary_keys=columns.primary_keys,
            scalars=columns.scalars,
            dynamic=columns.dynamic,
            M=m,
            ef_construction=efc,
            num_threads=self.settings.build_threads,
            timestamps=columns.timestamps,
        )

    def index_params(
        self, schema: CollectionSchema, props: CollectionProperties, partition: str
    ) -> tuple[int, int]:
        """M and efConstruction of a new segment: the collection's index definition, else what
        its segments were built with."""
        index = next((props.index(f.name) for f in schema.vector_fields if props.index(f.name)), None)
        return (index.M, index.ef_construction) if index else self._built_with(schema, partition)

    def _built_with(self, schema: CollectionSchema, partition: str) -> tuple[int, int]:
        """An ingested collection (no index definitions): the parameters its segments were built
        with, so new segments can be compacted with them."""
        for p in (partition, *self.reader.partitions(schema.name)):
            for seg in self.reader.segments(schema.name, p):
                for params in seg.index_params.values():
                    return int(params.get("M", DEFAULT_M)), int(
                        params.get("ef_construction", DEFAULT_EF_CONSTRUCTION)
                    )
        return DEFAULT_M, DEFAULT_EF_CONSTRUCTION

    # ------------------------------------------------------------------------- adopted logs

    def _adopt(self) -> None:
        """Take over the logs of proxy processes that are gone (their flock is free)."""
        for directory in wal.orphan_logs(self.root, self.wal.instance):
            if directory.name in self._adopted:
                continue
            try:
                fd = wal.try_lock(directory, create=False)
            except OSError:
                continue  # removed meanwhile (adopted by another proxy)
            if fd is None:
                continue  # its owner is alive
            if not directory.is_dir():
                os.close(fd)
                continue
            records = wal.replay(directory)
            log.info("adopting the write-ahead log %s: %d records to seal", directory.name, len(records))
            adopted = _Log(directory.name, directory, records, fd)
            with self._lock:
                self._adopted[directory.name] = adopted
            if not records:
                self._retire_adopted(adopted)

    def _retire_adopted(self, lg: _Log) -> None:
        """Remove a wholly sealed adopted log, then let go of its flock. The sealer and the
        adopting compactor can both get here for one log: only the caller that takes it out of
        `_adopted` closes its descriptor — a second `os.close` of the same number would close
        whatever the process opened since under it (grpc's epoll descriptor: the proxy aborted)."""
        with self._lock:
            if self._adopted.get(lg.instance) is not lg:
                return  # retired already
            del self._adopted[lg.instance]
            fd, lg.lock_fd = lg.lock_fd, None
        wal.remove_log(lg.directory)  # still holding the flock: no other proxy adopts it meanwhile
        if fd is not None:
            os.close(fd)

    # ---------------------------------------------------------------------------- compactor

    def _compact_loop(self) -> None:
        while not self._stop.wait(self.settings.compaction_interval):
            try:
                self.compact_once()
                self._adopt()
            except Exception:
                log.exception("background compaction failed; retrying")

    def compact_once(self) -> int:
        """Merge small segments of every collection whose compactor lock this process takes."""
        merged = 0
        for collection in self.reader.list_collections():
            cdir = self.root / collection
            try:
                fd = os.open(cdir / COMPACTOR_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another proxy compacts this collection
                merged += self._compact_collection(collection)
            finally:
                os.close(fd)
        return merged

    def _compact_collection(self, collection: str) -> int:
        merged = 0
        try:
            partitions = self.reader.partitions(collection)
        except StorageError:
            return 0
        for partition in partitions:
            try:
                segments = self.reader.segments(collection, partition)
            except StorageError:
                continue
            segments = [m for m in segments if self.imports.settled(m.segment_id)]
            groups = pick_small_segments(
                segments, small_rows=self.settings.small_rows, target_rows=self.settings.target_rows
            )
            for group in groups:
                try:
                    compact(
                        self.root, collection, partition, group, num_threads=self.settings.compaction_threads
                    )
                except StorageError as exc:
                    log.info("compaction of %s/%s skipped: %s", collection, partition, exc.message)
                    continue
                merged += 1
                self.compactions += 1
                self.metrics.compactions.inc()
        with self._lock:
            pending = [s for s, r in self._own.records if r.collection == collection]
        sealed_through = None if pending else self.clock.now()
        try:
            collect_garbage(
                self.root, collection, grace_s=self.settings.gc_grace, sealed_through=sealed_through
            )
        except StorageError as exc:
            log.info("garbage collection of %s skipped: %s", collection, exc.message)
        return merged


def index_definition(field_name: str, index_name: str, params: dict[str, str]) -> IndexDefinition:
    """An index definition from CreateIndex's parameters (`index_type`, `metric_type`, `params`
    JSON or flat `M` / `efConstruction`), or Milvus' error naming what storage cannot build."""
    import json

    flat = dict(params)
    nested = flat.pop("params", None)
    if nested:
        try:
            extra = json.loads(nested)
        except ValueError:
            raise parameter_invalid(f"index params {echo(nested)} are not JSON") from None
        if isinstance(extra, dict):
            flat.update({k: str(v) for k, v in extra.items()})
    kind = (flat.get("index_type") or AUTOINDEX).upper()
    if kind not in ("HNSW", AUTOINDEX):
        raise parameter_invalid(
            f"invalid index type: {echo(kind)}: vectorload builds HNSW (hnswlib) indexes only; use "
            "index_type HNSW or AUTOINDEX"
        )
    metric = (flat.get("metric_type") or "COSINE").upper()
    if metric not in METRICS:
        raise parameter_invalid(
            f"metric type {echo(metric)} not found or not supported, supported: [L2 IP COSINE]"
        )

    def number(key: str, default: int, lo: int, hi: int) -> int:
        raw = flat.get(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise parameter_invalid(f"{key} {echo(raw)} is not an integer") from None
        if not lo <= value <= hi:
            raise parameter_invalid(f"param '{key}' ({value}) should be in range [{lo}, {hi}]")
        return value

    m = number("M", DEFAULT_M, 2, 2048)
    efc = number("efConstruction", DEFAULT_EF_CONSTRUCTION, 1, 2**31 - 1)
    return IndexDefinition(field_name, index_name, METRICS[metric], m, efc)
