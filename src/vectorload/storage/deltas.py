"""Deletes: delta columns (validation, files, reading) and `DeleteSet`, the rule readers apply.

A delta is a delete record published by `CollectionWriter.write_delta` (layout and bytes in
docs/storage-format.md, "Deltas"). The semantics are Milvus': every row has a hybrid timestamp
(`$ts`, 0 when a segment has none); a delete of primary key k at timestamp t hides every row of k
with `$ts` < t, in the delta's partition or, without one, in every partition. An upsert is a
delete at t plus an insert at t' >= t, so the new row survives its own delete. Duplicates of a
key across segments resolve to the row with the newest `$ts` (`newest_rows`).

`DeleteSet` is shared by compaction (which drops hidden rows for good) and the querynode (which
hides them in what it holds), so the two apply one rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import TS_FIELD, CollectionSchema, DeltaManifest, FieldSchema, StorageError
from vectorload.storage.columns import Column, read_npy, read_varchar
from vectorload.storage.reader import BackendReader, verify_file
from vectorload.storage.validate import int64_values, varchar_values

DELTA_TS_FILE = "ts.npy"

Keys = npt.NDArray[Any]  # int64 keys, or an object array of str


def delta_key_file(pk: FieldSchema) -> str:
    return "pk.vstr" if pk.type == "varchar" else "pk.npy"


def _bad(message: str) -> StorageError:
    return StorageError("InvalidArgument", message)


def delete_columns(
    schema: CollectionSchema, primary_keys: object, timestamps: object
) -> tuple[Column, npt.NDArray[np.int64]]:
    """Validated delete keys and timestamps: at least one key, of the primary key's type; one
    timestamp (an int) for all or one per key, each > 0. A key given twice keeps its newest
    timestamp; the result is sorted by key."""
    pk = schema.primary_key
    if isinstance(primary_keys, str | bytes) or not isinstance(primary_keys, Sequence | np.ndarray):
        raise _bad(f"delete: primary keys of {pk.name!r} must be a sequence")
    keys: Column = (
        int64_values(pk.name, primary_keys) if pk.type == "int64" else varchar_values(pk, primary_keys)
    )
    n = len(keys)
    if n == 0:
        raise _bad("delete: no primary keys given")
    if isinstance(timestamps, bool):
        raise _bad(f"delete: {TS_FIELD} must be an integer, got {timestamps!r}")
    if isinstance(timestamps, int | np.integer):
        ts = np.full(n, int(timestamps), dtype="<i8")
    else:
        ts = int64_values(TS_FIELD, timestamps)
        if len(ts) != n:
            raise _bad(f"delete: {len(ts)} timestamps for {n} primary keys")
    if int(ts.min()) <= 0:
        raise _bad(f"delete: timestamps must be > 0 (0 means before any write), got {int(ts.min())}")
    arr = np.asarray(keys, dtype=object) if isinstance(keys, list) else keys
    unique, newest = newest_per_key(arr, ts)
    out_keys: Column = [str(k) for k in unique.tolist()] if isinstance(keys, list) else unique.astype("<i8")
    return out_keys, newest.astype("<i8")


def newest_per_key(keys: Keys, ts: npt.NDArray[np.int64]) -> tuple[Keys, npt.NDArray[np.int64]]:
    """Sorted unique keys and the largest timestamp each one has."""
    if len(keys) == 0:
        return keys[:0], ts[:0]
    order = np.lexsort((ts, _sort_codes(keys)))
    k, t = keys[order], ts[order]
    last = np.ones(len(k), dtype=bool)
    last[:-1] = k[1:] != k[:-1]
    return k[last], t[last]


def _sort_codes(keys: Keys) -> npt.NDArray[Any]:
    """Something lexsort can order keys by (object arrays of str: their rank)."""
    if keys.dtype.kind == "O":
        _, codes = np.unique(keys, return_inverse=True)
        return np.asarray(codes)
    return keys


def read_delta(
    reader: BackendReader, delta: DeltaManifest, schema: CollectionSchema, verify: bool = True
) -> tuple[Keys, npt.NDArray[np.int64]]:
    """A delta's keys (int64 array, or object array of str) and timestamps, each file checked
    against its sha256 first (`verify`)."""
    pk = schema.primary_key
    if pk.name not in delta.files:
        raise StorageError(
            "CorruptManifest",
            f"delta {delta.collection}/{delta.delta_id} has no file for primary key {pk.name!r}",
        )
    paths = {}
    for key in (pk.name, TS_FIELD):
        rel = reader.delta_file_rel_path(delta, key)
        if verify:
            verify_file(reader.backend, rel, delta.files[key])
        paths[key] = reader.backend.local_path(rel)
    keys: Keys
    if pk.type == "varchar":
        keys = np.asarray(read_varchar(paths[pk.name]), dtype=object)
    else:
        keys = read_npy(paths[pk.name])
        if keys.ndim != 1 or keys.dtype != np.dtype("<i8"):
            raise StorageError("CorruptFile", f"{paths[pk.name]}: expected int64 primary keys")
    ts = read_npy(paths[TS_FIELD])
    if ts.ndim != 1 or ts.dtype != np.dtype("<i8") or len(ts) != len(keys) or len(ts) != delta.rows:
        raise StorageError("CorruptFile", f"{paths[TS_FIELD]}: expected {delta.rows} int64 timestamps")
    return keys, ts


@dataclass
class _Scope:
    """Newest delete timestamp per key of one scope (a partition, or every partition)."""

    keys: Keys
    ts: npt.NDArray[np.int64]
    pending: list[tuple[Keys, npt.NDArray[np.int64]]] = field(default_factory=list)

    def merged(self) -> tuple[Keys, npt.NDArray[np.int64]]:
        if self.pending:
            parts = [(self.keys, self.ts), *self.pending]
            self.keys, self.ts = newest_per_key(
                np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            )
            self.pending = []
        return self.keys, self.ts

    def lookup(self, pks: Keys) -> npt.NDArray[np.int64]:
        """The delete timestamp of each key (-1: never deleted)."""
        keys, ts = self.merged()
        out = np.full(len(pks), -1, dtype=np.int64)
        if len(keys) == 0 or len(pks) == 0:
            return out
        idx = np.searchsorted(keys, pks)
        inside = idx < len(keys)
        hit = np.zeros(len(pks), dtype=bool)
        hit[inside] = keys[idx[inside]] == pks[inside]
        out[hit] = ts[idx[hit]]
        return out


class DeleteSet:
    """Tombstones: primary key -> newest delete timestamp, per partition scope.

    Not thread-safe; the querynode guards its own. `hidden` answers for a segment's rows at once
    (vectorised: one `searchsorted` per scope)."""

    def __init__(self, pk_type: str) -> None:
        self.pk_type = pk_type
        self._scopes: dict[str | None, _Scope] = {}

    def _empty(self) -> Keys:
        return np.zeros(0, dtype=object if self.pk_type == "varchar" else np.int64)

    def _keys(self, keys: Iterable[Any] | Keys) -> Keys:
        if self.pk_type == "varchar":
            return np.asarray(list(keys), dtype=object)
        return np.asarray(keys, dtype=np.int64)

    def add(self, keys: Keys | Sequence[Any], ts: npt.NDArray[np.int64], partition: str | None) -> None:
        """Deletes of `keys` at `ts` in `partition` (None: every partition)."""
        scope = self._scopes.get(partition)
        if scope is None:
            scope = self._scopes[partition] = _Scope(self._empty(), np.zeros(0, dtype=np.int64))
        scope.pending.append((self._keys(keys), np.asarray(ts, dtype=np.int64)))

    def delete_ts(self, pks: Keys | Sequence[Any], partition: str) -> npt.NDArray[np.int64]:
        """The newest delete timestamp that applies to each key in `partition` (-1: none)."""
        keys = self._keys(pks)
        out = np.full(len(keys), -1, dtype=np.int64)
        for name in (None, partition):
            scope = self._scopes.get(name)
            if scope is not None:
                out = np.maximum(out, scope.lookup(keys))
        return out

    def hidden(
        self, pks: Keys | Sequence[Any], row_ts: npt.NDArray[np.int64], partition: str
    ) -> npt.NDArray[np.bool_]:
        """Which rows a delete hides: one of their key with a timestamp newer than the row's."""
        return self.delete_ts(pks, partition) > np.asarray(row_ts, dtype=np.int64)

    def __len__(self) -> int:
        return sum(len(s.merged()[0]) for s in self._scopes.values())

    @property
    def newest_ts(self) -> int:
        return max((int(s.merged()[1].max()) for s in self._scopes.values() if len(s.merged()[1])), default=0)

    def restrict(self, present: Keys | Sequence[Any], partition: str | None = None) -> int:
        """Keep only tombstones of keys in `present` (keys of rows still held); in one scope, or in
        every scope when `partition` is None. Returns how many were dropped."""
        wanted = np.sort(self._keys(present))
        dropped = 0
        for name, scope in self._scopes.items():
            if partition is not None and name != partition:
                continue
            keys, ts = scope.merged()
            if len(keys) == 0:
                continue
            idx = np.searchsorted(wanted, keys)
            inside = idx < len(wanted)
            keep = np.zeros(len(keys), dtype=bool)
            keep[inside] = wanted[idx[inside]] == keys[inside]
            dropped += int((~keep).sum())
            scope.keys, scope.ts = keys[keep], ts[keep]
        return dropped


def newest_rows(
    pks: Keys, row_ts: npt.NDArray[np.int64], rank: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Which rows survive deduplication of primary keys: per key, the row with the largest
    `$ts`; equal timestamps go to the larger `rank` (the caller's order: later segment id, then
    later row). Rows of distinct keys all survive."""
    n = len(pks)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    order = np.lexsort((rank, row_ts, _sort_codes(pks)))
    k = pks[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = k[1:] != k[:-1]
    keep[order[last]] = True
    return keep
