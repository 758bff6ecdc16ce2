"""A loaded segment in memory: hnswlib indexes, scalar columns, primary keys and `$meta`."""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import FieldSchema, StorageError

Vector = npt.NDArray[np.float32]


class MetaColumn:
    """The dynamic field kept as the raw JSON-lines bytes plus row offsets (about the file's size).

    Rows are parsed on demand; the values of one key are extracted once, with equal values
    shared, so a filter on `$meta` keys costs about one pointer per row.
    """

    def __init__(self, blob: bytes, rows: int, where: str) -> None:
        ends = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0x0A)
        if len(ends) != rows or (rows and ends[-1] != len(blob) - 1) or (not rows and blob):
            raise StorageError("CorruptFile", f"{where}: expected {rows} JSON lines, found {len(ends)}")
        self.blob = blob
        self.starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64) if rows else np.zeros(0, np.int64)
        self.ends = ends.astype(np.int64)
        self.rows = rows
        self._keys: dict[str, npt.NDArray[np.object_]] = {}
        self._lock = threading.Lock()

    def row(self, i: int) -> dict[str, Any]:
        value = json.loads(self.blob[self.starts[i] : self.ends[i]])
        return value if isinstance(value, dict) else {}

    def values(self, key: str) -> npt.NDArray[np.object_]:
        with self._lock:
            cached = self._keys.get(key)
            if cached is not None:
                return cached
            shared: dict[tuple[type, Any], Any] = {}
            out = np.empty(self.rows, dtype=object)
            for i in range(self.rows):
                value = self.row(i).get(key)
                # nested objects and arrays are not comparable: treat them as missing
                if isinstance(value, str | int | float | bool):
                    out[i] = shared.setdefault((type(value), value), value)
            self._keys[key] = out
            return out


@dataclass
class VectorIndex:
    """One hnswlib index; the lock makes `set_ef` + `knn_query` atomic per index."""

    field: FieldSchema
    index: Any
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

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

    def meta_values(self, key: str) -> npt.NDArray[np.object_]:
        if self.meta is None:
            raise KeyError(key)
        return self.meta.values(key)
