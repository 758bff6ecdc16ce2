"""Pod IP allocation and the pure pod-status rules."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

from vectorload_dev.kubelet.ipam import AddressesExhausted, IpAllocator
from vectorload_dev.kubelet.pod import backoff_delay
from vectorload_dev.kubelet.status import ContainerView, PodView, pod_phase, pod_status


def test_addresses_are_distinct_idempotent_and_start_at_two() -> None:
    ipam = IpAllocator()
    first = ipam.allocate("a")
    assert first == "127.0.0.2"
    assert ipam.allocate("a") == first
    assert ipam.allocate("b") == "127.0.0.3"
    assert ipam.owner("127.0.0.3") == "b"
    assert len(ipam) == 2


def test_released_addresses_are_reused_last_and_never_while_held() -> None:
    ipam = IpAllocator(first=2, last=4)
    a, b, c = (ipam.allocate(owner) for owner in "abc")
    assert {a, b, c} == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}
    with pytest.raises(AddressesExhausted):
        ipam.allocate("d")
    assert ipam.release("b") == b
    assert ipam.release("b") is None
    assert ipam.allocate("d") == b  # the only free one
    ipam.release("a")
    ipam.release("c")
    assert ipam.allocate("e") == c  # round robin continues after the last handed out (127.0.0.3)
    assert ipam.allocate("f") == a
    assert sorted([ipam.address_of(o) for o in "def"]) == sorted([a, b, c])  # type: ignore[type-var]


def test_preferred_address_is_used_only_when_free_and_in_range() -> None:
    ipam = IpAllocator()
    assert ipam.allocate("a", preferred="127.0.0.9") == "127.0.0.9"
    assert ipam.allocate("b", preferred="127.0.0.9") != "127.0.0.9"
    assert ipam.allocate("c", preferred="10.0.0.1").startswith("127.0.0.")
    assert ipam.allocate("d", preferred="127.0.0.1") != "127.0.0.1"  # the host's address is not a pod's
    assert ipam.allocate("e", preferred="127.0.0.255") != "127.0.0.255"


def test_a_pod_network_gives_addresses_only_inside_it() -> None:
    ipam = IpAllocator.for_network("127.5.3.0/24")
    assert ipam.network == "127.5.3.0/24"
    assert [ipam.allocate(o) for o in "ab"] == ["127.5.3.2", "127.5.3.3"]
    assert ipam.allocate("c", preferred="127.0.0.9") == "127.5.3.4"  # another network's address
    assert ipam.allocate("d", preferred="127.5.3.200") == "127.5.3.200"
    assert not ipam.in_range("127.5.4.2") and not ipam.in_range("127.5.3.1")
    assert IpAllocator.for_network("127.0.0.0/24").allocate("x") == IpAllocator().allocate("x")


@pytest.mark.parametrize(
    ("network", "problem"),
    [
        ("10.1.2.0/24", "must be a /24 inside 127.0.0.0/8"),
        ("127.5.0.0/16", "must be a /24 inside 127.0.0.0/8"),
        ("127.5.3.7/24", "is not an IPv4 network"),  # host bits set
        ("loopback", "is not an IPv4 network"),
    ],
)
def test_a_bad_pod_network_is_refused_naming_it(network: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        IpAllocator.for_network(network)
    assert repr(network) in str(caught.value)


def test_the_kubelet_refuses_a_bad_pod_network_at_once() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vectorload_dev", "kubelet", "--pod-network", "10.0.0.0/24"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "argument --pod-network: pod network '10.0.0.0/24' must be a /24 inside 127.0.0.0/8" in proc.stderr


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, 1.0, 30.0) for n in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]


def _c(name: str, state: Mapping[str, Any], restarts: int = 0, ready: bool = False) -> ContainerView:
    return ContainerView(name, "img", state=dict(state), restart_count=restarts, ready=ready)


RUNNING = {"running": {"startedAt": "t"}}
WAITING = {"waiting": {"reason": "ContainerCreating"}}


def _done(code: int) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}


@pytest.mark.parametrize(
    ("policy", "containers", "phase"),
    [
        ("Always", [_c("a", WAITING)], "Pending"),
        ("Always", [_c("a", RUNNING)], "Running"),
        ("Always", [_c("a", _done(0)), _c("b", RUNNING)], "Running"),
        ("Always", [_c("a", _done(0))], "Running"),  # it will be restarted
        ("Always", [_c("a", {"waiting": {"reason": "CrashLoopBackOff"}}, restarts=2)], "Running"),
        ("OnFailure", [_c("a", _done(0)), _c("b", _done(0))], "Succeeded"),
        ("OnFailure", [_c("a", _done(1))], "Running"),
        ("Never", [_c("a", _done(0)), _c("b", _done(2))], "Failed"),
        ("Never", [_c("a", _done(0))], "Succeeded"),
    ],
)
def test_phase(policy: str, containers: list[ContainerView], phase: str) -> None:
    assert pod_phase(policy, True, False, containers) == phase


def test_phase_before_and_after_init() -> None:
    assert pod_phase("Always", False, False, [_c("a", WAITING)]) == "Pending"
    assert pod_phase("Never", False, True, [_c("a", WAITING)]) == "Failed"


def test_status_conditions_and_transition_times() -> None:
    view = PodView(
        "Always", "127.0.0.5", "t0", [], [_c("a", RUNNING, ready=True)], initialized=True, sandbox_ready=True
    )
    status = pod_status(view, {}, now="t1")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Running"
    assert status["podIP"] == "127.0.0.5" and status["podIPs"] == [{"ip": "127.0.0.5"}]
    assert status["hostIP"] == "127.0.0.1"
    assert {k: c["status"] for k, c in conditions.items()} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert status["containerStatuses"][0]["imageID"] == "img"
    view.containers[0].ready = False
    later = pod_status(view, status, now="t2")
    later_conditions = {c["type"]: c for c in later["conditions"]}
    assert later_conditions["Ready"]["status"] == "False"
    assert later_conditions["Ready"]["lastTransitionTime"] == "t2"
    assert later_conditions["Ready"]["reason"] == "ContainersNotReady"
    assert later_conditions["Initialized"]["lastTransitionTime"] == "t1"
