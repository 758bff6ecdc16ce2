"""Follows the deltas of every collection this node holds and keeps its `Visibility` current.

Why a poll of the generation: a delete becomes a delta file in storage, published by any writer
on any host; the collection's generation (one small file, docs/storage-format.md) moves with
every publish, so polling it every `interval` (100 ms by default) finds a new delta within about
that, and a poll that finds nothing costs one small read per held collection. Only deltas not yet
applied are read (`Visibility.applied`), each verified against its sha256.

A segment being loaded gets its masks before it serves: `segment_loaded` reads its `$ts` and
every delta's keys (from a byte-bounded cache of parsed deltas, else storage again) and
registers it, so a delete published before the load, even one whose tombstone was dropped
because no held row matched it then, hides its rows from the first search on.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import TS_FIELD, CollectionSchema, DeltaManifest, SegmentManifest, StorageError
from vectorload.storage.columns import read_timestamps
from vectorload.storage.deltas import Keys, read_delta
from vectorload.storage.reader import BackendReader, segment_file_rel_path, verify_file

from .visibility import Delta, HeldRows, Visibility

log = logging.getLogger("vectorload.querynode")

DEFAULT_INTERVAL = 0.1
DEFAULT_CACHE_BYTES = 64 << 20


@dataclass(frozen=True)
class FollowerStats:
    collections: int
    tombstones: int
    hidden_rows: int
    deltas_applied: int
    polls: int
    delta_reads: int


class DeltaCache:
    """Parsed deltas by "collection/delta id", least recently used first out, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Delta] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(delta: Delta) -> int:
        keys, ts, _ = delta
        return int(ts.nbytes) + (
            8 * len(keys) + sum(len(str(k)) for k in keys) if keys.dtype.kind == "O" else int(keys.nbytes)
        )

    def get(self, delta_id: str) -> Delta | None:
        with self._lock:
            found = self._items.get(delta_id)
            if found is not None:
                self._items.move_to_end(delta_id)
            return found

    def put(self, delta_id: str, delta: Delta) -> None:
        size = self._size(delta)
        with self._lock:
            if delta_id in self._items or size > self.max_bytes:
                return
            self._items[delta_id] = delta
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= self._size(old)

    def keep(self, collection: str, present: set[str]) -> None:
        """Forget the collection's deltas that are no longer in storage (garbage-collected)."""
        prefix = f"{collection}/"
        with self._lock:
            gone = [k for k in self._items if k.startswith(prefix) and k[len(prefix) :] not in present]
            for key in gone:
                self._bytes -= self._size(self._items.pop(key))


class DeltaFollower:
    def __init__(
        self,
        reader: BackendReader,
        interval: float = DEFAULT_INTERVAL,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.reader = reader
        self.interval = interval
        self.cache = DeltaCache(cache_bytes)
        self._collections: dict[str, tuple[CollectionSchema, Visibility]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.delta_reads = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="delta-follower", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll_once()

    # ---------------------------------------------------------------- held segments

    def visibility(self, collection: str) -> Visibility | None:
        with self._lock:
            entry = self._collections.get(collection)
        return None if entry is None else entry[1]

    def segment_loaded(self, schema: CollectionSchema, manifest: SegmentManifest, pks: Keys) -> None:
        """Register a segment that is about to serve (before it serves). Raises StorageError if
        its timestamps or a delta cannot be read (the load then fails)."""
        ts = self._timestamps(manifest)
        deltas = [self._delta(d, schema) for d in self.reader.deltas(schema.name)]
        keys = np.asarray(pks, dtype=object) if schema.primary_key.type == "varchar" else np.asarray(pks)
        with self._lock:  # with `segment_released`: a collection is dropped only when empty
            entry = self._collections.get(schema.name)
            if entry is None or entry[0] != schema:
                entry = self._collections[schema.name] = (schema, Visibility(schema.primary_key.type))
            entry[1].add(HeldRows(manifest.partition, manifest.segment_id, keys, ts), deltas)

    def segment_released(self, collection: str, partition: str, segment_id: str) -> None:
        with self._lock:
            entry = self._collections.get(collection)
            if entry is None:
                return
            entry[1].remove(partition, segment_id)
            if not entry[1].segments:
                del self._collections[collection]

    def hidden(self, collection: str, partition: str, segment_id: str) -> npt.NDArray[np.bool_] | None:
        """The rows of a held segment that searches must skip (None: none)."""
        vis = self.visibility(collection)
        return None if vis is None else vis.hidden(partition, segment_id)

    def _timestamps(self, manifest: SegmentManifest) -> npt.NDArray[np.int64]:
        if TS_FIELD not in manifest.files:
            return np.zeros(manifest.rows, dtype=np.int64)
        rel = segment_file_rel_path(manifest, TS_FIELD)
        verify_file(self.reader.backend, rel, manifest.files[TS_FIELD])
        return read_timestamps(self.reader.backend.local_path(rel), manifest.rows)

    def _delta(self, delta: DeltaManifest, schema: CollectionSchema) -> Delta:
        key = f"{delta.collection}/{delta.delta_id}"
        found = self.cache.get(key)
        if found is None:
            keys, ts = read_delta(self.reader, delta, schema)
            found = (keys, ts, delta.partition)
            self.delta_reads += 1
            self.cache.put(key, found)
        return found

    # ----------------------------------------------------------------------- polling

    def poll_once(self) -> int:
        """Apply new deltas of every followed collection; returns how many were applied."""
        self.polls += 1
        with self._lock:
            followed = list(self._collections.items())
        applied = 0
        for collection, (schema, vis) in followed:
            try:
                generation = self.reader.generation(collection)
                if generation == vis.generation:
                    continue
                deltas = self.reader.deltas(collection)
                present = {d.delta_id for d in deltas}
                fresh = [d for d in deltas if d.delta_id not in vis.applied]
                vis.apply([(d.delta_id, self._delta(d, schema)) for d in fresh])
                vis.forget_applied(present)
                self.cache.keep(collection, present)
                vis.generation = generation
                applied += len(fresh)
            except (StorageError, OSError) as exc:
                log.warning("following the deltas of %s: %s", collection, exc)
        return applied

    def stats(self) -> FollowerStats:
        with self._lock:
            followed = [v for _, v in self._collections.values()]
        per = [v.stats() for v in followed]
        return FollowerStats(
            collections=len(followed),
            tombstones=sum(p["tombstones"] for p in per),
            hidden_rows=sum(p["hidden_rows"] for p in per),
            deltas_applied=sum(p["deltas"] for p in per),
            polls=self.polls,
            delta_reads=self.delta_reads,
        )
