"""Time for the operator: one injected clock (monotonic and wall) and the RFC 3339 formatter.

Why: the loop decides with monotonic time (pass timing, backoff timers, task settling) and writes
wall time (condition transition times, `lastFailure.time`, events, the load-duration metric and
the last-progress gauge). Every part takes a `Clock`, so a test drives both by hand and nothing
monkeypatches `time`. The formatter (`vectorload.timefmt.rfc3339`, re-exported here) is the one
place the product writes a timestamp.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from vectorload.timefmt import rfc3339

__all__ = ["SYSTEM_CLOCK", "Clock", "rfc3339"]


@dataclass(frozen=True)
class Clock:
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time  # Unix seconds

    def wall_of(self, mono: float) -> float:
        """The wall time of monotonic instant `mono` (a past one, e.g. when a load failed)."""
        return self.wall() - (self.monotonic() - mono)


SYSTEM_CLOCK = Clock()
