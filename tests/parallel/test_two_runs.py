"""Two test runs on one machine at once: the cluster-using packages (operator, kubelet, e2e)
started twice side by side, each in its own pytest process with its own control plane. Both must
pass, and each must have run on its own loopback slot (its pytest header names it).

It doubles those packages' time, so it runs only on request: `make test-parallel`
(`pytest tests/parallel --parallel-runs`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vectorload_dev.loopback import SLOT_ENV
from vectorload_dev.procutil import die_with_parent

pytestmark = [pytest.mark.parallel, pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(3 * 3600)]

REPO = Path(__file__).resolve().parents[2]
# in the suite's own (collection) order: tests/operator's session-wide operator watches every
# namespace and would also reconcile tests/e2e's CollectionLoads if e2e ran after it
PACKAGES = ("tests/e2e", "tests/kubelet", "tests/operator")
RUNS = 2


def _tail(path: Path, lines: int = 150) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_two_runs_of_the_cluster_packages_at_once_both_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {SLOT_ENV, "PYTEST_ADDOPTS"}}
    runs: list[tuple[subprocess.Popen[bytes], Path, Path, float]] = []
    for n in range(RUNS):
        log, junit = tmp_path / f"run-{n}.log", tmp_path / f"run-{n}.xml"
        command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rfE",
            f"--basetemp={tmp_path / f'base-{n}'}", f"--junitxml={junit}", *PACKAGES,
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                die_with_parent(command), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        runs.append((proc, log, junit, time.monotonic()))
    ended = []
    for proc, *_ in runs:
        proc.wait()
        ended.append(time.monotonic())

    slots, summaries = [], []
    for (proc, log, junit, started), end in zip(runs, ended, strict=True):
        assert proc.returncode == 0, f"{log.name} exited {proc.returncode}:\n{_tail(log)}"
        header = re.search(r"^vectorload loopback slot: (\d+) \(127\.\d+\.0\.0/16\)$", log.read_text(), re.M)
        assert header, f"{log.name} names no loopback slot:\n{_tail(log, 20)}"
        slots.append(int(header.group(1)))
        suite = ET.parse(junit).getroot().find("testsuite")  # noqa: S314 (our own child's report)
        assert suite is not None
        counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
        assert counts["tests"] > 0 and counts["failures"] == counts["errors"] == 0, counts
        summaries.append((counts["tests"], counts["skipped"], end - started))
    assert len(set(slots)) == RUNS, f"the runs shared a loopback slot: {slots}"
    assert summaries[0][:2] == summaries[1][:2], f"the runs ran different tests: {summaries}"
    together = min(ended) - max(start for *_, start in runs)
    shortest = min(seconds for *_, seconds in summaries)
    assert together > 0.9 * shortest, f"the runs barely overlapped ({together:.0f} s of {shortest:.0f} s)"
    with capsys.disabled():
        for slot, (tests, skipped, seconds) in zip(slots, summaries, strict=True):
            print(f"\n  slot {slot}: {tests} tests ({skipped} skipped) passed in {seconds:.0f} s", end="")
        print(f"\n  side by side for {together:.0f} s")
