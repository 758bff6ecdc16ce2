"""Failure memory for (node, segment) loads: exponential backoff, pure functions.

Attempts are counted by the planner when it emits a *retry* (a load for a (node, segment) that
has failed before), so a failure that the distribution shows on several pulls is counted once.
The adapter adds what only it sees — a load the querynode refused outright — with
`record_failure`, and otherwise just stores `Plan.backoff` for the next call.
"""

from __future__ import annotations

from dataclasses import replace

from vectorload_operator.core.model import BackoffState, FailureRecord, PlannerSettings, SegmentRef


def backoff_delay(attempts: int, settings: PlannerSettings) -> float:
    """Seconds to wait after `attempts` failed attempts: base * 2**(attempts-1), capped."""
    if attempts <= 0:
        return 0.0
    return float(min(settings.backoff_base_s * 2 ** min(attempts - 1, 30), settings.backoff_cap_s))


def retry_at(record: FailureRecord, settings: PlannerSettings) -> float:
    return record.last_attempt + backoff_delay(record.attempts, settings)


def in_backoff(
    state: BackoffState, node: str, ref: SegmentRef, now: float, settings: PlannerSettings
) -> bool:
    """True while a new load of `ref` on `node` must wait."""
    record = state.records.get((node, ref))
    return record is not None and now < retry_at(record, settings)


def record_failure(
    state: BackoffState, node: str, ref: SegmentRef, now: float, reason: str, message: str
) -> BackoffState:
    """Remember a failed load reported outside the distribution (e.g. the load call was refused).

    The first failure counts as attempt 1; later ones only refresh the error, because the
    planner already counted the retry that led to them.
    """
    records = dict(state.records)
    old = records.get((node, ref))
    if old is None:
        records[(node, ref)] = FailureRecord(1, now, reason, message, now)
    else:
        records[(node, ref)] = replace(old, reason=reason, message=message, failed_at=now)
    return BackoffState(records)


def record_attempt(
    state: BackoffState, node: str, ref: SegmentRef, now: float, reason: str = "", message: str = ""
) -> BackoffState:
    """Count one more attempt (the planner emits a retry load)."""
    records = dict(state.records)
    old = records.get((node, ref))
    if old is None:
        records[(node, ref)] = FailureRecord(1, now, reason, message, now)
    else:
        records[(node, ref)] = replace(
            old,
            attempts=old.attempts + 1,
            last_attempt=now,
            reason=reason or old.reason,
            message=message or old.message,
        )
    return BackoffState(records)


def clear(state: BackoffState, node: str, ref: SegmentRef) -> BackoffState:
    if (node, ref) not in state.records:
        return state
    records = dict(state.records)
    del records[(node, ref)]
    return BackoffState(records)
