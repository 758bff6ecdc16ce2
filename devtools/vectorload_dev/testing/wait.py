"""One way to wait, for tests, benchmarks and the dev harnesses: poll a check until it gives
something truthy, and return that.

Every wait goes through `wait_for`, so a timeout always reads the same way: what was awaited, for
how long, the last value seen, and what the caller adds (`details`, e.g. a log tail). Its
exception is both a `TimeoutError` (to code that handles a slow system) and an `AssertionError`
(a test that waited in vain failed; it did not crash).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_LAST_CHARS = 600


class WaitTimeout(TimeoutError, AssertionError):
    """A `wait_for` that ran out of time."""


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.1,
    *,
    not_yet: Callable[[Exception], bool] | None = None,
    details: Callable[[], str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `check` every `interval` s until it returns something truthy; return that.

    `check` runs at least once and once more at the deadline. An exception from it propagates,
    unless `not_yet(exc)` says it means "not yet" (e.g. a 404 before an object exists). After
    `timeout` s: `WaitTimeout` naming `what`, the last value and `details()`.
    """
    deadline = clock() + timeout
    while True:
        try:
            last = check()
        except Exception as exc:
            if not_yet is None or not not_yet(exc):
                raise
            last = None
        if last:
            return last
        if clock() >= deadline:
            shown = repr(last)
            if len(shown) > _LAST_CHARS:
                shown = shown[:_LAST_CHARS] + "…"
            message = f"timed out after {timeout:g} s waiting for {what} (last: {shown})"
            extra = details() if details is not None else ""
            raise WaitTimeout(f"{message}\n{extra}" if extra else message)
        sleep(interval)
