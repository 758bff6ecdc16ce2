"""`wait_for`, the one polling wait of tests, benchmarks and dev harnesses (fake clock)."""

from __future__ import annotations

import pytest

from vectorload_dev.testing import WaitTimeout, wait_for


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_truthy_value() -> None:
    t = FakeTime()
    answers = iter([None, 0, [], {"ok": 1}])
    assert wait_for("x", lambda: next(answers), 5, 0.5, clock=t.clock, sleep=t.sleep) == {"ok": 1}
    assert t.sleeps == [0.5, 0.5, 0.5]


def test_timeout_names_what_the_last_value_and_the_details() -> None:
    t = FakeTime()
    calls: list[float] = []

    def check() -> list[int]:
        calls.append(t.now)
        return []

    with pytest.raises(WaitTimeout) as caught:
        wait_for("pods Ready", check, 2, 0.5, details=lambda: "log tail", clock=t.clock, sleep=t.sleep)
    message = str(caught.value)
    assert message == "timed out after 2 s waiting for pods Ready (last: [])\nlog tail"
    assert calls == [100.0, 100.5, 101.0, 101.5, 102.0]  # once more at the deadline
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, AssertionError)


class NothingYet(list[int]):
    """A long value that still counts as "not yet"."""

    def __bool__(self) -> bool:
        return False


def test_a_long_last_value_is_cut_short() -> None:
    t = FakeTime()
    with pytest.raises(WaitTimeout) as caught:
        wait_for("a long answer", lambda: NothingYet([0] * 10_000), 0, clock=t.clock, sleep=t.sleep)
    message = str(caught.value)
    assert message.startswith("timed out after 0 s waiting for a long answer (last: [0, 0")
    assert message.endswith("…)") and len(message) < 700


def test_exceptions_propagate_unless_they_mean_not_yet() -> None:
    t = FakeTime()

    def missing() -> str:
        raise KeyError("book")

    with pytest.raises(KeyError):
        wait_for("book", missing, 5, clock=t.clock, sleep=t.sleep)
    attempts = iter([KeyError("book"), KeyError("book"), "there"])

    def appears() -> str:
        value = next(attempts)
        if isinstance(value, Exception):
            raise value
        return value

    not_yet = lambda exc: isinstance(exc, KeyError)  # noqa: E731
    assert wait_for("book", appears, 5, 1, not_yet=not_yet, clock=t.clock, sleep=t.sleep) == "there"
    with pytest.raises(WaitTimeout, match=r"waiting for book \(last: None\)"):
        wait_for("book", missing, 1, 1, not_yet=not_yet, clock=t.clock, sleep=t.sleep)
    with pytest.raises(ValueError):  # not_yet says no: it propagates

        def broken() -> str:
            raise ValueError("bad")

        wait_for("book", broken, 5, not_yet=not_yet, clock=t.clock, sleep=t.sleep)


def test_real_clock_waits_about_the_timeout() -> None:
    import time

    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        wait_for("never", lambda: False, 0.3, 0.05)
    assert 0.3 <= time.monotonic() - started < 2
