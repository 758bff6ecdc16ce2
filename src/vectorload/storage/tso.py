"""Hybrid timestamps, as Milvus' TSO hands them out: physical milliseconds << 18 | logical counter.

Why this shape: a timestamp must order every write of a collection (a delete hides rows with an
older timestamp, duplicates resolve to the newest), yet stay readable as a wall-clock time for
people and for "what changed since" questions. 18 logical bits allow 262,144 timestamps per
millisecond; 46 physical bits last until the year 4199. 0 is reserved: "before any write" (rows
of segments written without timestamps).

`HybridClock` never goes backwards (a wall clock stepping back only stops the physical part) and
is thread-safe; the clock it reads is injected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

LOGICAL_BITS = 18
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
MAX_TS = 2**63 - 1


def compose(physical_ms: int, logical: int = 0) -> int:
    """The timestamp of a wall time in ms since the epoch and a logical counter."""
    if physical_ms < 0 or not 0 <= logical <= LOGICAL_MASK:
        raise ValueError(f"physical_ms must be >= 0 and logical in 0..{LOGICAL_MASK}")
    ts = (physical_ms << LOGICAL_BITS) | logical
    if ts > MAX_TS:
        raise ValueError(f"physical time {physical_ms} ms does not fit a hybrid timestamp")
    return ts


def physical_ms(ts: int) -> int:
    return ts >> LOGICAL_BITS


def logical(ts: int) -> int:
    return ts & LOGICAL_MASK


def from_seconds(wall: float) -> int:
    """The first timestamp of a wall time in seconds."""
    return compose(int(wall * 1000))


class HybridClock:
    """Strictly increasing hybrid timestamps from a wall clock (`time.time` by default)."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._last = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        with self._lock:
            candidate = compose(int(self._wall() * 1000))
            self._last = max(candidate, self._last + 1)
            return self._last

    def observe(self, ts: int) -> None:
        """Never hand out a timestamp <= `ts` (e.g. the newest one found in storage at start)."""
        with self._lock:
            self._last = max(self._last, ts)
