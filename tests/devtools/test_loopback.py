"""Loopback slots: one 127.N.0.0/16 per test run, held by an flock that dies with its process."""

from __future__ import annotations

import ipaddress
import itertools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vectorload_dev.loopback import (
    LOCKS_ENV,
    LoopbackSlot,
    PodNetworks,
    SlotsExhausted,
    acquire_slot,
    free_port,
    loopback_hosts,
)
from vectorload_dev.testing import pod_network, run_slot


def test_a_slot_is_one_slash_16_split_by_purpose() -> None:
    slot = LoopbackSlot(7)
    assert (slot.prefix, slot.network, slot.host) == ("127.7.", "127.7.0.0/16", "127.7.0.1")
    assert [slot.pod_network(n) for n in (0, 8)] == ["127.7.1.0/24", "127.7.9.0/24"]
    with pytest.raises(ValueError, match="9 pod networks"):
        slot.pod_network(9)
    querynodes = list(itertools.islice(slot.querynode_hosts(), 300))
    pools = list(itertools.islice(slot.pool_hosts(), 300))
    assert querynodes[:2] == ["127.7.10.2", "127.7.10.3"] and pools[0] == "127.7.20.2"
    assert len(set(querynodes) | set(pools)) == 600  # distinct, and never a pod network's
    net = ipaddress.ip_network(slot.network)
    assert all(ipaddress.ip_address(a) in net for a in querynodes + pools)
    assert not any(a.startswith(("127.7.1.", "127.7.0.")) for a in querynodes + pools)
    assert slot.contains("127.7.200.3") and not slot.contains("127.8.0.1") and not slot.contains("x")
    with pytest.raises(ValueError, match="not in 0-254"):
        LoopbackSlot(255)
    with pytest.raises(ValueError, match="no loopback range"):
        next(loopback_hosts(1, 9, 3))


def test_free_port_binds_on_the_slot_address() -> None:
    host = run_slot().host
    port = free_port(host)
    import socket

    with socket.socket() as sock:
        sock.bind((host, port))  # free right after, on this run's own address


def test_slots_are_exclusive_and_released(tmp_path: Path) -> None:
    first = acquire_slot(tmp_path)
    second = acquire_slot(tmp_path)
    assert (first.slot.index, second.slot.index) == (2, 3)
    first.release()
    assert not first.held
    third = acquire_slot(tmp_path)
    assert third.slot.index == 2  # the lowest free one
    with pytest.raises(SlotsExhausted, match=r"slot 3 .* held by another run"):
        acquire_slot(tmp_path, wanted=3)
    with pytest.raises(SlotsExhausted, match="all loopback slots 2-3"):
        acquire_slot(tmp_path, last=3)
    for held in (second, third):
        held.release()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from vectorload_dev.loopback import acquire_slot
    held = acquire_slot(Path(sys.argv[1]))
    print(held.slot.index, flush=True)
    time.sleep(600)
    """
)


def test_a_killed_run_frees_its_slot(tmp_path: Path) -> None:
    """Another process holds slot 2 until it is SIGKILLed: no cleanup, the kernel drops the lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "2"
        mine = acquire_slot(tmp_path)
        assert mine.slot.index == 3, "slot 2 belongs to the other process"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        again = acquire_slot(tmp_path)
        assert again.slot.index == 2
        mine.release()
        again.release()
    finally:
        holder.kill()
        holder.wait(10)


def test_the_run_slot_is_pinned_by_the_environment(tmp_path: Path) -> None:
    script = "from vectorload_dev.testing import run_slot; print(run_slot().network)"
    env = {**os.environ, LOCKS_ENV: str(tmp_path), "VECTORLOAD_LOOPBACK_SLOT": "42"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "127.42.0.0/16"
    env["VECTORLOAD_LOOPBACK_SLOT"] = "forty-two"
    bad = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "VECTORLOAD_LOOPBACK_SLOT='forty-two' is not a slot number" in bad.stderr


def test_pod_networks_are_per_kubelet_and_stable() -> None:
    networks = PodNetworks(LoopbackSlot(9))
    a, b = networks("kubelet-a"), networks("kubelet-b")
    assert (a, b, networks("kubelet-a")) == ("127.9.1.0/24", "127.9.2.0/24", "127.9.1.0/24")
    for n in range(7):
        networks(f"more-{n}")
    with pytest.raises(ValueError, match="9 pod networks"):
        networks("a tenth kubelet")


def test_this_runs_pod_networks_are_in_its_slot() -> None:
    network = pod_network("kubelet-of-test-loopback")
    assert network.startswith(run_slot().prefix) and network == pod_network("kubelet-of-test-loopback")
