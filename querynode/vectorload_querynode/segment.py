"""A loaded segment in memory: hnswlib indexes, scalar columns, primary keys and `$meta`, and the
node's bounded cache of `$meta` key columns that filters read."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from vectorload.storage.api import FieldSchema, StorageError

from .filter_eval import KeyValues

Vector = npt.NDArray[np.float32]
log = logging.getLogger("vectorload.querynode")
_row_decoder = msgspec.json.Decoder()


DEFAULT_META_CACHE_BYTES = 64 * 2**20
DEFAULT_META_CACHE_ENTRIES = 4096
DEFAULT_META_INDEXED_KEYS = 4096


@dataclass(frozen=True)
class MetaCacheLimits:
    """Bounds of the node's cache of extracted `$meta` key columns (`MetaKeyCache`).

    `max_bytes` and `max_entries` bound the whole cache, every segment together; the least
    recently used key columns go first. `max_indexed_keys` bounds the set of key names a segment
    remembers having seen (so that a filter on a key no row has costs nothing); a segment with
    more distinct keys than that keeps no set and scans its rows for every key not in the cache.
    """

    max_bytes: int = DEFAULT_META_CACHE_BYTES
    max_entries: int = DEFAULT_META_CACHE_ENTRIES
    max_indexed_keys: int = DEFAULT_META_INDEXED_KEYS

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_entries", "max_indexed_keys"):
            if getattr(self, name) < 0:
                raise ValueError(f"MetaCacheLimits.{name} must not be negative, not {getattr(self, name)}")


class MetaKeyCache:
    """An LRU of `$meta` key columns shared by the segments of a node, bounded in bytes and entries.

    Filters name keys freely — every name that is not a schema field is a `$meta` key — so what a
    key column costs must not stay with the node for each name a client ever sent (it once did:
    ~81 KB per distinct name, +84 MB from 1,200 names). A column larger than `max_bytes` is
    returned but not kept. A segment's columns leave the cache when the segment is freed: its
    finalizer queues its owner id without waiting for the lock (it may run from the garbage
    collector in a thread that holds it), and the queue is emptied by whoever holds the lock next.
    """

    def __init__(self, limits: MetaCacheLimits | None = None) -> None:
        self.limits = limits or MetaCacheLimits()
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, str], KeyValues] = OrderedDict()
        self._by_owner: dict[int, set[str]] = {}
        self._bytes = 0
        self._freed: deque[int] = deque()
        self._next_owner = itertools.count(1)

    def new_owner(self) -> int:
        return next(self._next_owner)

    def get(self, owner: int, key: str) -> KeyValues | None:
        with self._lock:
            self._drain()
            found = self._entries.get((owner, key))
            if found is not None:
                self._entries.move_to_end((owner, key))
            return found

    def put(self, owner: int, key: str, values: KeyValues) -> None:
        size = values.nbytes
        with self._lock:
            self._drain()
            if (owner, key) in self._entries or size > self.limits.max_bytes or not self.limits.max_entries:
                return
            self._entries[(owner, key)] = values
            self._by_owner.setdefault(owner, set()).add(key)
            self._bytes += size
            self._evict()

    def resize(self, limits: MetaCacheLimits) -> None:
        """New bounds (e.g. from the node's settings); evicts at once to fit them."""
        with self._lock:
            self.limits = limits
            self._drain()
            self._evict()

    def forget(self, owner: int) -> None:
        """Drop an owner's columns (a freed segment); safe to call from a finalizer."""
        self._freed.append(owner)
        if self._lock.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self._lock.release()

    def stats(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        with self._lock:
            self._drain()
            return len(self._entries), self._bytes

    def _drain(self) -> None:
        while self._freed:
            owner = self._freed.popleft()
            for key in self._by_owner.pop(owner, ()):
                self._bytes -= self._entries.pop((owner, key)).nbytes

    def _evict(self) -> None:
        while self._entries and (
            self._bytes > self.limits.max_bytes or len(self._entries) > self.limits.max_entries
        ):
            (owner, key), values = self._entries.popitem(last=False)
            self._bytes -= values.nbytes
            keys = self._by_owner[owner]
            keys.discard(key)
            if not keys:
                del self._by_owner[owner]


META_KEY_CACHE = MetaKeyCache()  # the node's cache; `resize` it from the settings


class MetaColumn:
    """The dynamic field kept as the raw JSON-lines bytes plus row offsets (about the file's size).

    Rows are parsed on demand. The values of one key are extracted by one pass over the rows into
    a dictionary-encoded `KeyValues` (4 bytes per row plus the distinct values), kept in the
    node's bounded `MetaKeyCache`. The first pass also records which keys occur at all, so a key
    that no row has (a typo, or an attacker's random names) is answered without a pass and
    without being cached.
    """

    def __init__(self, blob: bytes, rows: int, where: str, cache: MetaKeyCache | None = None) -> None:
        ends = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0x0A)
        if len(ends) != rows or (rows and ends[-1] != len(blob) - 1) or (not rows and blob):
            raise StorageError("CorruptFile", f"{where}: expected {rows} JSON lines, found {len(ends)}")
        self.blob = blob
        self.starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64) if rows else np.zeros(0, np.int64)
        self.ends = ends.astype(np.int64)
        self.rows = rows
        self.where = where
        self._warned = False  # an unreadable row was logged
        self._cache = cache if cache is not None else META_KEY_CACHE
        self._owner = self._cache.new_owner()
        weakref.finalize(self, self._cache.forget, self._owner)
        self._scanned = False
        self._present: frozenset[str] | None = None  # keys seen in the first pass (None: too many)
        self._lock = threading.Lock()  # one pass at a time per segment

    def row(self, i: int) -> dict[str, Any]:
        """Row `i` of the dynamic field, for output fields and filters alike. Never raises: a row
        that is not a JSON object the answer encoder can write back — not JSON, NaN or Infinity,
        a lone surrogate escape, a number beyond float or an integer beyond 4300 digits, nesting
        deeper than the decoder's recursion limit — reads as `{}` (no keys; a `$meta` output of
        `{}`, each key null). The files are verified against their manifest, so only a foreign
        writer's output gets here (this project's ingest writes none of these); it is logged once
        per segment, naming the first such row."""
        try:
            value = _row_decoder.decode(self.blob[self.starts[i] : self.ends[i]])
        except (msgspec.DecodeError, RecursionError):
            self._unreadable(i)
            return {}
        if not isinstance(value, dict):
            self._unreadable(i)
            return {}
        return value

    def _unreadable(self, i: int) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s: $meta row %d is not a JSON object; it reads as {} (no keys)", self.where, i)

    def has_key(self, key: str) -> bool | None:
        """Whether any row has `key` (None: not known before the first pass, or too many keys)."""
        if not self._scanned or self._present is None:
            return None
        return key in self._present

    def values(self, key: str) -> KeyValues:
        cached = self._cache.get(self._owner, key)
        if cached is not None:
            return cached
        if self.has_key(key) is False:
            return KeyValues.missing(self.rows)
        with self._lock:
            cached = self._cache.get(self._owner, key)
            if cached is not None:
                return cached
            if self.has_key(key) is False:
                return KeyValues.missing(self.rows)
            values = self._extract(key)
            if self.has_key(key) is False:  # the first pass found no row with it: keep nothing
                return KeyValues.missing(self.rows)
            self._cache.put(self._owner, key, values)
            return values

    def _extract(self, key: str) -> KeyValues:
        if self._scanned:
            return KeyValues.encode((self.row(i).get(key) for i in range(self.rows)), self.rows)
        limit = self._cache.limits.max_indexed_keys
        seen: set[str] | None = set()

        def rows() -> Iterator[Any]:
            nonlocal seen
            for i in range(self.rows):
                row = self.row(i)
                if seen is not None:
                    seen.update(row)
                    if len(seen) > limit:
                        seen = None
                yield row.get(key)

        values = KeyValues.encode(rows(), self.rows)
        self._present = None if seen is None else frozenset(seen)
        self._scanned = True
        return values


class EfGate:
    """Lets searches with the same ef use one hnswlib index at the same time.

    hnswlib's ef is a field of the index (`set_ef`) that every `knn_query` reads while it runs,
    and `knn_query` is safe to run concurrently. So searches with the index's current ef enter
    together; a search with another ef waits until the index is idle and sets it. While one waits
    for another ef, newcomers with the current ef wait too, so neither kind starves. (A plain lock
    around set_ef + knn_query, as before, let one search at a time use a segment.)"""

    def __init__(self, index: Any) -> None:
        self._index = index
        self._cond = threading.Condition()
        self._ef: int | None = None
        self._active = 0
        self._waiting: dict[int, int] = {}  # ef -> searches waiting for it

    def _may_enter(self, ef: int) -> bool:
        if self._active == 0:
            return True
        return ef == self._ef and all(e == ef for e in self._waiting)

    @contextlib.contextmanager
    def searching(self, ef: int) -> Iterator[None]:
        with self._cond:
            if not self._may_enter(ef):
                self._waiting[ef] = self._waiting.get(ef, 0) + 1
                try:
                    self._cond.wait_for(lambda: self._may_enter(ef))
                finally:
                    self._waiting[ef] -= 1
                    if not self._waiting[ef]:
                        del self._waiting[ef]
            if ef != self._ef:
                self._index.set_ef(ef)  # the index is idle: no search reads ef now
                self._ef = ef
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0 or self._waiting:
                    self._cond.notify_all()


@dataclass
class VectorIndex:
    """One hnswlib index; `gate.searching(ef)` sets its ef and keeps it while searches run."""

    field: FieldSchema
    index: Any
    gate: EfGate = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.gate = EfGate(self.index)

    def vectors(self, rows: npt.NDArray[np.int64]) -> Vector:
        """Stored vectors of some rows (cosine indexes store them normalised)."""
        if len(rows) == 0:
            return np.zeros((0, self.index.dim), dtype=np.float32)
        return np.asarray(self.index.get_items(rows), dtype=np.float32)


@dataclass
class LoadedSegment:
    collection: str
    partition: str
    segment_id: str
    rows: int
    fields: frozenset[str]  # loaded schema fields, primary key included
    dynamic: bool
    bytes: int  # accounted bytes (manifest file sizes of the loaded files)
    pk_field: str
    columns: dict[str, npt.NDArray[Any]]  # scalar fields and the primary key
    vectors: dict[str, VectorIndex]
    meta: MetaColumn | None

    @property
    def pks(self) -> npt.NDArray[Any]:
        return self.columns[self.pk_field]

    def column(self, name: str) -> npt.NDArray[Any]:
        return self.columns[name]

    def meta_values(self, key: str) -> KeyValues:
        if self.meta is None:
            raise KeyError(key)
        return self.meta.values(key)
