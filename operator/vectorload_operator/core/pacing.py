"""When the next reconcile pass runs, and whether a pass must plan: pure policy, no clock.

Why: every pass pulls each querynode's distribution, and that pull is the node's heartbeat, so
passes run every `interval` at the latest. They run sooner when woken — a task's request was
answered, a CollectionLoad was created, changed or deleted, or the previous pull showed a change:
the next pass then starts `debounce` seconds after the last one ended (wake-ups within that time
make one pass), and never sooner than the last pass took (passes use at most about half of the
time). While loads are under way (a node reports `loading`, or a task is not settled yet) passes
run every `busy_interval`.

Idle passes are cheap: when nothing the plan depends on changed since the last planned pass (the
registry, the catalogs, the pods and every node's distribution, the refusals counted — together a
`Fingerprint`), no task settled or is unsettled, and no backoff timer is due, the pass only pulls
and skips planning and status. A failure's retry time and the failure memory's horizon are such
timers (`timer_due`).

Times are monotonic seconds handed in by the caller (the loop reads its injected clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vectorload_operator.core.backoff import retry_at
from vectorload_operator.core.model import BackoffState, PlannerSettings

NEVER = math.inf


@dataclass(frozen=True)
class Pacing:
    """The loop's pace: `interval` (`--dist-pull-interval`), `busy_interval`, `debounce`."""

    interval: float
    busy_interval: float
    debounce: float = 0.05

    @classmethod
    def of(cls, interval: float, debounce: float = 0.05, busy_interval: float | None = None) -> Pacing:
        """The default busy interval is a fifth of the interval, within [debounce, interval]."""
        if interval <= 0 or debounce < 0:
            raise ValueError(
                f"pass interval must be positive and debounce not negative: {interval}, {debounce}"
            )
        busy = busy_interval if busy_interval is not None else min(interval, max(debounce, interval / 5))
        return cls(interval=interval, busy_interval=busy, debounce=debounce)


@dataclass(frozen=True)
class PassOutcome:
    """What one pass leaves for the pacing decision."""

    took: float  # seconds the pass took
    changed: bool = False  # its pull showed a change
    busy: bool = False  # loads under way: a node reports `loading`, or a task is not settled
    timer_due: float = NEVER  # monotonic time of the next backoff timer


def next_delay(pacing: Pacing, outcome: PassOutcome, now: float) -> float:
    """Seconds from `now` (the end of the pass) to the next pass, unless woken first."""
    gap = max(pacing.debounce, outcome.took)
    if outcome.changed:
        return gap
    wait = pacing.busy_interval if outcome.busy else pacing.interval
    wait = min(wait, outcome.timer_due - now)
    return max(wait - outcome.took, gap)


def debounce_rest(pacing: Pacing, ended: float, took: float, now: float) -> float:
    """Woken at `now`: seconds still to wait so that the next pass starts `debounce` (or the
    last pass's duration) after the last pass `ended`; wake-ups meanwhile join that pass."""
    return max(ended + max(pacing.debounce, took) - now, 0.0)


@dataclass(frozen=True)
class Fingerprint:
    """Versions of everything the plan and the status depend on."""

    registry: int
    catalogs: int
    distribution: int
    refusals: int


def must_plan(
    fingerprint: Fingerprint,
    last: Fingerprint | None,
    *,
    settled: int,
    unsettled: int,
    now: float,
    timer_due: float,
) -> bool:
    """False when nothing changed since the last planned pass (`last`): no task settled in
    this pass or is still unsettled, and no backoff timer is due."""
    return not (fingerprint == last and settled == 0 and unsettled == 0 and now < timer_due)


def timer_due(backoff: BackoffState, now: float, settings: PlannerSettings) -> float:
    """The earliest future time a failure record changes the plan: a retry becomes due or the
    record leaves the failure memory (`NEVER` when there is none)."""
    due = NEVER
    for record in backoff.records.values():
        for at in (retry_at(record, settings), record.last_attempt + settings.failure_memory_s):
            if at > now:
                due = min(due, at)
    return due
