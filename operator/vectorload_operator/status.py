"""The coalescing status writer: at most one merge-patch per resource every `interval` seconds,
and only when the computed status differs from what was last written. A change of `loadState`
(Loading, Loaded, ...) is written at once: it happens a few times per generation, and clients
wait for it (`kubectl wait`, watches)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str]  # (namespace, name)
Patcher = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class ObjectGone(Exception):
    """The patcher raises this when the object no longer exists (404): stop writing it."""


def status_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) turning status `old` into `new`, top-level keys only:
    changed keys carry their whole new value (lists replace anyway), removed keys are null."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


@dataclass
class _Entry:
    written: dict[str, Any]
    desired: dict[str, Any] | None = None
    last_write: float = float("-inf")
    failures: int = 0
    urgent: bool = False  # loadState changed: write without waiting for the interval


class StatusWriter:
    def __init__(
        self,
        patcher: Patcher,
        interval: float = 0.4,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._patch = patcher
        self.interval = interval
        self._clock = clock
        self._on_error = on_error
        self._entries: dict[ObjectKey, _Entry] = {}
        self._wake = asyncio.Event()
        self.patches_sent = 0

    def seed(self, key: ObjectKey, current: Mapping[str, Any] | None) -> None:
        """What the object's status is now (from the API server), so that an unchanged
        status after a restart is not written again."""
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(written=dict(current or {}))

    def submit(self, key: ObjectKey, status: Mapping[str, Any]) -> None:
        entry = self._entries.setdefault(key, _Entry(written={}))
        desired = dict(status)
        if desired == entry.written:
            entry.desired = None
            return
        entry.desired = desired
        entry.urgent = desired.get("loadState") != entry.written.get("loadState")
        self._wake.set()

    def forget(self, key: ObjectKey) -> None:
        self._entries.pop(key, None)

    def pending(self, key: ObjectKey) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.desired is not None

    def written(self, key: ObjectKey) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.written

    async def flush_once(self) -> float | None:
        """Write every entry that is due; return seconds until the next one is due (None: idle)."""
        now = self._clock()
        next_due: float | None = None
        due: list[tuple[ObjectKey, _Entry, dict[str, Any]]] = []
        for key, entry in self._entries.items():
            if entry.desired is None:
                continue
            if entry.failures:
                at = entry.last_write + min(self.interval * (2**entry.failures), 10.0)
            else:
                at = now if entry.urgent else entry.last_write + self.interval
            if at <= now:
                due.append((key, entry, entry.desired))
            else:
                next_due = at - now if next_due is None else min(next_due, at - now)
        if due:
            await asyncio.gather(*(self._write(key, entry, desired) for key, entry, desired in due))
            for _, entry, _ in due:
                if entry.desired is not None:
                    wait = 0.0 if entry.urgent and not entry.failures else self.interval
                    next_due = wait if next_due is None else min(next_due, wait)
        return next_due

    async def _write(self, key: ObjectKey, entry: _Entry, desired: dict[str, Any]) -> None:
        patch = status_diff(entry.written, desired)
        entry.last_write = self._clock()
        try:
            if patch:
                await self._patch(key[0], key[1], {"status": patch})
                self.patches_sent += 1
        except ObjectGone:
            self._entries.pop(key, None)
            return
        except Exception as exc:
            entry.failures += 1
            log.warning("status patch of %s/%s failed: %s", key[0], key[1], exc)
            if self._on_error is not None:
                self._on_error(exc)
            return
        entry.failures = 0
        entry.written = desired
        if entry.desired is desired or entry.desired == desired:
            entry.desired = None
        if entry.desired is None or entry.desired.get("loadState") == desired.get("loadState"):
            entry.urgent = False

    async def run(self) -> None:
        while True:
            self._wake.clear()
            delay = await self.flush_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
