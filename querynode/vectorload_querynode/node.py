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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from vectorload.storage.api import CollectionSchema, SegmentManifest, StorageError
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.schema_json import schema_to_dict

from .admission import MemoryAccount, Refused
from .errors import ApiError
from .hasher import Hasher
from .loader import LoadCancelled, LoadSpec, OpenedSegment, load_segment, memory_bytes, predicted_bytes
from .memory import malloc_trim, resident_bytes
from .metrics import Metrics
from .registry import LoadJob, Registry, SegmentKey
from .requests import GetRequest, LoadRequest, QueryRequest, ReleaseRequest, SearchRequest
from .search import not_loaded, run_get, run_query, run_search, select_partitions
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
    """The field set a load request asks for; 400 InvalidFields/FieldNotFound when it cannot work."""
    dynamic = schema.dynamic_field and not skip_dynamic
    if fields is None:
        return LoadSpec(frozenset(f.name for f in schema.fields), dynamic)
    unknown = [f for f in fields if schema.field(f) is None]
    if unknown:
        raise ApiError(400, "FieldNotFound", f"field(s) {', '.join(unknown)} not in collection {schema.name}")
    chosen = frozenset(fields)
    missing = []
    if schema.primary_key.name not in chosen:
        missing.append(f"the primary key {schema.primary_key.name}")
    if not any(f.name in chosen for f in schema.vector_fields):
        missing.append(f"a vector field (one of {', '.join(f.name for f in schema.vector_fields)})")
    if missing:
        raise ApiError(400, "InvalidFields", f"fields must include {' and '.join(missing)}")
    return LoadSpec(chosen, dynamic)


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
        self._queue: deque[_Queued] = deque()  # admitted loads waiting for a load worker, FIFO
        self._queue_lock = threading.Lock()
        self._open_ahead_segments = 2 * settings.load_concurrency
        self._schemas: dict[str, CollectionSchema] = {}
        self._schemas_lock = threading.Lock()

    def close(self) -> None:
        self.registry.cancel_all()
        for pool in (self.load_pool, self.data_pool, self.io_pool):
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

    def collections(self) -> list[str]:
        return self.reader.list_collections()

    def _schema(self, collection: str) -> CollectionSchema:
        try:
            schema = self.reader.schema(collection)
        except StorageError as exc:
            raise storage_error(exc) from exc
        with self._schemas_lock:
            self._schemas[collection] = schema
        return schema

    def catalog(self, collection: str) -> dict[str, Any]:
        schema = self._schema(collection)
        try:
            partitions = [
                {
                    "name": p,
                    "segments": [_segment_summary(m, schema) for m in self.reader.segments(collection, p)],
                }
                for p in self.reader.partitions(collection)
            ]
        except StorageError as exc:
            raise storage_error(exc) from exc
        return {"name": collection, "schema": schema_to_dict(schema), "partitions": partitions}

    # ------------------------------------------------------------------------------- load

    def load(self, req: LoadRequest) -> list[dict[str, str]]:
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
        return [self._load_one(schema, req, spec, segment_id) for segment_id in req.segments]

    def _load_one(
        self, schema: CollectionSchema, req: LoadRequest, spec: LoadSpec, segment_id: str
    ) -> dict[str, str]:
        def result(state: str, reason: str = "", message: str = "") -> dict[str, str]:
            return {"segment": segment_id, "state": state, "reason": reason, "message": message}

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
        self._open_ahead()
        self._run_job(item.job, item.schema, item.manifest, item.opened)

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
        unreferenced = self.registry.finish(job, segment)
        if unreferenced is segment:
            self.metrics.cancellations.inc()
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

    def release(self, req: ReleaseRequest) -> int:
        count, dropped = self.registry.release(req.collection, req.targets)
        self.metrics.releases.inc(count)
        del dropped
        trim_memory()
        return count

    # ------------------------------------------------------------------------ distribution

    def distribution(self) -> dict[str, Any]:
        cap = self.account.snapshot()
        segments = []
        for view in self.registry.views():
            item: dict[str, Any] = {
                "collection": view.key.collection,
                "partition": view.key.partition,
                "segment": view.key.segment,
                "state": view.state,
                "reason": view.reason,
                "message": view.message,
                "bytes": view.bytes,
                "rows": view.rows,
                "fields": list(view.fields),
                "dynamicField": view.dynamic,
            }
            if view.reloading is not None:
                item["reloading"] = {
                    "fields": sorted(view.reloading.fields),
                    "dynamicField": view.reloading.dynamic,
                }
            segments.append(item)
        return {
            "node": self.name,
            "bootId": self.boot_id,
            "capacity": {
                "memoryLimitBytes": cap.memory_limit_bytes,
                "usedBytes": cap.used_bytes,
                "reservedBytes": cap.reserved_bytes,
                "threshold": cap.threshold,
            },
            "segments": segments,
        }

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

    def search(self, req: SearchRequest) -> list[list[dict[str, Any]]]:
        with self.metrics.search_duration.labels("search").time():
            schema, segments = self._serving(req.collection, req.partitions)
            return run_search(schema, segments, req, self.settings.default_ef)

    def query(self, req: QueryRequest) -> list[dict[str, Any]]:
        with self.metrics.search_duration.labels("query").time():
            schema, segments = self._serving(req.collection, req.partitions)
            return run_query(schema, segments, req)

    def get(self, req: GetRequest) -> list[dict[str, Any]]:
        with self.metrics.search_duration.labels("get").time():
            schema, segments = self._serving(req.collection, req.partitions)
            return run_get(schema, segments, req)


@dataclass(eq=False)
class _Queued:
    job: LoadJob
    schema: CollectionSchema
    manifest: SegmentManifest
    opened: OpenedSegment | None = None  # files opened and queued for hashing ahead of time


def trim_memory() -> None:
    """Collect garbage and hand freed heap pages back to the kernel so RSS really drops."""
    gc.collect()
    malloc_trim()


def _label(key: SegmentKey) -> str:
    return f"{key.collection}/{key.partition}/{key.segment}"


def _segment_summary(manifest: SegmentManifest, schema: CollectionSchema) -> dict[str, Any]:
    return {
        "id": manifest.segment_id,
        "rows": manifest.rows,
        "bytes": {name: f.bytes for name, f in manifest.files.items()},
        "totalBytes": manifest.total_bytes,
        "memoryBytes": memory_bytes(manifest, schema),
    }
