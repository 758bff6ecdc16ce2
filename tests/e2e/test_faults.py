"""Faults against the whole system (chart installed on the process kubelet), each repeated
VECTORLOAD_FAULT_TRIALS times (default 3): SIGKILL a querynode or the operator in the middle of
a load, restart kube-apiserver during a load, a corrupt segment file, a node out of capacity.
After every trial the system must converge: Loaded, every segment exactly once in the replica
(checked on every querynode's /v1/distribution), nothing left loading or failed.

Each test prints `faults survived: k/N (<kind>)`; docs/e2e.md records a full-count run."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.e2e.system import LocalSystem, Release, SystemError_, container_pid
from vectorload_dev.testing import WaitTimeout, wait_for
from vectorload_dev.testing.e2e import PARTITIONS, fault_trials, install, replica_holdings, segments

TRIALS = fault_trials()
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120 + 90 * TRIALS)]

# slower loads (6 files × 0.3 s per segment, ≈ 5 s for `book`) leave room to strike mid-load
SLOW = ("--load-step-delay=0.3",)


@pytest.fixture(scope="module")
def release(local_system: LocalSystem, sample_root: Path) -> Iterator[Release]:
    yield from install(local_system, sample_root, "faults", querynode_args=SLOW)


def report(kind: str, survived: int) -> None:
    line = f"faults survived: {survived}/{TRIALS} ({kind})"
    print(line)
    out = os.environ.get("VECTORLOAD_FAULT_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def restart(rel: Release, spec: dict[str, Any] | None = None) -> None:
    """Start a fresh load of `book` (the previous one released first)."""
    if rel.cload("book") is not None:
        rel.delete_cload("book")
        rel.wait_gone("book")
    wait_for("querynodes empty", lambda: all(not h for h in rel.held().values()), 30)
    rel.apply_cload("book", spec or {"collection": "book"})


def mid_load(rel: Release) -> dict[str, Any]:
    """Wait until status shows the current generation Loading with partial progress."""

    def check() -> dict[str, Any] | None:
        obj = rel.cload("book") or {}
        st = obj.get("status") or {}
        current = st.get("observedGeneration") == obj.get("metadata", {}).get("generation")
        ok = current and st.get("loadState") == "Loading" and 0 < int(st.get("loadProgress", 0)) < 100
        return st if ok else None

    return wait_for("book Loading with partial progress", check, 30, interval=0.05)


def converged(rel: Release, parts: tuple[str, ...] = PARTITIONS, replicas: int = 1) -> None:
    """Loaded; every querynode's distribution: no segment loading or failed, and each replica
    holds every segment exactly once."""
    status = rel.wait_state("book", "Loaded", timeout=90)["status"]
    assert status["loadProgress"] == 100
    for pod in rel.querynodes():
        states = {(s["segment"], s["state"]) for s in rel.distribution(pod)["segments"]}
        assert all(state == "loaded" for _, state in states), (pod["metadata"]["name"], states)
    holdings = replica_holdings(rel)
    assert holdings == [segments(parts)] * replicas, json.dumps(holdings)


def restarts(pod: dict[str, Any]) -> int:
    return int(pod["status"]["containerStatuses"][0]["restartCount"])


def test_sigkill_querynode_mid_load(release: Release) -> None:
    rel = release
    survived = 0
    for trial in range(TRIALS):
        restart(rel)
        mid_load(rel)
        victim = rel.querynodes()[trial % 2]
        name = victim["metadata"]["name"]
        boot = rel.distribution(victim)["bootId"]
        rel.kill(victim, signal.SIGKILL)

        def back(name: str = name, count: int = restarts(victim)) -> dict[str, Any] | None:
            pods = {p["metadata"]["name"]: p for p in rel.querynodes()}
            pod = pods.get(name)
            return pod if pod is not None and restarts(pod) > count else None

        pod = wait_for(f"{name} restarted by the kubelet and Ready", back, 60)
        assert rel.distribution(pod)["bootId"] != boot
        converged(rel)
        survived += 1
    report("SIGKILL querynode mid-load", survived)
    assert survived == TRIALS


def test_sigkill_operator_mid_load(release: Release) -> None:
    rel = release
    survived = 0
    for _ in range(TRIALS):
        restart(rel)
        mid_load(rel)
        victim = rel.operator_pod()
        assert victim is not None
        pid = rel.kill(victim, signal.SIGKILL)

        def back(count: int = restarts(victim), old: int = pid) -> dict[str, Any] | None:
            pod = rel.operator_pod()
            return pod if pod is not None and restarts(pod) > count and container_pid(pod) != old else None

        wait_for("operator restarted by the kubelet", back, 60)
        converged(rel)
        survived += 1
    report("SIGKILL operator mid-load", survived)
    assert survived == TRIALS


def test_restart_apiserver_during_load(release: Release, control_plane: ControlPlane) -> None:
    rel = release
    survived = 0
    for _ in range(TRIALS):
        restart(rel)
        mid_load(rel)
        control_plane.restart_apiserver(down_for=1.0)
        converged(rel)
        # the operator's watches reconnected: a spec change after the restart is acted upon
        rel.patch_cload("book", {"partitions": ["_default", "poetry"]})
        converged(rel, ("_default", "poetry"))
        survived += 1
    report("kube-apiserver restart during load", survived)
    assert survived == TRIALS


def test_corrupt_segment_degrades_then_recovers(local_system: LocalSystem, private_root: Path) -> None:
    gen = install(local_system, private_root, "corrupt")
    rel = next(gen)
    survived = 0
    try:
        files = sorted(private_root.glob("book/*/*/book_intro.hnsw"))
        assert len(files) == 12
        for trial in range(TRIALS):
            index = files[trial % len(files)]
            segment = index.parent.name
            good = index.read_bytes()
            restart(rel)
            index.write_bytes(b"\0" * len(good))

            def degraded(segment: str = segment) -> dict[str, Any] | None:
                st = rel.status("book")
                conditions = st.get("conditions") or []
                cond: dict[str, Any] = next((c for c in conditions if c["type"] == "Degraded"), {})
                failure = st.get("lastFailure") or {}
                ok = cond.get("status") == "True" and failure.get("segment") == segment
                return st if ok else None

            st = wait_for(f"Degraded with lastFailure on {segment}", degraded, 60)
            assert st["lastFailure"]["reason"] and st["lastFailure"]["message"]
            assert st["loadState"] != "Loaded"
            index.write_bytes(good)
            converged(rel)
            survived += 1
    finally:
        gen.close()
    report("corrupt segment file", survived)
    assert survived == TRIALS


def test_node_out_of_capacity_until_capacity_is_added(local_system: LocalSystem, sample_root: Path) -> None:
    """One small querynode cannot hold `book`: InsufficientMemory (no OOM: admission refuses,
    the querynode keeps running under its limit); scaling the StatefulSet adds capacity."""
    gen = install(local_system, sample_root, "capacity", querynodes=1, memory="112Mi")
    rel = next(gen)
    survived = 0
    try:
        for _ in range(TRIALS):
            if len(rel.pods("querynode")) != 1:
                rel.kubectl("scale", f"statefulset/{rel.querynode_sts}", "--replicas=1")
                rel.wait_querynodes(1)
            restart(rel)

            def short() -> dict[str, Any] | None:
                st = rel.status("book")
                return st if "InsufficientMemory" in json.dumps(st.get("conditions")) else None

            st = wait_for("InsufficientMemory", short, 60)
            assert st["loadState"] != "Loaded", st
            (pod,) = rel.querynodes()
            cap = rel.distribution(pod)["capacity"]
            assert cap["usedBytes"] <= cap["memoryLimitBytes"] * cap["threshold"], cap
            assert restarts(pod) == 0, "the querynode was never killed"
            rel.kubectl("scale", f"statefulset/{rel.querynode_sts}", "--replicas=3")
            rel.wait_querynodes(3)
            converged(rel)
            for pod in rel.querynodes():
                assert restarts(pod) == 0
            survived += 1
    except (SystemError_, WaitTimeout) as exc:
        raise AssertionError(f"{exc}\nstatus: {json.dumps(rel.status('book'))[:2000]}") from None
    finally:
        gen.close()
    report("querynode out of memory capacity", survived)
    assert survived == TRIALS
