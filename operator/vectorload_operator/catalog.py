"""Collection catalogs (`GET /v1/catalog/{collection}`), cached per (namespace, collection) and
polled every `interval` seconds so segments written after a load are planned at once.

Why a short interval is cheap: a poll first asks one querynode of the pool for the current ETags
of every cached catalog at once (`POST /v1/catalog/tokens`: one small file and a few `stat`s per
collection, docs/querynode.md), and fetches only the catalogs whose tag moved — conditionally,
with `If-None-Match`, so a race still costs just a `304`. No listing, no manifest parsing while
nothing changes. So the default is 0.2 s (it was 2 s before the catalog had validators), and
`run` polls on its own between the reconcile passes, waking the loop when a catalog changed: a
segment published by the write path is planned within a fraction of a second.

`CatalogCache.version` moves when a catalog appears, disappears or differs from the one it
replaces; a refresh that brings back the same catalog (a 304, or an equal answer) leaves it alone.

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
from vectorload_operator.registry import Entry

log = logging.getLogger(__name__)

CatalogKey = tuple[str, str]  # (namespace of the querynode pool, collection)
DEFAULT_INTERVAL = 0.2


def wanted_catalogs(entries: Iterable[Entry]) -> set[CatalogKey]:
    """The catalogs the live CollectionLoads need."""
    return {(e.namespace, e.collection) for e in entries if not e.deleting and e.collection}


@dataclass(frozen=True)
class CatalogEntry:
    """`found` False: the storage has no such collection (404 CollectionNotFound). `etag`: the
    validator of `catalog` (None: the node sent none)."""

    found: bool
    catalog: CollectionCatalog | None
    fetched_at: float
    etag: str | None = None


class CatalogCache:
    def __init__(
        self, clients: ClientFor, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clients = clients
        self.interval = interval
        self._clock = clock
        self._entries: dict[CatalogKey, CatalogEntry] = {}
        self._inflight: set[CatalogKey] = set()
        self.version = 0
        self.fetches = 0  # catalog requests answered (200, 304 or 404)
        self.unchanged = 0  # refreshes that found the catalog unchanged (a 304 or an equal token)
        self.token_polls = 0  # token requests answered
        self._no_tokens: set[str] = set()  # querynode URLs without `POST /v1/catalog/tokens`

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
            k
            for k in wanted
            if k not in self._inflight
            and ((e := self._entries.get(k)) is None or now - e.fetched_at >= self.interval)
        ]
        self._inflight.update(due)
        try:
            changed = await self._skip_unchanged(due, views)
        finally:
            self._inflight.difference_update(due)
        await asyncio.gather(*(self._fetch(k, views) for k in changed))

    async def _skip_unchanged(self, due: list[CatalogKey], views: Mapping[str, NodeView]) -> list[CatalogKey]:
        """One `POST /v1/catalog/tokens` per namespace for the due catalogs already cached: those
        whose ETag did not move are fresh again without a request of their own (200 collections
        cost one request per interval, not 200). Returns the keys still to fetch."""
        by_ns: dict[str, list[CatalogKey]] = {}
        for k in due:
            e = self._entries.get(k)
            if e is not None and e.found and e.etag:
                by_ns.setdefault(k[0], []).append(k)
        fresh: set[CatalogKey] = set()

        async def ask(namespace: str, keys: list[CatalogKey]) -> None:
            urls = [u for u in _ready_urls(views, namespace) if u not in self._no_tokens]
            for url in urls:
                started = self._clock()
                try:
                    tokens = await self._clients(url).catalog_tokens([c for _, c in keys])
                except QuerynodeError as exc:
                    if exc.status in (404, 405):  # a querynode of an earlier version
                        self._no_tokens.add(url)
                    continue
                except OSError:
                    continue
                self.token_polls += 1
                for k in keys:
                    e = self._entries.get(k)
                    if e is not None and tokens.get(k[1]) == e.etag:
                        self._entries[k] = CatalogEntry(e.found, e.catalog, started, e.etag)
                        self.unchanged += 1
                        fresh.add(k)
                return

        await asyncio.gather(*(ask(ns, keys) for ns, keys in by_ns.items()))
        return [k for k in due if k not in fresh]

    async def run(
        self,
        keys: Callable[[], Iterable[CatalogKey]],
        views: Callable[[], Mapping[str, NodeView]],
        on_change: Callable[[], None],
    ) -> None:
        """Poll every `interval` between the reconcile passes; `on_change()` when a catalog
        changed (the loop then plans at once)."""
        while True:
            await asyncio.sleep(self.interval)
            before = self.version
            try:
                await self.refresh(keys(), views())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("catalog poll failed")
            if self.version != before:
                on_change()

    async def _fetch(self, key: CatalogKey, views: Mapping[str, NodeView]) -> None:
        if key in self._inflight:
            return
        self._inflight.add(key)
        try:
            await self._fetch_from_any(key, views)
        finally:
            self._inflight.discard(key)

    async def _fetch_from_any(self, key: CatalogKey, views: Mapping[str, NodeView]) -> None:
        namespace, collection = key
        for url in _ready_urls(views, namespace):
            started = self._clock()
            old = self._entries.get(key)
            catalog: CollectionCatalog | None
            # a validator is node-independent (it is derived from storage), so any node may answer
            etag = old.etag if old is not None and old.found else None
            try:
                catalog, etag = await self._clients(url).catalog_if_changed(collection, etag)
                if catalog is None and old is not None:  # 304 Not Modified
                    self.fetches += 1
                    self.unchanged += 1
                    self._entries[key] = CatalogEntry(old.found, old.catalog, started, old.etag)
                    return
                if catalog is None:  # a 304 without a catalog to keep: ask again in full
                    catalog, etag = await self._clients(url).catalog_if_changed(collection, None)
            except QuerynodeError as exc:
                if exc.status != 404:  # 404 CollectionNotFound: the storage has no such collection
                    log.debug("catalog %s from %s: %s", collection, url, exc.message)
                    continue
                catalog, etag = None, None
            except OSError as exc:
                log.debug("catalog %s from %s: %s", collection, url, exc)
                continue
            self.fetches += 1
            if old is not None and old.catalog == catalog:
                self._entries[key] = CatalogEntry(old.found, old.catalog, started, etag)  # same object
            else:
                self._entries[key] = CatalogEntry(catalog is not None, catalog, started, etag)
                self.version += 1
            return


def _ready_urls(views: Mapping[str, NodeView], namespace: str) -> list[str]:
    return [
        v.pod.url
        for v in sorted(views.values(), key=lambda v: v.pod.name)
        if v.state.ready and v.pod.url and v.pod.namespace == namespace
    ]
