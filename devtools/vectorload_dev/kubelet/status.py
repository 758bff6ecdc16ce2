"""Pod status from what the kubelet knows about its processes: pure functions.

A `ContainerView` is one container as the kubelet sees it; `pod_status` turns the pod's views into
the `status` object Kubernetes expects (phase, conditions, init/containerStatuses, IPs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Json = dict[str, Any]

HOST_IP = "127.0.0.1"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ContainerView:
    name: str
    image: str
    state: Json = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Json = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    container_id: str = ""

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def exit_code(self) -> int | None:
        terminated: Json | None = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])

    def to_status(self) -> Json:
        status: Json = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def will_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def pod_phase(
    restart_policy: str, initialized: bool, init_failed: bool, containers: Sequence[ContainerView]
) -> str:
    """Kubernetes' phase rules: Failed/Succeeded only when no container will run again."""
    if init_failed:
        return "Failed"
    if not initialized:
        return "Pending"
    if any(c.running for c in containers):
        return "Running"
    codes = [c.exit_code for c in containers]
    if containers and all(code is not None for code in codes):
        if any(will_restart(restart_policy, code) for code in codes if code is not None):
            return "Running"
        return "Succeeded" if all(code == 0 for code in codes) else "Failed"
    # some containers waiting: running if any has already run (it is restarting), else pending
    if any(c.restart_count > 0 or c.exit_code is not None for c in containers):
        return "Running"
    return "Pending"


def _condition(old: Mapping[str, Json], kind: str, status: bool, reason: str | None, now: str) -> Json:
    value = "True" if status else "False"
    previous = old.get(kind)
    changed = previous is None or previous.get("status") != value
    condition: Json = {
        "type": kind,
        "status": value,
        "lastProbeTime": None,
        "lastTransitionTime": now if changed or previous is None else previous.get("lastTransitionTime", now),
    }
    if reason and not status:
        condition["reason"] = reason
    return condition


@dataclass
class PodView:
    restart_policy: str
    pod_ip: str | None
    start_time: str
    init_containers: list[ContainerView]
    containers: list[ContainerView]
    initialized: bool = False
    init_failed: bool = False
    sandbox_ready: bool = False
    message: str = ""
    reason: str = ""


def pod_status(view: PodView, old_status: Json, now: str | None = None) -> Json:
    now = now or now_rfc3339()
    old = {c["type"]: c for c in old_status.get("conditions") or [] if "type" in c}
    phase = pod_phase(view.restart_policy, view.initialized, view.init_failed, view.containers)
    containers_ready = bool(view.containers) and all(c.ready for c in view.containers)
    terminal = phase in ("Succeeded", "Failed")
    ready = containers_ready and not terminal
    conditions = [
        _condition(old, "PodReadyToStartContainers", view.sandbox_ready, None, now),
        _condition(old, "Initialized", view.initialized, "ContainersNotInitialized", now),
        _condition(old, "Ready", ready, "PodCompleted" if terminal else "ContainersNotReady", now),
        _condition(old, "ContainersReady", ready, "PodCompleted" if terminal else "ContainersNotReady", now),
        _condition(old, "PodScheduled", True, None, now),
    ]
    status: Json = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "startTime": view.start_time,
        "containerStatuses": [c.to_status() for c in view.containers],
        "message": view.message or None,
        "reason": view.reason or None,
    }
    if view.init_containers:
        status["initContainerStatuses"] = [c.to_status() for c in view.init_containers]
    if view.pod_ip:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    return status


def without_times(status: Json) -> Json:
    """The status with heartbeat-like timestamps removed, to decide whether anything changed."""
    copy = dict(status)
    copy["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions", [])
    ]
    return copy
