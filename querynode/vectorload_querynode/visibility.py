"""Which rows of the segments a querynode holds are visible: deletes and duplicate primary keys.

Why here, per node: the write path changes data under a loaded collection. A delete is a delta
file in storage (docs/storage-format.md, "Deltas"); upserts are deletes plus new rows; a
compaction's output holds the same rows as its sources while both are loaded. A node must answer
as if it held one consistent copy of the data, with the rule storage defines once
(`vectorload.storage.deltas`):

- a row is hidden when a delete of its primary key (in its partition, or in every partition) has
  a timestamp newer than the row's `$ts`;
- of the rows of one primary key that no delete hides, in the segments of the collection this
  node holds (every partition), only the newest is visible (larger `$ts`; equal: the larger
  segment id, then the later row).

`Visibility` keeps, per collection, the tombstones (primary key -> newest delete timestamp) and a
`hidden` mask per held segment; search, query and get skip hidden rows. Tombstones are bounded by
what the node holds: only keys of held rows are kept, and a segment loaded later reads the deltas
again for its own keys (`add`), so a delete that arrived while no held row matched still applies.

Pure bookkeeping over numpy arrays, thread-safe; reading storage is the caller's (`follower.py`
feeds it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.deltas import DeleteSet, Keys, newest_rows

Delta = tuple[Keys, npt.NDArray[np.int64], str | None]
"""One delta's (keys, delete timestamps, partition or None for every partition)."""


@dataclass(eq=False)
class HeldRows:
    """The keys and timestamps of one held segment, and which of its rows are hidden now."""

    partition: str
    segment_id: str
    pks: Keys
    ts: npt.NDArray[np.int64]
    deleted: npt.NDArray[np.bool_] = field(init=False)
    superseded: npt.NDArray[np.bool_] = field(init=False)

    def __post_init__(self) -> None:
        self.deleted = np.zeros(len(self.pks), dtype=bool)
        self.superseded = np.zeros(len(self.pks), dtype=bool)

    @property
    def hidden(self) -> npt.NDArray[np.bool_]:
        return self.deleted | self.superseded

    @property
    def key(self) -> tuple[str, str]:
        return (self.partition, self.segment_id)


def _isin(values: Keys, keys: Keys) -> npt.NDArray[np.bool_]:
    if len(values) == 0 or len(keys) == 0:
        return np.zeros(len(values), dtype=bool)
    if values.dtype.kind == "O" or keys.dtype.kind == "O":
        wanted = set(keys.tolist())
        return np.fromiter((v in wanted for v in values.tolist()), dtype=bool, count=len(values))
    return np.isin(values, keys)


class Visibility:
    """Tombstones and hidden-row masks of one collection on one node."""

    def __init__(self, pk_type: str) -> None:
        self.pk_type = pk_type
        self.tombstones = DeleteSet(pk_type)
        self.segments: dict[tuple[str, str], HeldRows] = {}
        self.applied: set[str] = set()  # delta ids folded in
        self.generation: int | None = None  # storage generation of the last poll
        self.version = 0  # moves whenever a mask changes
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ held segments

    def add(self, rows: HeldRows, deltas: Iterable[Delta]) -> set[tuple[str, str]]:
        """A segment is now held; `deltas`: every published delta (its keys are read again so a
        delete whose tombstone was dropped applies). Returns the segments whose masks changed."""
        with self._lock:
            for keys, ts, partition in deltas:
                if partition is not None and partition != rows.partition:
                    continue
                mine = _isin(keys, rows.pks)
                if mine.any():
                    self.tombstones.add(keys[mine], ts[mine], partition)
            self.segments[rows.key] = rows
            rows.deleted = self.tombstones.hidden(rows.pks, rows.ts, rows.partition)
            changed = {rows.key} if rows.deleted.any() else set()
            changed |= self._resolve(rows.pks)
            self.version += 1
            return changed

    def remove(self, partition: str, segment_id: str) -> set[tuple[str, str]]:
        """A segment is no longer held: rows it superseded may be visible again; tombstones of
        keys no held row has any more are dropped."""
        with self._lock:
            rows = self.segments.pop((partition, segment_id), None)
            if rows is None:
                return set()
            changed = self._resolve(rows.pks)
            self.tombstones.restrict(self._held_keys())
            self.version += 1
            return changed

    def _held_keys(self) -> Keys:
        parts = [r.pks for r in self.segments.values()]
        if not parts:
            return np.zeros(0, dtype=object if self.pk_type == "varchar" else np.int64)
        return np.concatenate(parts)

    def _resolve(self, keys: Keys) -> set[tuple[str, str]]:
        """Recompute `superseded` for the rows of `keys` over every held segment of the
        collection (every partition: a primary key names one entity of the collection). Only rows
        no delete hides compete: a deleted newer row does not hide an older one that survives."""
        involved: list[tuple[HeldRows, npt.NDArray[np.intp]]] = []
        for seg in self.segments.values():
            rows = np.flatnonzero(_isin(seg.pks, keys))
            if len(rows):
                involved.append((seg, rows))
        if not involved:
            return set()
        ordered = sorted(involved, key=lambda item: item[0].key[1])  # rank: segment id, then row
        pks = np.concatenate([seg.pks[rows] for seg, rows in ordered])
        ts = np.concatenate([seg.ts[rows] for seg, rows in ordered])
        alive = ~np.concatenate([seg.deleted[rows] for seg, rows in ordered])
        keep = np.zeros(len(pks), dtype=bool)
        live_rows = np.flatnonzero(alive)
        keep[live_rows] = newest_rows(pks[live_rows], ts[live_rows], live_rows.astype(np.int64))
        changed: set[tuple[str, str]] = set()
        offset = 0
        for seg, rows in ordered:
            sup = ~keep[offset : offset + len(rows)] & alive[offset : offset + len(rows)]
            offset += len(rows)
            if not np.array_equal(seg.superseded[rows], sup):
                new = seg.superseded.copy()
                new[rows] = sup
                seg.superseded = new  # replaced, not mutated: a reader keeps a consistent mask
                changed.add(seg.key)
        return changed

    # ---------------------------------------------------------------------- deletes

    def apply(self, deltas: Sequence[tuple[str, Delta]]) -> set[tuple[str, str]]:
        """New deltas `(delta id, delta)`: keep the tombstones of held keys, hide their rows."""
        with self._lock:
            fresh = [(i, d) for i, d in deltas if i not in self.applied]
            if not fresh:
                return set()
            held = self._held_keys()
            touched: list[Keys] = []
            for delta_id, (keys, ts, partition) in fresh:
                self.applied.add(delta_id)
                mine = _isin(keys, held)
                if mine.any():
                    self.tombstones.add(keys[mine], ts[mine], partition)
                    touched.append(keys[mine])
            changed: set[tuple[str, str]] = set()
            if touched:
                keys = np.concatenate(touched)
                for seg in self.segments.values():
                    rows = np.flatnonzero(_isin(seg.pks, keys))
                    if not len(rows):
                        continue
                    now = self.tombstones.hidden(seg.pks[rows], seg.ts[rows], seg.partition)
                    if not np.array_equal(now, seg.deleted[rows]):
                        deleted = seg.deleted.copy()
                        deleted[rows] = now
                        seg.deleted = deleted  # replaced, not mutated (see `_resolve`)
                        changed.add(seg.key)
                changed |= self._resolve(keys)
            if changed:
                self.version += 1
            return changed

    def forget_applied(self, present: Iterable[str]) -> None:
        """Delta ids no longer in storage (garbage-collected) need not be remembered."""
        with self._lock:
            self.applied &= set(present)

    # ---------------------------------------------------------------------- reading

    def hidden(self, partition: str, segment_id: str) -> npt.NDArray[np.bool_] | None:
        """The segment's hidden rows, or None when none is hidden (or it is not tracked)."""
        rows = self.segments.get((partition, segment_id))
        if rows is None:
            return None
        mask = rows.hidden
        return mask if mask.any() else None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "tombstones": len(self.tombstones),
                "hidden_rows": int(sum(int(r.hidden.sum()) for r in self.segments.values())),
                "deltas": len(self.applied),
            }
