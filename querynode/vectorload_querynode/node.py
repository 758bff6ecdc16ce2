"""The querynode service: catalog, load/release orchestration, distribution and data requests.

Everything here is synchronous and thread-safe; the aiohttp handlers call it through executors so
the event loop never blocks on storage, hnswlib or numpy.
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vectorload.storage.api import CollectionSchema, RetiredSegment, SegmentManifest, StorageError
from vectorload.storage.load_fields import LoadFieldsError, select_fields
from vectorload.storage.reader import FilesystemReader
from vectorload.wire import querynode as wire
from vectorload.wire.hits import HitColumns

from .admission import MemoryAccount, Refused
from .errors import ApiError
from .follower import DeltaFollower
from .hasher import Hasher
from .loader import LoadCancelled, LoadSpec, OpenedSegment, load_segment, memory_bytes, predicted_bytes
from .memory import malloc_trim, resident_bytes
from .metrics import Metrics
from .registry import LoadJob, Registry, SegmentKey
from .requests import GetRequest, LoadRequest, QueryRequest, ReleaseRequest, SearchRequest
from .search import (
    Deadline,
    Mask,
    Parallelism,
    PreparedSearch,
    not_loaded,
    run_get,
    run_prepared,
    run_query,
    select_partitions,
)
from .segment import LoadedSegment
from .settings import Settings

log = logging.getLogger("vectorload.querynode")

_NOT_FOUND_REASONS = {"CollectionNotFound", "PartitionNotFound", "SegmentNotFound"}


def storage_error(exc: StorageError) -> ApiError:
    if exc.reason in _NOT_FOUND_REASONS:
        return ApiError(404, exc.reason, exc.message)
    if exc.reason == "InvalidName":
        return ApiError(400, exc.reason, exc.message)
    return ApiError(500, exc.reason, exc.message)


def resolve_spec(schema: CollectionSchema, fields: list[str] | None, skip_dynamic: bool) -> LoadSpec:
    """The field set a load request asks for (storage's one rule, `select_fields`); 400
    FieldNotFound / InvalidFields when it cannot work."""
    try:
        selection = select_fields(schema, fields, skip_dynamic)
    except LoadFieldsError as exc:
        raise ApiError(400, exc.reason, exc.message) from exc
    return LoadSpec(selection.fields, selection.dynamic)


class QueryNode:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.node_name
        self.boot_id = uuid.uuid4().hex
        self.reader = FilesystemReader(settings.root)
        self.hasher = Hasher(helper=not settings.verify_in_process)
        helper = self.hasher.helper_pid
        # the helper's memory counts too: in a pod both processes share one memory limit
        overhead = resident_bytes() + (resident_bytes(helper) if helper is not None else 0)
        self.account = MemoryAccount(settings.memory_limit, settings.threshold, overhead=overhead)
        self.registry = Registry(self.account)
        self.metrics = Metrics(self.registry, self.account)
        self.load_pool = ThreadPoolExecutor(settings.load_concurrency, thread_name_prefix="load")
        self.data_pool = ThreadPoolExecutor(settings.search_workers, thread_name_prefix="data")
        self.io_pool = ThreadPoolExecutor(2, thread_name_prefix="io")
        # a search's segments side by side (never the data pool: a data worker waits on these)
        self.search_pool = ThreadPoolExecutor(settings.search_threads, thread_name_prefix="search")
        self.parallel = Parallelism(settings.search_threads, self.search_pool)
        self._queue: deque[_Queued] = deque()  # admitted loads waiting for a load worker, FIFO
        self._queue_lock = threading.Lock()
        self._loads_running = 0  # load jobs taken off the queue and not finished (under _queue_lock)
        self._open_ahead_segments = 2 * settings.load_concurrency
        self._schemas: dict[str, CollectionSchema] = {}
        self._schemas_lock = threading.Lock()
        # deletes and upserts published as deltas hide rows of the held segments (visibility.py)
        self.follower = DeltaFollower(self.reader, settings.delta_interval)
        self.follower.start()

    def close(self) -> None:
        self.follower.close()
        self.registry.cancel_all()
        for pool in (self.load_pool, self.data_pool, self.io_pool, self.search_pool):
            pool.shutdown(wait=False, cancel_futures=True)
        with self._queue_lock:
            for item in self._queue:
                if item.opened is not None:
                    item.opened.close()
            self._queue.clear()
        self.hasher.close()

    # ----------------------------------------------------------------------------- health

    def storage_readable(self) -> bool:
        try:
            self.reader.backend.list_dir("")
        except (StorageError, OSError):
            return False
        return True

    # ---------------------------------------------------------------------------- catalog

    def collections(self) -> wire.CatalogList:
        return wire.CatalogList(collections=tuple(self.reader.list_collections()))

    def _schema(self, collection: str) -> CollectionSchema:
        try:
            schema = self.reader.schema(collection)
        except StorageError as exc:
            raise storage_error(exc) from exc
        with self._schemas_lock:
            self._schemas[collection] = schema
        return schema

    def catalog(self, collection: str) -> wire.CollectionCatalog:
        schema = self._schema(collection)
        try:
            generation = self.reader.generation(collection)
            listed = {
                p: self.reader.partition_segments(collection, p) for p in self.reader.partitions(collection)
            }
            partitions = tuple(
                wire.PartitionCatalog(
                    name=p,
                    segments=tuple(_segment_summary(m, schema) for m in live),
                    retired=tuple(_retired_summary(r) for r in retired),
                )
                for p, (live, retired) in listed.items()
            )
            deltas = self.reader.deltas(collection)
        except StorageError as exc:
            raise storage_error(exc) from exc
        return wire.CollectionCatalog(
            name=collection,
            schema=schema,
            partitions=partitions,
            deltas=wire.DeltaSummary(count=len(deltas), newest_ts=max((d.max_ts for d in deltas), default=0)),
            generation=generation,
        )

    def catalog_tokens(self, collections: Sequence[str]) -> wire.CatalogTokens:
        """The ETag of each collection's catalog (collections the storage lacks are left out)."""
        tokens: dict[str, str] = {}
        for name in dict.fromkeys(collections):
            try:
                tokens[name] = f'"{self.reader.change_token(name)}"'
            except StorageError as exc:
                if exc.reason not in _NOT_FOUND_REASONS:
                    raise storage_error(exc) from exc
        return wire.CatalogTokens(tokens=tokens)

    def catalog_if_changed(
        self, collection: str, if_none_match: str | None
    ) -> tuple[str, wire.CollectionCatalog | None]:
        """(ETag, catalog), the catalog None when `If-None-Match` names the current ETag. The
        token is read before the catalog, so a change while it is built makes the next request
        read the catalog again rather than cache a stale one under a new tag."""
        try:
            etag = f'"{self.reader.change_token(collection)}"'
        except StorageError as exc:
            raise storage_error(exc) from exc
        if if_none_match is not None and etag_matches(if_none_match, etag):
            return etag, None
        return etag, self.catalog(collection)

    # ------------------------------------------------------------------------------- load

    def load(self, req: LoadRequest) -> wire.LoadAnswer:
        schema = self._schema(req.collection)
        spec = resolve_spec(schema, req.fields, req.skip_dynamic)
        try:
            if req.partition not in self.reader.partitions(req.collection):
                raise ApiError(
                    404,
                    "PartitionNotFound",
                    f"partition {req.partition} not found in collection {req.collection}",
                )
        except StorageError as exc:
            raise storage_error(exc) from exc
        return wire.LoadAnswer(
            results=tuple(self._load_one(schema, req, spec, segment_id) for segment_id in req.segments)
        )

    def _load_one(
        self, schema: CollectionSchema, req: LoadRequest, spec: LoadSpec, segment_id: str
    ) -> wire.LoadResult:
        def result(state: wire.LoadState, reason: str = "", message: str = "") -> wire.LoadResult:
            return wire.LoadResult(segment=segment_id, state=state, reason=reason, message=message)

        try:
            manifest = self.reader.segment(req.collection, req.partition, segment_id)
        except StorageError as exc:
            self.metrics.refusals.labels(exc.reason).inc()
            return result("refused", exc.reason, exc.message)
        key = SegmentKey(req.collection, req.partition, segment_id)
        predicted = predicted_bytes(manifest, spec, schema)
        try:
            decision, job = self.registry.request_load(key, spec, predicted)
        except Refused as exc:
            self.metrics.refusals.labels(exc.reason).inc()
            return result(
                "refused",
                exc.reason,
                f"segment {req.partition}/{segment_id} on node {self.name}: {exc.message}",
            )
        if job is not None:
            with self._queue_lock:
                self._queue.append(_Queued(job, schema, manifest))
            self._open_ahead()
            self.load_pool.submit(self._run_next)
        return result(decision)

    def _open_ahead(self) -> None:
        """Open the files of the next few queued segments and queue them for hashing, in queue
        order, so the sha256 helper works ahead of the loading threads (bounded: a few
        segments' descriptors)."""
        with self._queue_lock:
            for item in itertools.islice(self._queue, self._open_ahead_segments):
                if item.opened is not None or item.job.cancel.is_set():
                    continue
                try:
                    item.opened = OpenedSegment(
                        self.reader, item.schema, item.manifest, item.job.spec, self.hasher
                    )
                except (StorageError, OSError):
                    continue  # the worker opens it again and reports the error

    def _run_next(self) -> None:
        with self._queue_lock:
            if not self._queue:
                return  # shut down
            item = self._queue.popleft()
            self._loads_running += 1
        self._open_ahead()
        try:
            self._run_job(item.job, item.schema, item.manifest, item.opened)
        finally:
            with self._queue_lock:
                self._loads_running -= 1
                last = self._loads_running == 0 and not self._queue
            if last:
                # a load leaves ~1.5 MB of freed heap (file and parse buffers) that glibc keeps:
                # hand it back once the loads are done (measured on `medium`: 572 → 561 B/row)
                malloc_trim()

    def _run_job(
        self,
        job: LoadJob,
        schema: CollectionSchema,
        manifest: SegmentManifest,
        opened: OpenedSegment | None = None,
    ) -> None:
        started = time.monotonic()
        try:
            segment = load_segment(
                self.reader,
                schema,
                manifest,
                job.spec,
                job.cancel,
                step_delay=self.settings.load_step_delay,
                hasher=self.hasher,
                opened=opened,
            )
        except LoadCancelled:
            self.registry.abandon(job)
            self.metrics.cancellations.inc()
            trim_memory()
            return
        except StorageError as exc:
            self._fail(job, exc.reason, exc.message)
            return
        except MemoryError:
            self._fail(job, "OutOfMemory", f"out of memory loading {_label(job.key)}")
            return
        except Exception as exc:  # a loader bug must not kill the worker or the node
            log.exception("load of %s failed", _label(job.key))
            self._fail(job, "LoadError", f"loading {_label(job.key)} failed: {type(exc).__name__}: {exc}")
            return
        try:
            # its hidden rows are known before it serves (a delete published before the load)
            self.follower.segment_loaded(schema, manifest, segment.pks)
        except StorageError as exc:
            self._fail(job, exc.reason, exc.message)
            return
        unreferenced = self.registry.finish(job, segment)
        if unreferenced is segment:
            self.metrics.cancellations.inc()
            if not self.registry.has_entry(job.key):
                self.follower.segment_released(job.key.collection, job.key.partition, job.key.segment)
        else:
            self.metrics.load_duration.observe(time.monotonic() - started)
            self.metrics.loads.inc()
        if unreferenced is not None:
            del unreferenced, segment
            trim_memory()

    def _fail(self, job: LoadJob, reason: str, message: str) -> None:
        log.warning("segment %s failed to load: %s: %s", _label(job.key), reason, message)
        self.registry.fail(job, reason, message)
        self.metrics.load_failures.labels(reason).inc()
        trim_memory()

    # ---------------------------------------------------------------------------- release

    def release(self, req: ReleaseRequest) -> wire.ReleaseAnswer:
        count, dropped = self.registry.release(req.collection, req.targets)
        for seg in dropped:
            self.follower.segment_released(seg.collection, seg.partition, seg.segment_id)
        self.metrics.releases.inc(count)
        del dropped
        if count:  # nothing released, nothing to collect
            trim_memory()
        return wire.ReleaseAnswer(released=count)

    # ------------------------------------------------------------------------ distribution

    def distribution(self) -> wire.Distribution:
        cap = self.account.snapshot()
        segments = tuple(
            wire.HeldSegment(
                collection=view.key.collection,
                partition=view.key.partition,
                segment=view.key.segment,
                state=view.state,
                reason=view.reason,
                message=view.message,
                bytes=view.bytes,
                rows=view.rows,
                fields=tuple(view.fields),
                dynamic_field=view.dynamic,
                reloading=wire.UNSET
                if view.reloading is None
                else wire.Reloading(
                    fields=tuple(sorted(view.reloading.fields)), dynamic_field=view.reloading.dynamic
                ),
            )
            for view in self.registry.views()
        )
        return wire.Distribution(
            node=self.name,
            boot_id=self.boot_id,
            capacity=wire.Capacity(
                memory_limit_bytes=cap.memory_limit_bytes,
                used_bytes=cap.used_bytes,
                reserved_bytes=cap.reserved_bytes,
                threshold=cap.threshold,
            ),
            segments=segments,
        )

    # ------------------------------------------------------------------------------- data

    def _serving(
        self, collection: str, partitions: list[str] | None
    ) -> tuple[CollectionSchema, list[LoadedSegment]]:
        segments = self.registry.serving(collection)
        with self._schemas_lock:
            schema = self._schemas.get(collection)
        if not segments or schema is None:
            raise not_loaded(collection, self.name, self.registry.has_loading(collection))
        return schema, select_partitions(segments, partitions, collection, self.name)

    def _hidden(self, collection: str, segments: list[LoadedSegment]) -> dict[tuple[str, str], Mask]:
        """The rows of each serving segment that deletes and newer versions hide (none: absent)."""
        out: dict[tuple[str, str], Mask] = {}
        for seg in segments:
            mask = self.follower.hidden(collection, seg.partition, seg.segment_id)
            if mask is not None and len(mask) == seg.rows:
                out[(seg.partition, seg.segment_id)] = mask
        return out

    def search(self, req: SearchRequest, deadline: Deadline | None = None) -> HitColumns:
        with self.metrics.search_duration.labels("search").time():
            return run_prepared(self.prepare_search(req, deadline), self.parallel)

    def prepare_search(self, req: SearchRequest, deadline: Deadline | None = None) -> PreparedSearch:
        """The search checked against what this node serves (400/404/409 here), not yet run."""
        schema, segments = self._serving(req.collection, req.partitions)
        return PreparedSearch.prepare(
            schema,
            segments,
            req,
            self.settings.default_ef,
            deadline,
            self.parallel,
            self._hidden(req.collection, segments),
        )

    def run_prepared(self, prepared: PreparedSearch) -> HitColumns:
        with self.metrics.search_duration.labels("search").time():
            return run_prepared(prepared, self.parallel)

    def query(self, req: QueryRequest, deadline: Deadline | None = None) -> wire.RowsAnswer:
        with self.metrics.search_duration.labels("query").time():
            schema, segments = self._serving(req.collection, req.partitions)
            hidden = self._hidden(req.collection, segments)
            return wire.RowsAnswer(rows=run_query(schema, segments, req, deadline, hidden))

    def get(self, req: GetRequest, deadline: Deadline | None = None) -> wire.RowsAnswer:
        with self.metrics.search_duration.labels("get").time():
            schema, segments = self._serving(req.collection, req.partitions)
            hidden = self._hidden(req.collection, segments)
            return wire.RowsAnswer(rows=run_get(schema, segments, req, deadline, hidden))


@dataclass(eq=False)
class _Queued:
    job: LoadJob
    schema: CollectionSchema
    manifest: SegmentManifest
    opened: OpenedSegment | None = None  # files opened and queued for hashing ahead of time


_trim_state = threading.Lock()
_trim_running = False
_trim_pending = False


def trim_memory() -> None:
    """Collect garbage and hand freed heap pages back to the kernel so RSS really drops.

    A full collection holds the GIL for tens of milliseconds, so concurrent callers share trims:
    a caller that finds one running leaves it to run once more after it and returns at once (every
    caller's garbage is collected by a trim that starts after it asked). A burst of 64 releases
    once ran 64 collections back to back and held /healthz for 0.7 s (found by tests/fuzz)."""
    global _trim_running, _trim_pending
    with _trim_state:
        _trim_pending = True
        if _trim_running:
            return
        _trim_running = True
    while True:
        with _trim_state:
            if not _trim_pending:
                _trim_running = False
                return
            _trim_pending = False
        gc.collect()
        malloc_trim()


def _label(key: SegmentKey) -> str:
    return f"{key.collection}/{key.partition}/{key.segment}"


def _segment_summary(manifest: SegmentManifest, schema: CollectionSchema) -> wire.SegmentSummary:
    return wire.SegmentSummary(
        id=manifest.segment_id,
        rows=manifest.rows,
        bytes={name: f.bytes for name, f in manifest.files.items()},
        total_bytes=manifest.total_bytes,
        memory_bytes=memory_bytes(manifest, schema),
        compacted_from=manifest.compacted_from,
        generation=manifest.generation,
    )


def _retired_summary(retired: RetiredSegment) -> wire.RetiredSummary:
    return wire.RetiredSummary(
        id=retired.manifest.segment_id,
        rows=retired.manifest.rows,
        replaced_by=retired.replaced_by,
        compacted_from=retired.manifest.compacted_from,
        generation=retired.manifest.generation,
    )


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 `If-None-Match`: `*`, or a comma-separated list of (weak or strong) tags."""
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
