"""Pulls `/v1/distribution` from every querynode pod; each pull is also the node's heartbeat.

A pod that is not Ready, has no IP, or does not answer within the timeout is reported as a
not-ready `NodeState` at once, which makes the planner treat its segments as lost.

Each pull also tells whether anything changed since the previous one (`DistributionPuller.revision`
moves): a node's answer differing from its last answer, a pod added, removed, relabelled or
changing readiness or address, or a node becoming unreachable or answering again. An unchanged
answer keeps the previous `NodeState` object (no conversion).

The answer arrives decoded and typed (`vectorload.wire.querynode.Distribution`, by the client);
this module only maps it onto the core's model — no defaults, no re-parsing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from vectorload.wire import querynode as wire
from vectorload_operator.clients import ClientFor, QuerynodeError
from vectorload_operator.core.model import HeldSegment, NodeState, Reloading, SegmentRef, SegmentState
from vectorload_operator.pods import QuerynodePod

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeView:
    """The last pull of one node: its core state, and when that pull was started."""

    pod: QuerynodePod
    state: NodeState
    pulled_at: float  # monotonic time the pull started
    error: str = ""
    answer: wire.Distribution | None = None  # the node's answer as received (None: not ready)


def reloading_of(seg: wire.HeldSegment) -> Reloading | None:
    """The item's in-place reload marker (absent or null: none).

    The querynode sets it while a copy is reloaded in place with another field set and the old
    copy keeps serving; the planner must neither resend that reload nor charge its memory twice.
    """
    marker = seg.reloading
    if not isinstance(marker, wire.Reloading):
        return None
    return Reloading(fields=frozenset(marker.fields), dynamic=marker.dynamic_field)


def parse_distribution(name: str, address: str | None, data: wire.Distribution) -> NodeState:
    """The core's view of one node's distribution answer."""
    segments = {
        SegmentRef(seg.collection, seg.partition, seg.segment): HeldSegment(
            state=SegmentState(seg.state),
            fields=frozenset(seg.fields),
            dynamic=seg.dynamic_field,
            bytes=seg.bytes,
            reason=seg.reason,
            message=seg.message,
            reloading=reloading_of(seg),
        )
        for seg in data.segments
    }
    capacity = data.capacity
    return NodeState(
        name=name,
        ready=True,
        address=address,
        capacity_bytes=capacity.memory_limit_bytes,
        threshold=capacity.threshold,
        used_bytes=capacity.used_bytes,
        reserved_bytes=capacity.reserved_bytes,
        boot_id=data.boot_id,
        segments=segments,
    )


def _same_pod(a: QuerynodePod, b: QuerynodePod) -> bool:
    return a == b and dict(a.labels) == dict(b.labels)


class DistributionPuller:
    def __init__(self, clients: ClientFor, clock: Callable[[], float] = time.monotonic) -> None:
        self._clients = clients
        self._clock = clock
        self.views: dict[str, NodeView] = {}
        self.revision = 0  # moves whenever a pull shows a change (see the module docstring)

    async def _pull_one(self, pod: QuerynodePod) -> NodeView:
        started = self._clock()
        if not pod.ready or pod.url is None:
            why = "pod is not Ready" if pod.url is not None else "pod has no IP"
            return NodeView(pod, NodeState(name=pod.key, ready=False, address=pod.url), started, why)
        prev = self.views.get(pod.key)
        try:
            data = await self._clients(pod.url).distribution()
        except (QuerynodeError, OSError) as exc:
            message = exc.message if isinstance(exc, QuerynodeError) else str(exc)
            if prev is None or prev.state.ready:
                log.warning("querynode %s not ready: %s", pod.key, message)
            return NodeView(pod, NodeState(name=pod.key, ready=False, address=pod.url), started, message)
        if prev is not None and prev.answer == data and _same_pod(prev.pod, pod):
            return NodeView(pod, prev.state, started, answer=prev.answer)
        return NodeView(pod, parse_distribution(pod.key, pod.url, data), started, answer=data)

    @staticmethod
    def _changed(prev: NodeView | None, new: NodeView) -> bool:
        if prev is None or not _same_pod(prev.pod, new.pod):
            return True
        if new.answer is None or prev.answer is None:
            return (new.answer is None) != (prev.answer is None)
        return new.state is not prev.state

    async def pull(self, pods: Mapping[str, QuerynodePod]) -> dict[str, NodeView]:
        """Pull every pod at once; returns (and keeps) the views of the pods given."""
        views = await asyncio.gather(*(self._pull_one(pod) for pod in pods.values()))
        new = {v.pod.key: v for v in views}
        if new.keys() != self.views.keys() or any(
            self._changed(self.views.get(k), v) for k, v in new.items()
        ):
            self.revision += 1
        self.views = new
        return new
