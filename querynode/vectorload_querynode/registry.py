"""Which segments this node holds and in which state, with their memory reservations.

One lock guards every transition, so a load finishing, a release and a new load request never
interleave halfway. States seen by the distribution:

- loading: a job runs (or waits for a worker) and no copy serves yet;
- loaded: a copy serves; a reload with another field set may run beside it (`job`);
- failed: the last load failed and no copy serves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .admission import MemoryAccount, Reservation
from .loader import LoadSpec
from .segment import LoadedSegment

State = Literal["loading", "loaded", "failed"]


@dataclass(frozen=True, order=True)
class SegmentKey:
    collection: str
    partition: str
    segment: str


@dataclass(eq=False)
class LoadJob:
    key: SegmentKey
    spec: LoadSpec
    reservation: Reservation
    cancel: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.monotonic)


@dataclass
class Entry:
    key: SegmentKey
    serving: LoadedSegment | None = None
    job: LoadJob | None = None
    failure: tuple[str, str] | None = None  # (reason, message) of the last failed load
    last_spec: LoadSpec | None = None  # field set of the latest load request

    @property
    def state(self) -> State:
        if self.serving is not None:
            return "loaded"
        return "loading" if self.job is not None else "failed"


@dataclass(frozen=True)
class EntryView:
    """An immutable copy of an entry for the distribution."""

    key: SegmentKey
    state: State
    reason: str
    message: str
    bytes: int
    rows: int
    fields: tuple[str, ...]
    dynamic: bool
    reloading: LoadSpec | None


Decision = Literal["loaded", "loading"]


class Registry:
    def __init__(self, account: MemoryAccount) -> None:
        self.account = account
        self._entries: dict[SegmentKey, Entry] = {}
        self._lock = threading.Lock()

    def request_load(
        self, key: SegmentKey, spec: LoadSpec, predicted: int
    ) -> tuple[Decision, LoadJob | None]:
        """Decide what a load request means for one segment. Returns ('loaded', None) when a copy
        with this field set serves, ('loading', None) when such a load already runs, else admits
        a new job ('loading', job) — raising admission.Refused if memory does not allow it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if entry.job is not None and entry.job.spec == spec:
                    return "loading", None
                if entry.serving is not None and _serves(entry.serving, spec):
                    if entry.job is not None:  # a reload back to the serving field set is moot
                        entry.job.cancel.set()
                        entry.job = None
                    return "loaded", None
            reservation = self.account.reserve(predicted)
            job = LoadJob(key, spec, reservation)
            if entry is None:
                entry = self._entries[key] = Entry(key)
            if entry.job is not None:
                entry.job.cancel.set()  # superseded by a load with another field set
            entry.job = job
            entry.failure = None
            entry.last_spec = spec
            return "loading", job

    def finish(self, job: LoadJob, segment: LoadedSegment) -> LoadedSegment | None:
        """A job loaded its copy. Swap it in if the job is still current; return whatever copy
        is no longer referenced (the replaced old copy, or the new one if the job was cancelled)."""
        with self._lock:
            entry = self._entries.get(job.key)
            if entry is None or entry.job is not job or job.cancel.is_set():
                self.account.cancel(job.reservation)
                return segment
            old = entry.serving
            self.account.commit(job.reservation, freed=old.bytes if old is not None else 0)
            entry.serving = segment
            entry.job = None
            entry.failure = None
            return old

    def fail(self, job: LoadJob, reason: str, message: str) -> None:
        with self._lock:
            self.account.cancel(job.reservation)
            entry = self._entries.get(job.key)
            if entry is not None and entry.job is job:
                entry.job = None
                entry.failure = (reason, message)

    def abandon(self, job: LoadJob) -> None:
        """A cancelled job stopped; give its reservation back."""
        with self._lock:
            self.account.cancel(job.reservation)
            entry = self._entries.get(job.key)
            if entry is not None and entry.job is job:
                entry.job = None
                if entry.serving is None and entry.failure is None:
                    del self._entries[job.key]

    def release(
        self, collection: str, targets: Iterable[tuple[str, str]] | None
    ) -> tuple[int, list[LoadedSegment]]:
        """Drop segments (all of the collection when `targets` is None), cancelling their loads.
        Returns how many entries went and the copies that stop serving (no longer counted)."""
        wanted = None if targets is None else set(targets)
        dropped: list[LoadedSegment] = []
        count = 0
        with self._lock:
            for key in [k for k in self._entries if k.collection == collection]:
                if wanted is not None and (key.partition, key.segment) not in wanted:
                    continue
                entry = self._entries.pop(key)
                count += 1
                if entry.job is not None:
                    entry.job.cancel.set()
                if entry.serving is not None:
                    self.account.free(entry.serving.bytes)
                    dropped.append(entry.serving)
        return count, dropped

    def cancel_all(self) -> None:
        """Shutting down: every running or queued load stops at its next step."""
        with self._lock:
            for entry in self._entries.values():
                if entry.job is not None:
                    entry.job.cancel.set()

    def serving(self, collection: str) -> list[LoadedSegment]:
        with self._lock:
            return [
                e.serving
                for k, e in sorted(self._entries.items())
                if k.collection == collection and e.serving is not None
            ]

    def has_entry(self, key: SegmentKey) -> bool:
        """The segment is held, loading or failed here (not released)."""
        with self._lock:
            return key in self._entries

    def has_loading(self, collection: str) -> bool:
        with self._lock:
            return any(k.collection == collection and e.job is not None for k, e in self._entries.items())

    def views(self) -> list[EntryView]:
        with self._lock:
            return [_view(e) for _, e in sorted(self._entries.items())]


def _serves(segment: LoadedSegment, spec: LoadSpec) -> bool:
    return segment.fields == spec.fields and segment.dynamic == spec.dynamic


def _view(entry: Entry) -> EntryView:
    reason, message = entry.failure or ("", "")
    if entry.serving is not None:
        seg = entry.serving
        return EntryView(
            entry.key,
            "loaded",
            reason,
            message,
            seg.bytes,
            seg.rows,
            tuple(sorted(seg.fields)),
            seg.dynamic,
            entry.job.spec if entry.job is not None else None,
        )
    spec = entry.job.spec if entry.job is not None else entry.last_spec
    return EntryView(
        entry.key,
        entry.state,
        reason,
        message,
        entry.job.reservation.bytes if entry.job is not None else 0,
        0,
        tuple(sorted(spec.fields)) if spec is not None else (),
        spec.dynamic if spec is not None else False,
        None,
    )
