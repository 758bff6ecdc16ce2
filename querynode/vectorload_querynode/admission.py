"""Memory admission: a segment is admitted only if its predicted bytes fit under the threshold.

    predicted + used + reserved <= capacity * threshold

`used` is the process overhead measured at start plus the accounted bytes of loaded segments;
`reserved` is the predicted bytes of loads admitted but not finished (queued or running).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


def refusal_message(predicted: int, used: int, reserved: int, capacity: int, threshold: float) -> str | None:
    """None when the segment fits, else a message with every number of the inequality."""
    limit = int(capacity * threshold)
    total = predicted + used + reserved
    if total <= limit:
        return None
    return (
        f"predicted {predicted} bytes + used {used} + reserved {reserved} = {total} bytes exceeds "
        f"capacity {capacity} × threshold {threshold} = {limit} bytes"
    )


class Refused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = "InsufficientMemory"
        self.message = message


@dataclass
class Reservation:
    """Bytes held for one admitted load; settled exactly once (committed or cancelled)."""

    bytes: int
    settled: bool = False


@dataclass(frozen=True)
class Capacity:
    memory_limit_bytes: int
    used_bytes: int
    reserved_bytes: int
    threshold: float
    loaded_bytes: int


class MemoryAccount:
    """Thread-safe bookkeeping of used and reserved bytes."""

    def __init__(self, capacity: int, threshold: float, overhead: int = 0) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.capacity = capacity
        self.threshold = threshold
        self.overhead = overhead
        self._loaded = 0
        self._reserved = 0
        self._lock = threading.Lock()

    def snapshot(self) -> Capacity:
        with self._lock:
            return Capacity(
                memory_limit_bytes=self.capacity,
                used_bytes=self.overhead + self._loaded,
                reserved_bytes=self._reserved,
                threshold=self.threshold,
                loaded_bytes=self._loaded,
            )

    def reserve(self, predicted: int) -> Reservation:
        """Admit `predicted` bytes or raise Refused with the numbers."""
        with self._lock:
            message = refusal_message(
                predicted, self.overhead + self._loaded, self._reserved, self.capacity, self.threshold
            )
            if message is not None:
                raise Refused(message)
            self._reserved += predicted
            return Reservation(predicted)

    def commit(self, reservation: Reservation, freed: int = 0) -> None:
        """The load finished: its reservation becomes used; `freed` bytes of a replaced copy go."""
        with self._lock:
            if reservation.settled:
                return
            reservation.settled = True
            self._reserved -= reservation.bytes
            self._loaded += reservation.bytes - freed

    def cancel(self, reservation: Reservation) -> None:
        with self._lock:
            if reservation.settled:
                return
            reservation.settled = True
            self._reserved -= reservation.bytes

    def free(self, loaded_bytes: int) -> None:
        with self._lock:
            self._loaded -= loaded_bytes
