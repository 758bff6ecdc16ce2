"""The in-memory registry of CollectionLoads, fed by the kopf handlers (and one initial LIST).

Every handler is `async`, so the registry is only ever changed on the operator's event loop,
between two awaits of the reconcile loop: no lock, and listeners may touch asyncio objects.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vectorload_operator.clock import SYSTEM_CLOCK, Clock

Key = tuple[str, str]  # (namespace, name)


@dataclass
class Entry:
    namespace: str
    name: str
    uid: str
    generation: int
    created: str  # metadata.creationTimestamp (RFC 3339): older wins a CollectionConflict
    spec: dict[str, Any]
    status: dict[str, Any]  # the status at registration (to continue progress and conditions)
    generation_seen_at: float  # wall time the generation was first seen, for load duration
    deleting: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def target_key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def collection(self) -> str:
        return str(self.spec.get("collection", ""))


class Registry:
    """CollectionLoads by (namespace, name). `version` moves on every change, and every
    listener is called (the reconcile loop wakes up for a new or changed resource)."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._entries: dict[Key, Entry] = {}
        self.version = 0
        self._listeners: list[Callable[[], None]] = []

    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def _changed(self) -> None:
        self.version += 1
        for callback in self._listeners:
            callback()

    def upsert(self, body: Mapping[str, Any]) -> Entry:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        generation = int(meta.get("generation") or 1)
        old = self._entries.get(key)
        if old is not None and old.uid == str(meta.get("uid")):
            if generation != old.generation:
                old.generation_seen_at = self._clock.wall()
            old.generation = generation
            old.spec = copy.deepcopy(dict(body.get("spec") or {}))
            old.deleting = old.deleting or bool(meta.get("deletionTimestamp"))
            entry = old
        else:
            entry = Entry(
                namespace=key[0],
                name=key[1],
                uid=str(meta.get("uid") or ""),
                generation=generation,
                created=str(meta.get("creationTimestamp") or ""),
                spec=copy.deepcopy(dict(body.get("spec") or {})),
                status=copy.deepcopy(dict(body.get("status") or {})),
                generation_seen_at=self._clock.wall(),
                deleting=bool(meta.get("deletionTimestamp")),
            )
            self._entries[key] = entry
        self._changed()
        return entry

    def mark_deleting(self, body: Mapping[str, Any]) -> Entry:
        entry = self.upsert(body)
        entry.deleting = True
        self._changed()
        return entry

    def remove(self, key: Key) -> Entry | None:
        entry = self._entries.pop(key, None)
        self._changed()
        return entry

    def get(self, key: Key) -> Entry | None:
        return self._entries.get(key)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)
