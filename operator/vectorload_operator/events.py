"""Kubernetes Events for CollectionLoads, emitted on transitions only.

`Events.emit` always posts; `Events.transition` posts when the (topic → reason, message) pair
for an object changes, so a condition that stays the same for hours posts one event. Which
transitions emit which events is decided in `event_policy.py`; this module only posts them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vectorload_operator.clock import SYSTEM_CLOCK, Clock, rfc3339
from vectorload_operator.settings import CRD_GROUP, CRD_KIND, CRD_VERSION

log = logging.getLogger(__name__)

COMPONENT = "vectorload-operator"
Poster = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def event_body(ref: ObjectRef, type_: str, reason: str, message: str, now_wall: float) -> dict[str, Any]:
    stamp = rfc3339(now_wall)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref.name}.{uuid.uuid4().hex[:16]}", "namespace": ref.namespace},
        "involvedObject": {
            "apiVersion": f"{CRD_GROUP}/{CRD_VERSION}",
            "kind": CRD_KIND,
            "name": ref.name,
            "namespace": ref.namespace,
            "uid": ref.uid,
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class Events:
    def __init__(
        self,
        poster: Poster,
        on_error: Callable[[BaseException], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._poster = poster
        self._clock = clock
        self._on_error = on_error
        self._last: dict[tuple[tuple[str, str], str], tuple[str, str]] = {}
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.posted: list[tuple[str, str, str]] = []  # (object name, reason, message), for logs/tests

    def emit(self, ref: ObjectRef, reason: str, message: str, warning: bool = False) -> None:
        body = event_body(ref, "Warning" if warning else "Normal", reason, message, self._clock.wall())
        self._queue.put_nowait((ref.namespace, body))
        self.posted.append((ref.name, reason, message))
        del self.posted[:-500]
        log.info("event %s/%s %s: %s", ref.namespace, ref.name, reason, message)

    def transition(
        self, ref: ObjectRef, topic: str, reason: str | None, message: str = "", warning: bool = False
    ) -> bool:
        """Post `reason` for `topic` if it differs from the last one posted for that topic;
        `reason=None` clears the topic (so the same reason later posts again)."""
        key = (ref.key, topic)
        if reason is None:
            self._last.pop(key, None)
            return False
        if self._last.get(key) == (reason, message):
            return False
        self._last[key] = (reason, message)
        self.emit(ref, reason, message, warning)
        return True

    def forget(self, key: tuple[str, str]) -> None:
        for k in [k for k in self._last if k[0] == key]:
            del self._last[k]

    async def run(self) -> None:
        while True:
            namespace, body = await self._queue.get()
            try:
                await self._poster(namespace, body)
            except Exception as exc:
                log.warning("posting event %s failed: %s", body.get("reason"), exc)
                if self._on_error is not None:
                    self._on_error(exc)
