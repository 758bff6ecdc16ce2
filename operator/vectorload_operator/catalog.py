"""Collection catalogs (`GET /v1/catalog/{collection}`), cached per (namespace, collection) and
refreshed every `interval` seconds so segments written after a load are picked up.

`CatalogCache.version` moves when a catalog appears, disappears or differs from the one it
replaces; a refresh that brings back the same catalog leaves it alone.

A catalog arrives decoded and typed (`vectorload.wire.querynode.CollectionCatalog`): its schema
was parsed once, by storage's own schema parser, when the client decoded the answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from vectorload.wire.querynode import CollectionCatalog
from vectorload_operator.clients import ClientFor, QuerynodeError
from vectorload_operator.distribution import NodeView

log = logging.getLogger(__name__)

CatalogKey = tuple[str, str]  # (namespace of the querynode pool, collection)


@dataclass(frozen=True)
class CatalogEntry:
    """`found` False: the storage has no such collection (404 CollectionNotFound)."""

    found: bool
    catalog: CollectionCatalog | None
    fetched_at: float


class CatalogCache:
    def __init__(
        self, clients: ClientFor, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clients = clients
        self.interval = interval
        self._clock = clock
        self._entries: dict[CatalogKey, CatalogEntry] = {}
        self.version = 0

    def get(self, key: CatalogKey) -> CatalogEntry | None:
        return self._entries.get(key)

    def invalidate(self, key: CatalogKey) -> None:
        if self._entries.pop(key, None) is not None:
            self.version += 1

    async def refresh(self, keys: Iterable[CatalogKey], views: Mapping[str, NodeView]) -> None:
        """Fetch every catalog that is missing or older than the interval, from a ready node
        of the key's namespace; drop entries no longer asked for."""
        wanted = set(keys)
        for stale in set(self._entries) - wanted:
            del self._entries[stale]
            self.version += 1
        now = self._clock()
        due = [
            k for k in wanted if (e := self._entries.get(k)) is None or now - e.fetched_at >= self.interval
        ]
        await asyncio.gather(*(self._fetch(k, views) for k in due))

    async def _fetch(self, key: CatalogKey, views: Mapping[str, NodeView]) -> None:
        namespace, collection = key
        urls = [
            v.pod.url
            for v in sorted(views.values(), key=lambda v: v.pod.name)
            if v.state.ready and v.pod.url and v.pod.namespace == namespace
        ]
        for url in urls:
            started = self._clock()
            catalog: CollectionCatalog | None
            try:
                catalog = await self._clients(url).catalog(collection)
            except QuerynodeError as exc:
                if exc.status != 404:  # 404 CollectionNotFound: the storage has no such collection
                    log.debug("catalog %s from %s: %s", collection, url, exc.message)
                    continue
                catalog = None
            except OSError as exc:
                log.debug("catalog %s from %s: %s", collection, url, exc)
                continue
            old = self._entries.get(key)
            if old is not None and old.catalog == catalog:
                self._entries[key] = CatalogEntry(old.found, old.catalog, started)  # same catalog object
            else:
                self._entries[key] = CatalogEntry(catalog is not None, catalog, started)
                self.version += 1
            return
