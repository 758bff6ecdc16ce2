"""When the reconcile loop's next pass runs and whether it plans: the pure pacing policy, driven
with explicit times (no sleeping, no clock)."""

from __future__ import annotations

import math

import pytest

from vectorload_operator.core import (
    NEVER,
    BackoffState,
    FailureRecord,
    Fingerprint,
    Pacing,
    PassOutcome,
    PlannerSettings,
    SegmentRef,
    debounce_rest,
    must_plan,
    next_delay,
    timer_due,
)

PACING = Pacing.of(0.5)
NOW = 1000.0


def test_next_delay_debounces_and_speeds_up_while_busy() -> None:
    assert next_delay(PACING, PassOutcome(0.02), NOW) == pytest.approx(0.48)  # idle: the interval
    busy = PassOutcome(0.02, busy=True)
    assert next_delay(PACING, busy, NOW) == pytest.approx(PACING.busy_interval - 0.02)
    changed = PassOutcome(0.02, changed=True, busy=True)
    assert next_delay(PACING, changed, NOW) == pytest.approx(PACING.debounce)
    # never more than about half the time in passes
    assert next_delay(PACING, PassOutcome(0.3, changed=True), NOW) == pytest.approx(0.3)


def test_a_backoff_timer_shortens_the_wait_but_never_below_the_gap() -> None:
    soon = PassOutcome(0.01, timer_due=NOW + 0.2)
    assert next_delay(PACING, soon, NOW) == pytest.approx(0.19)
    overdue = PassOutcome(0.01, timer_due=NOW - 5.0)
    assert next_delay(PACING, overdue, NOW) == pytest.approx(PACING.debounce)
    assert next_delay(PACING, PassOutcome(0.01, timer_due=NEVER), NOW) == pytest.approx(0.49)


def test_default_busy_interval_is_a_fifth_within_debounce_and_interval() -> None:
    assert Pacing.of(0.5).busy_interval == pytest.approx(0.1)
    assert Pacing.of(0.1).busy_interval == pytest.approx(0.05)  # not below the debounce
    assert Pacing.of(0.04).busy_interval == pytest.approx(0.04)  # not above the interval
    assert Pacing.of(2.0, busy_interval=0.3).busy_interval == 0.3
    with pytest.raises(ValueError, match="interval must be positive"):
        Pacing.of(0.0)


def test_a_wake_up_waits_out_the_debounce_from_the_end_of_the_last_pass() -> None:
    # the pass ended at 10.0 and took 0.01: the next starts at 10.05 at the earliest
    assert debounce_rest(PACING, 10.0, 0.01, 10.02) == pytest.approx(0.03)
    assert debounce_rest(PACING, 10.0, 0.01, 10.2) == 0.0
    # a slow pass (0.3 s) keeps the next one 0.3 s away from its end
    assert debounce_rest(PACING, 10.0, 0.3, 10.1) == pytest.approx(0.2)


def test_an_idle_pass_plans_only_when_something_changed_or_a_timer_is_due() -> None:
    fp = Fingerprint(registry=3, catalogs=1, distribution=7, refusals=0)
    same = {"settled": 0, "unsettled": 0, "now": NOW, "timer_due": NEVER}
    assert must_plan(fp, None, **same)  # the first pass
    assert not must_plan(fp, fp, **same)
    for moved in (
        Fingerprint(4, 1, 7, 0),
        Fingerprint(3, 2, 7, 0),
        Fingerprint(3, 1, 8, 0),
        Fingerprint(3, 1, 7, 1),
    ):
        assert must_plan(moved, fp, **same), moved
    assert must_plan(fp, fp, **{**same, "settled": 1})
    assert must_plan(fp, fp, **{**same, "unsettled": 2})
    assert must_plan(fp, fp, **{**same, "timer_due": NOW})  # due now
    assert not must_plan(fp, fp, **{**same, "timer_due": NOW + 0.1})


def test_timer_due_is_the_earliest_future_retry_or_memory_horizon() -> None:
    s = PlannerSettings(backoff_base_s=1.0, failure_memory_s=600.0)
    ref = SegmentRef("c", "p", "s0")
    assert timer_due(BackoffState(), NOW, s) == NEVER
    # two attempts at 995: retry after 2 s (997, past), forgotten at 1595
    old = FailureRecord(attempts=2, last_attempt=995.0)
    fresh = FailureRecord(attempts=1, last_attempt=999.5)  # retry at 1000.5
    state = BackoffState({("n1", ref): old, ("n2", ref): fresh})
    assert timer_due(state, NOW, s) == pytest.approx(1000.5)
    assert timer_due(BackoffState({("n1", ref): old}), NOW, s) == pytest.approx(1595.0)
    assert math.isinf(timer_due(BackoffState({("n1", ref): FailureRecord(1, 0.0)}), NOW, s))
