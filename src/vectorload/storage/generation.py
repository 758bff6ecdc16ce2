"""The per-collection generation and the collection lock (see docs/storage-format.md, "Generation").

Why a generation: readers that follow a collection while it changes (the querynode applying
deletes, the operator's catalog cache) need to know *whether* anything changed without listing
and parsing every manifest. `<collection>/generation.json` holds one integer that every writer
moves, under the collection lock, after each publish, delta and retirement: reading it is one
small file. It also orders deltas: a delta's `seq` is the generation it was published at, so a
reader that has read generation G has every delta with seq <= G on disk.

Why a lock: the generation is a read-modify-write, and compaction's "are the sources still live?
then publish and retire them" must not interleave with another compaction of the same segments.
`flock(2)` on `<collection>/.lock` serialises writers of one host; the kernel drops it when a
writer dies, so a killed writer never leaves the collection locked. (An object store would use a
conditional PUT of the generation object instead, see "Object-store backend".)

Numpy-free: the catalog and the operator read generations cheaply.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vectorload.storage.api import StorageBackend, StorageError
from vectorload.storage.atomic import write_json_atomic

GENERATION_FILE = "generation.json"
LOCK_FILE = ".lock"
DELTAS_DIR = ".deltas"
GENERATION_FORMAT = 1


def parse_generation(data: bytes, where: str) -> int:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise StorageError("CorruptManifest", f"{where}: invalid JSON: {exc}") from exc
    value = doc.get("generation") if isinstance(doc, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StorageError("CorruptManifest", f"{where}: generation must be a non-negative integer")
    return value


def read_generation(backend: StorageBackend, collection: str) -> int:
    """The collection's generation; 0 when it was never moved (a collection of an earlier version,
    or one nothing was published to yet)."""
    rel = f"{collection}/{GENERATION_FILE}"
    try:
        data = backend.read_bytes(rel)
    except StorageError as exc:
        if exc.reason == "FileMissing":
            return 0
        raise
    return parse_generation(data, rel)


def delta_seq(delta_id: str) -> int | None:
    """The seq a delta directory name starts with (`<seq:016d>-<hex>`), None if it is not one."""
    head, sep, tail = delta_id.partition("-")
    if not sep or len(head) != 16 or not head.isdigit() or not tail:
        return None
    return int(head)


@dataclass
class LockedCollection:
    """What a writer holding the collection lock may do: read and move the generation."""

    cdir: Path
    current: int

    def bump(self) -> int:
        """Move the generation by one (durably) and return the new value."""
        self.current += 1
        write_json_atomic(
            self.cdir / GENERATION_FILE, {"formatVersion": GENERATION_FORMAT, "generation": self.current}
        )
        return self.current


def _file_generation(cdir: Path) -> int:
    path = cdir / GENERATION_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    return parse_generation(data, str(path))


def _max_delta_seq(cdir: Path) -> int:
    try:
        names = os.listdir(cdir / DELTAS_DIR)
    except FileNotFoundError:
        return 0
    return max((s for n in names if (s := delta_seq(n)) is not None), default=0)


@contextlib.contextmanager
def collection_lock(cdir: Path) -> Iterator[LockedCollection]:
    """Hold the collection's lock. The generation it yields is repaired first: a writer killed
    between publishing a delta and moving the generation left a delta whose seq is above it, and
    the next writer must not hand out that seq again."""
    cdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cdir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        current = _file_generation(cdir)
        locked = LockedCollection(cdir, current)
        if _max_delta_seq(cdir) > current:
            locked.current = _max_delta_seq(cdir) - 1
            locked.bump()
        yield locked
    finally:
        os.close(fd)  # releases the flock
