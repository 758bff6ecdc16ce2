"""Run cases against a target, bounded in requests and time, and report what must not happen.

While the cases run (`workers` threads, each with its own kept-alive connections), a prober
process (`probe.py`) sends `GET` to the target's health endpoint every `health_interval` seconds
on a fresh connection, and a thread samples the server process's RSS. The report holds requests
tried, answers by status class, every finding (5xx, token accepted, valid token refused,
undocumented or nonconforming answer, no answer), the server's own 5xx count, `/healthz`
latencies (worst, p99) and RSS growth from the end of the warm-up to the end of the run.
`Report.failures(...)` turns the issue's bounds into a list of sentences, empty when it passed.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from vectorload_dev.testing.fuzz.model import Case, Finding, Outcome, Surface, Tally, Target


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Bounds:
    """What a run must stay within (issue 13's bounds; p99 is a goal, reported, not enforced
    unless `healthz_p99` is set)."""

    healthz_worst: float = 0.5
    healthz_p99: float | None = None
    rss_growth: float = 0.10


@dataclass
class Report:
    target: str
    seed: int
    requests: int = 0
    cases: int = 0
    planned: int = 0
    seconds: float = 0.0
    tally: Tally = field(default_factory=Tally)
    findings: list[Finding] = field(default_factory=list)
    finding_counts: dict[str, int] = field(default_factory=dict)
    server_5xx: int | None = None
    healthz: list[float] = field(default_factory=list)
    healthz_failures: list[str] = field(default_factory=list)
    slowest_probe_during: list[str] = field(default_factory=list)  # cases in flight then
    judged: dict[str, int] = field(default_factory=dict)  # the surfaces' stats, summed
    probe_gap: float = 0.0  # longest time without a probe starting (from the start to the end)
    rss_start: int = 0
    rss_baseline: int = 0
    rss_end: int = 0
    rss_max: int = 0
    alive: bool = True

    @property
    def answers_5xx(self) -> int:
        return self.tally.statuses.get("5xx", 0)

    @property
    def healthz_worst(self) -> float:
        return max(self.healthz, default=0.0)

    @property
    def healthz_p99(self) -> float:
        return percentile(self.healthz, 99)

    @property
    def rss_growth(self) -> float:
        return (self.rss_end - self.rss_baseline) / self.rss_baseline if self.rss_baseline else 0.0

    def failures(self, bounds: Bounds = Bounds()) -> list[str]:
        out = []
        if not self.alive:
            out.append(f"{self.target} died during the run")
        for kind, count in sorted(self.finding_counts.items()):
            examples = [f for f in self.findings if f.kind == kind][:3]
            shown = "\n".join(f"  [{f.case}]\n  {f.detail[:600]}" for f in examples)
            out.append(f"{count} × {kind}:\n{shown}")
        if self.server_5xx:
            out.append(f"the server counted {self.server_5xx} answers with a 5xx")
        if self.healthz_failures:
            out.append(f"/healthz failed {len(self.healthz_failures)} times: {self.healthz_failures[:3]}")
        if self.probe_gap > max(1.0, self.healthz_worst + 0.5):
            out.append(f"the prober left {self.probe_gap:.1f} s unwatched (it must probe the whole run)")
        if self.healthz_worst >= bounds.healthz_worst:
            out.append(
                f"/healthz worst {self.healthz_worst * 1000:.0f} ms ≥ {bounds.healthz_worst * 1000:.0f} ms"
            )
        if bounds.healthz_p99 is not None and self.healthz_p99 >= bounds.healthz_p99:
            out.append(f"/healthz p99 {self.healthz_p99 * 1000:.0f} ms ≥ {bounds.healthz_p99 * 1000:.0f} ms")
        if self.rss_growth > bounds.rss_growth:
            out.append(
                f"RSS grew {self.rss_growth:.1%} (> {bounds.rss_growth:.0%}): "
                f"{self.rss_baseline / 2**20:.1f} → {self.rss_end / 2**20:.1f} MiB"
            )
        return out

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.tally.requests.items()))
        statuses = ", ".join(f"{k} {n}" for k, n in sorted(self.tally.statuses.items()))
        found = ", ".join(f"{k} {n}" for k, n in sorted(self.finding_counts.items())) or "none"
        mib = 2**20
        return "\n".join(
            [
                f"fuzz {self.target} (seed {self.seed}): {self.requests} requests tried in "
                f"{self.cases} cases of {self.planned} planned, {self.seconds:.1f} s",
                f"  answers: {statuses}; 5xx: {self.answers_5xx} seen, "
                f"{self.server_5xx} counted by the server",
                f"  by class: {kinds}",
                f"  /healthz: {len(self.healthz)} probes, worst {self.healthz_worst * 1000:.1f} ms, "
                f"p99 {self.healthz_p99 * 1000:.1f} ms, p50 {percentile(self.healthz, 50) * 1000:.1f} ms, "
                f"{len(self.healthz_failures)} failed, longest gap {self.probe_gap:.2f} s; "
                "the slowest during: "
                f"{', '.join(self.slowest_probe_during[:8]) or '-'}",
                f"  RSS: {self.rss_start / mib:.1f} MiB at start, {self.rss_baseline / mib:.1f} after "
                f"warm-up, {self.rss_end / mib:.1f} at the end (growth {self.rss_growth:+.1%}), "
                f"max {self.rss_max / mib:.1f}",
                f"  judged: {', '.join(f'{k} {n}' for k, n in sorted(self.judged.items())) or '-'}",
                f"  findings: {found}",
            ]
        )


PROBE = "vectorload_dev.testing.fuzz.probe"


class _Monitor:
    """The health prober (a process of its own, `probe.py`) and an RSS sampler thread."""

    def __init__(self, target: Target, interval: float, timeout: float) -> None:
        host, port, path = target.health_endpoint()
        self.target = target
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, "-m", PROBE, host, str(port), path, str(interval), str(timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.stop = threading.Event()
        self.rss_max = 0
        self.lines: list[str] = []
        # the prober's lines are read as they come: a full pipe would stop it mid-run
        self.reader = threading.Thread(target=self._read, name="fuzz-probe-reader", daemon=True)
        self.reader.start()
        self.sampler = threading.Thread(target=self._sample, name="fuzz-rss", daemon=True)
        self.sampler.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _sample(self) -> None:
        while not self.stop.wait(0.25):
            with contextlib.suppress(OSError, RuntimeError):
                self.rss_max = max(self.rss_max, rss_bytes(self.target.pid))

    def finish(self) -> tuple[list[tuple[float, float]], list[str]]:
        """Stop both; ((started, seconds) per probe, failures). A failed probe counts with its
        time taken."""
        self.stop.set()
        self.sampler.join()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(self.timeout + 10)
        self.reader.join(10)
        probes: list[tuple[float, float]] = []
        failures: list[str] = []
        for line in self.lines:
            words = line.split(" ")
            if len(words) < 2:
                continue
            if words[1] == "fail":
                failures.append(" ".join(words[2:-1]))
            probes.append((float(words[0]), float(words[-1])))
        return probes, failures


def plan(target: Target, requests: int, seed: int) -> list[tuple[Surface, Case]]:
    """The cases of a run: about `requests` in all, split evenly over the target's surfaces."""
    surfaces = target.surfaces()
    share = max(1, requests // len(surfaces))
    out: list[tuple[Surface, Case]] = []
    for index, surface in enumerate(surfaces):
        out += [(surface, case) for case in surface.cases(share, seed + index)]
    return out


def run(
    target: Target,
    requests: int,
    seconds: float,
    seed: int = 0,
    workers: int = 4,
    warmup: float = 0.2,
    health_interval: float = 0.02,
    health_timeout: float = 5.0,
    keep_findings: int = 200,
) -> Report:
    """Send about `requests` requests (stopping early after `seconds`) and report."""
    cases = plan(target, requests, seed)
    report = Report(target=target.name, seed=seed, planned=len(cases))
    report.rss_start = rss_bytes(target.pid)
    warm = max(1, int(len(cases) * warmup))
    lock = threading.Lock()
    position = 0
    deadline = time.monotonic() + seconds

    def take(limit: int) -> Iterator[tuple[Surface, Case]]:
        nonlocal position
        while time.monotonic() < deadline:
            with lock:
                if position >= limit:
                    return
                item = cases[position]
                position += 1
            yield item

    spans: list[tuple[float, float, str]] = []

    def record(surface: Surface, case: Case, outcome: Outcome, span: tuple[float, float]) -> None:
        found = surface.judge(case, outcome)
        with lock:
            spans.append((*span, case.label))
            report.cases += 1
            report.requests += outcome.requests
            report.tally.add(case.kind, outcome)
            for finding in found:
                report.finding_counts[finding.kind] = report.finding_counts.get(finding.kind, 0) + 1
                if len(report.findings) < keep_findings:
                    report.findings.append(finding)

    def work(limit: int) -> None:
        sessions: dict[int, tuple[Surface, Any]] = {}
        try:
            for surface, case in take(limit):
                if id(surface) not in sessions:
                    sessions[id(surface)] = (surface, surface.session())
                session = sessions[id(surface)][1]
                began = time.monotonic()
                try:
                    outcome = case.run(session)
                except OSError as exc:  # the target refused the connection: it is gone or full
                    outcome = Outcome(None, error=f"{type(exc).__name__}: {exc}")
                record(surface, case, outcome, (began, time.monotonic()))
        finally:
            for surface, session in sessions.values():
                surface.close(session)

    monitor = _Monitor(target, health_interval, health_timeout)
    started = time.monotonic()
    try:
        for limit in (warm, len(cases)):
            threads = [threading.Thread(target=work, args=(limit,), name=f"fuzz-{i}") for i in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if limit == warm:
                time.sleep(0.5)
                report.rss_baseline = rss_bytes(target.pid)
        time.sleep(1.0)  # answers in flight finish; freed memory is returned
        report.rss_end = rss_bytes(target.pid)
    finally:
        probes, report.healthz_failures = monitor.finish()
    ended = time.monotonic()
    report.seconds = ended - started
    report.healthz = [seconds for _, seconds in probes]
    starts = [started, *sorted(at for at, _ in probes), ended]
    report.probe_gap = max(b - a for a, b in itertools.pairwise(starts))
    if probes:
        at, seconds = max(probes, key=lambda p: p[1])
        report.slowest_probe_during = sorted(
            {label for begin, end, label in spans if begin <= at + seconds and end >= at}
        )
    report.rss_max = max(monitor.rss_max, report.rss_end, report.rss_baseline)
    for surface in {id(s): s for s, _ in cases}.values():
        for key, value in surface.stats().items():
            report.judged[key] = report.judged.get(key, 0) + value
    report.alive = target.alive()
    report.server_5xx = target.server_errors() if report.alive else None
    return report
