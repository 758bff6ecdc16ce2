"""The collections in storage, as DescribeCollection, ShowPartitions and GetCollectionStatistics
show them: read with `vectorload.storage.reader` and cached.

Reading a collection's catalog means reading every segment manifest (rows, index parameters), so
answers come from a cache. An entry is re-read when its storage changes: segments are written
into a staging directory and renamed into their partition directory, and partitions are
directories of the collection, so the modification times of the collection directory and of its
partition directories change whenever a manifest appears or goes away. Those few `stat` calls are
made at most every `check_interval` seconds per collection; the hot path (search) reads the cached
entry and never touches storage.

A collection whose storage cannot be read (a corrupt manifest) is reported as the Milvus error
it causes, never as a crash: DescribeCollection names the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vectorload.storage.api import CollectionSchema, StorageError
from vectorload.storage.properties import read_properties
from vectorload.storage.reader import FilesystemReader

from .errors import MilvusError, collection_not_found, service_unavailable

log = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class PartitionInfo:
    name: str
    rows: int
    segments: int
    created_ns: int  # the partition directory's modification time (ns since the epoch)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    schema: CollectionSchema
    partitions: tuple[PartitionInfo, ...]
    created_ns: int  # collection.json's modification time
    updated_ns: int  # the newest modification time of the collection's directories
    index_params: dict[str, dict[str, int]]  # per vector field (M, ef_construction)
    auto_id: bool = False  # the primary key's values are generated (properties.json)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def partition_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.partitions)

    def partition(self, name: str) -> PartitionInfo | None:
        return next((p for p in self.partitions if p.name == name), None)

    @property
    def collection_id(self) -> int:
        return stable_id(self.name)


def stable_id(*parts: str) -> int:
    """A positive int64 id derived from names (Milvus ids are int64; clients only compare them)."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 62) - 1) or 1


@dataclass
class _Entry:
    info: CollectionInfo | None
    error: MilvusError | None
    signature: tuple[int, ...]
    checked: float


class Catalog:
    """The collections of one storage root (filesystem backend)."""

    def __init__(
        self,
        root: Path,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(root)
        self.reader = FilesystemReader(self.root)
        self.check_interval = check_interval
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._names: tuple[tuple[str, ...], float] | None = None
        self._lock = threading.Lock()

    # --------------------------------------------------------------------------- blocking

    def _signature(self, collection: str) -> tuple[int, ...]:
        base = self.root / collection
        try:
            stats = [base.stat().st_mtime_ns, (base / "collection.json").stat().st_mtime_ns]
            with os.scandir(base) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.is_dir(follow_symlinks=False):
                        stats.append(entry.stat(follow_symlinks=False).st_mtime_ns)
        except OSError:
            return ()
        return tuple(stats)

    def _read(self, collection: str) -> tuple[CollectionInfo | None, MilvusError | None]:
        try:
            schema = self.reader.schema(collection)
            partitions = []
            index_params: dict[str, dict[str, int]] = {}
            for name in sorted(self.reader.partitions(collection)):
                segments = self.reader.segments(collection, name)
                for seg in segments:
                    for field, params in seg.index_params.items():
                        index_params.setdefault(field, dict(params))
                created = (self.root / collection / name).stat().st_mtime_ns
                partitions.append(PartitionInfo(name, sum(s.rows for s in segments), len(segments), created))
            created_ns = (self.root / collection / "collection.json").stat().st_mtime_ns
            auto_id = read_properties(self.reader.backend, collection).auto_id
        except StorageError as exc:
            if exc.reason == "CollectionNotFound":
                return None, collection_not_found(collection)
            log.warning("collection %s cannot be read from storage: %s", collection, exc.message)
            return None, service_unavailable(
                f"collection {collection} cannot be read from storage: {exc.message}"
            )
        except OSError as exc:
            return None, service_unavailable(f"collection {collection} cannot be read from storage: {exc}")
        signature = self._signature(collection)
        info = CollectionInfo(
            name=collection,
            schema=schema,
            partitions=tuple(partitions),
            created_ns=created_ns,
            updated_ns=max(signature) if signature else created_ns,
            index_params=index_params,
            auto_id=auto_id,
        )
        return info, None

    def get_blocking(self, collection: str) -> CollectionInfo:
        """The collection's catalog (re-read when its storage changed); MilvusError otherwise."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(collection)
        if entry is not None and now - entry.checked < self.check_interval:
            return self._unwrap(entry)
        signature = self._signature(collection)
        if entry is not None and signature == entry.signature and signature:
            entry.checked = now
            return self._unwrap(entry)
        info, error = self._read(collection)
        entry = _Entry(info, error, signature, now)
        with self._lock:
            if info is None and error is not None and error.code == collection_not_found("").code:
                self._entries.pop(collection, None)
            else:
                self._entries[collection] = entry
        return self._unwrap(entry)

    @staticmethod
    def _unwrap(entry: _Entry) -> CollectionInfo:
        if entry.info is None:
            raise entry.error or collection_not_found("")
        return entry.info

    def names_blocking(self) -> tuple[str, ...]:
        now = self._clock()
        cached = self._names
        if cached is not None and now - cached[1] < self.check_interval:
            return cached[0]
        names = tuple(sorted(self.reader.list_collections()))
        self._names = (names, now)
        return names

    def invalidate(self, collection: str) -> None:
        """Forget what is cached of `collection` and the list of names (the write path changed
        them: the next call reads storage)."""
        with self._lock:
            self._entries.pop(collection, None)
            self._names = None

    # ------------------------------------------------------------------------------ async

    def cached(self, collection: str) -> CollectionInfo | None:
        """The cached catalog without any storage access (the search hot path), if fresh."""
        entry = self._entries.get(collection)
        if entry is None or entry.info is None or self._clock() - entry.checked >= self.check_interval:
            return None
        return entry.info

    async def get(self, collection: str) -> CollectionInfo:
        info = self.cached(collection)
        if info is not None:
            return info
        return await asyncio.to_thread(self.get_blocking, collection)

    async def names(self) -> tuple[str, ...]:
        cached = self._names
        if cached is not None and self._clock() - cached[1] < self.check_interval:
            return cached[0]
        return await asyncio.to_thread(self.names_blocking)
