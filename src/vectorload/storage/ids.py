"""Primary keys for `auto_id` collections: int64 ids unique across every writer of a storage root.

Why a shared allocator: Milvus hands out auto ids from one global allocator (rootcoord, backed by
etcd). vectorload's writers are proxy replicas sharing a storage root and nothing else; ids taken
from each proxy's own hybrid clock collide as soon as two proxies insert in the same millisecond
(both start the logical counter at 0). So ids come from the storage root itself:

    <root>/.ids/lock        flock(2) serialises reservations across processes (empty)
    <root>/.ids/next.json   {"formatVersion": 1, "next": N}: no id >= N was ever handed out

A process reserves a *block* (`block` ids, or more for a larger request) under the flock: it reads
`next`, writes `next + size` durably (temporary file, fsync, rename, fsync the directory) and only
then hands out ids of the block from memory, so one fsync serves many inserts. A process that dies
leaves a gap, never a duplicate; a machine that loses power loses no reservation that was used,
because an id is used only after its block is durable.

The first reservation of a root (no `next.json`) starts at `floor()` — the proxy passes its hybrid
clock, which has already observed the newest timestamp in storage. Ids handed out before this
allocator existed were taken from that clock and are smaller than the timestamp of the rows that
carry them, so the allocator starts above all of them.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from .api import StorageError
from .atomic import write_json_atomic

IDS_DIR = ".ids"
LOCK_FILE = "lock"
NEXT_FILE = "next.json"
IDS_FORMAT = 1
DEFAULT_BLOCK = 1 << 16
MAX_ID = 2**63 - 1


class IdAllocator:
    """Thread-safe; ids of one process increase; ids of all processes on a root never repeat."""

    def __init__(self, root: Path, floor: Callable[[], int], block: int = DEFAULT_BLOCK) -> None:
        if block < 1:
            raise ValueError("block must be >= 1")
        self.directory = Path(root) / IDS_DIR
        self._floor = floor
        self._block = block
        self._lock = threading.Lock()
        self._next = 0  # the next id of the current block
        self._end = 0  # the block's end (exclusive)
        self.reservations = 0

    def allocate(self, n: int) -> range:
        """`n` fresh ids, consecutive."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            if self._end - self._next < n:
                self._next, self._end = self._reserve(max(n, self._block))
            first = self._next
            self._next += n
            return range(first, first + n)

    def _reserve(self, size: int) -> tuple[int, int]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            first = self._read_next()
            if first is None:
                first = max(1, self._floor())
            end = first + size
            if end > MAX_ID:
                raise StorageError(
                    "IdsExhausted", f"auto ids of {self.directory} are exhausted (next {first})"
                )
            write_json_atomic(self.directory / NEXT_FILE, {"formatVersion": IDS_FORMAT, "next": end})
            self.reservations += 1
            return first, end
        finally:
            os.close(fd)  # releases the flock

    def _read_next(self) -> int | None:
        path = self.directory / NEXT_FILE
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            # never guess: a guess could hand out ids already in use
            raise StorageError("CorruptIds", f"{path}: unreadable ({exc})") from exc
        nxt = data.get("next") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or data.get("formatVersion") != IDS_FORMAT
            or not isinstance(nxt, int)
            or isinstance(nxt, bool)
            or not 1 <= nxt <= MAX_ID
        ):
            raise StorageError("CorruptIds", f"{path}: not an id allocator file of format {IDS_FORMAT}")
        return nxt
