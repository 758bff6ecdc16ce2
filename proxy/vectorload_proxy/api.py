"""The one domain layer of the proxy: Milvus operations as typed async methods.

gRPC (`grpc_service.py`), REST v2 and REST v1 (`rest.py`) are thin translations onto these
methods, so every protocol gives the same answer and the same `MilvusError` for the same request.
State lives in Kubernetes: the load lifecycle writes CollectionLoads and waits for the operator
to act on them (the watch cache, `kube.py`); load state is read from their status (`state.py`);
the catalog from storage (`catalog.py`); searches go to the querynodes (`search.py`).

Waiting for the operator: a load call returns once the operator has written status for the
generation it asked for — then it knows whether the request can be met. If the status says it
cannot (not enough querynodes, not enough memory, a bad field list; `state.load_failure`), the
call fails with the condition's message and the CollectionLoad is put back as it was (deleted if
the call created it, its spec restored if it changed it), as Milvus refuses such a load and
keeps what was loaded; the call returns after the operator acted on the restored spec. A lasting
problem (Degraded=True for the same reason) fails at once; a waiting one — no querynode has
served a new collection's catalog yet — must hold for `failure_grace` seconds, since the operator
may clear it on its next pass. A release returns once the
CollectionLoad is gone, which its finalizer allows only after the querynodes dropped the memory.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vectorload import __version__
from vectorload.client import QuerynodeError
from vectorload.storage.api import DYNAMIC_FIELD
from vectorload.storage.load_fields import LoadFieldsError, select_fields
from vectorload.wire.hits import HitColumns
from vectorload.wire.querynode import Hit

from . import lifecycle, state
from .catalog import Catalog, CollectionInfo, stable_id
from .errors import (
    MilvusError,
    collection_not_found,
    collection_not_loaded,
    echo,
    index_not_found,
    parameter_invalid,
    partition_not_found,
    partition_not_loaded,
    resource_group_not_found,
    service_unavailable,
)
from .kube import KIND, AlreadyExists, KubeCache, KubeWriter
from .lifecycle import LoadSpec
from .metrics import ProxyMetrics
from .names import (
    COLLECTION_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    Databases,
    alternative_name,
    check_collection_name,
    check_partition_name,
    collection_load_name,
)
from .requests import Limits, QueryArgs, SearchArgs, check_partitions, query_args, search_args
from .routing import Plan, RoundRobin, Route, plan
from .search import Querynodes, on_replicas, query_replica, search_replica
from .state import LoadView, PodView

if TYPE_CHECKING:
    from .writes import WriteApi

log = logging.getLogger(__name__)

API_VERSION = "v2.6.0"  # the Milvus API level served (GetVersion); ServerInfo names vectorload's build
DEFAULT_RESOURCE_GROUP = "__default_resource_group"


@dataclass(frozen=True)
class Settings:
    limits: Limits = field(default_factory=Limits)
    observe_timeout: float = 60.0  # --observe-timeout: for the operator to act on a load
    release_timeout: float = 120.0  # --release-timeout: for a release to finish
    failure_grace: float = 2.0  # --failure-grace: for a waiting problem (state.failure_settled)
    query_default_limit: int = 16384
    rest_load_wait: float = 120.0  # --rest-load-wait: REST loads return once Loaded (0: at once)


@dataclass(frozen=True)
class CollectionRow:
    name: str
    id: int
    created_ns: int
    in_memory: int  # percent


@dataclass(frozen=True)
class PartitionRow:
    name: str
    id: int
    created_ns: int
    in_memory: int
    rows: int


@dataclass(frozen=True)
class Described:
    database: str
    info: CollectionInfo
    load_state: int


@dataclass(frozen=True)
class ReplicaRow:
    id: int
    collection_id: int
    partition_ids: tuple[int, ...]
    node_ids: tuple[int, ...]
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class IndexRow:
    field: str
    index_name: str
    index_id: int
    params: dict[str, str]
    rows: int


@dataclass(frozen=True)
class SearchOutcome:
    info: CollectionInfo
    args: SearchArgs
    columns: HitColumns  # the merged top-(k + offset), closest first per query

    @property
    def results(self) -> list[list[Hit]]:
        """Per query: the hits as `Hit`s, closest first."""
        return self.columns.hits()


@dataclass(frozen=True)
class QueryOutcome:
    info: CollectionInfo
    output_fields: tuple[str, ...]
    rows: list[dict[str, Any]]


class MilvusApi:
    def __init__(
        self,
        databases: Databases,
        kube: KubeCache,
        writer: KubeWriter,
        catalog: Catalog,
        nodes: Querynodes,
        metrics: ProxyMetrics,
        settings: Settings | None = None,
    ) -> None:
        self.databases = databases
        self.kube = kube
        self.writer = writer
        self.catalog = catalog
        self.nodes = nodes
        self.metrics = metrics
        self.settings = settings or Settings()
        self.round_robin = RoundRobin()
        self._identifiers = itertools.count(int(time.time() * 1000) << 8)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._serving_plans: dict[tuple[str, str], tuple[str, Plan]] = {}  # see _last_plan
        self.writes: WriteApi | None = None  # the write path (writes.py), set by the server

    # ------------------------------------------------------------------------ session

    def connect(self) -> int:
        """Connect: an identifier for the client (Milvus hands out one per connection)."""
        return next(self._identifiers)

    def version(self) -> str:
        return API_VERSION

    def server_info(self) -> dict[str, str]:
        return {"build_tags": f"vectorload-{__version__}", "deploy_mode": "CLUSTER", "git_commit": ""}

    def health(self) -> tuple[bool, list[str]]:
        if not self.kube.synced:
            return False, ["the proxy has not listed CollectionLoads and querynode pods yet"]
        return True, []

    def list_databases(self) -> list[str]:
        return self.databases.names()

    def describe_database(self, database: str) -> tuple[str, int]:
        namespace = self.databases.namespace(database)
        return self.databases.database(namespace), stable_id("db", namespace)

    # ------------------------------------------------------------------------ catalog

    async def _info(self, collection: str) -> CollectionInfo:
        return await self.catalog.get(check_collection_name(collection))

    def _view(self, namespace: str, collection: str) -> LoadView | None:
        return self.kube.view(namespace, collection)

    async def show_collections(
        self, database: str, names: Sequence[str] = (), in_memory_only: bool = False
    ) -> list[CollectionRow]:
        namespace = self.databases.namespace(database)
        stored = await self.catalog.names()
        wanted = list(names) if names else list(stored)
        rows = []
        for name in wanted:
            if name not in stored:
                raise collection_not_found(name)
            view = self._view(namespace, name)
            loaded = state.load_state(view) == state.LOADED
            if in_memory_only and view is None:
                continue
            info = await self.catalog.get(name)
            rows.append(
                CollectionRow(
                    name, info.collection_id, info.created_ns, 100 if loaded else state.loading_progress(view)
                )
            )
        return rows

    async def describe_collection(self, database: str, collection: str) -> Described:
        namespace = self.databases.namespace(database)
        info = await self._info(collection)
        return Described(
            self.databases.database(namespace), info, state.load_state(self._view(namespace, collection))
        )

    async def has_collection(self, database: str, collection: str) -> bool:
        self.databases.namespace(database)
        check_collection_name(collection)
        return collection in await self.catalog.names()

    async def show_partitions(
        self, database: str, collection: str, names: Sequence[str] = ()
    ) -> list[PartitionRow]:
        namespace = self.databases.namespace(database)
        info = await self._info(collection)
        view = self._view(namespace, collection)
        loaded = (
            set(state.loaded_partitions(view, info.partition_names))
            if view is not None and not view.deleting
            else set()
        )
        rows = []
        for name in names or info.partition_names:
            p = info.partition(name)
            if p is None:
                raise partition_not_found(name)
            pct = state.loading_progress(view, [name]) if name in loaded else 0
            rows.append(PartitionRow(name, stable_id(collection, name), p.created_ns, pct, p.rows))
        return rows

    async def has_partition(self, database: str, collection: str, partition: str) -> bool:
        self.databases.namespace(database)
        info = await self._info(collection)
        return info.partition(check_partition_name(partition)) is not None

    async def collection_rows(self, database: str, collection: str) -> int:
        self.databases.namespace(database)
        return (await self._info(collection)).rows

    async def partition_rows(self, database: str, collection: str, partition: str) -> int:
        self.databases.namespace(database)
        info = await self._info(collection)
        p = info.partition(check_partition_name(partition))
        if p is None:
            raise partition_not_found(partition)
        return p.rows

    async def describe_index(self, database: str, collection: str, field_name: str = "") -> list[IndexRow]:
        """One HNSW index per vector field (each segment holds it; the parameters come from the
        segment manifests)."""
        self.databases.namespace(database)
        info = await self._info(collection)
        if self.writes is not None and self.writes.is_managed(collection):
            return self._defined_indexes(info, field_name)
        out = []
        for f in info.schema.vector_fields:
            if field_name and field_name != f.name:
                continue
            built = info.index_params.get(f.name, {})
            params = {"index_type": "HNSW", "metric_type": (f.metric or "l2").upper()}
            if "M" in built:
                params["M"] = str(built["M"])
            if "ef_construction" in built:
                params["efConstruction"] = str(built["ef_construction"])
            out.append(IndexRow(f.name, f.name, stable_id(collection, "index", f.name), params, info.rows))
        if field_name and not out:
            raise index_not_found(field_name)
        return out

    def _defined_indexes(self, info: CollectionInfo, name: str) -> list[IndexRow]:
        """A collection made through the front door: its index definitions (properties.json)."""
        assert self.writes is not None
        out = []
        for d in self.writes.properties(info.name).indexes:
            if name and name not in (d.field, d.index_name):
                continue
            params = {
                "index_type": d.index_type,
                "metric_type": d.metric.upper(),
                "M": str(d.M),
                "efConstruction": str(d.ef_construction),
            }
            out.append(
                IndexRow(d.field, d.index_name, stable_id(info.name, "index", d.field), params, info.rows)
            )
        if not out:
            raise MilvusError(700, f"index not found[collection={info.name}]")
        return out

    # ---------------------------------------------------------------------- lifecycle

    def _lock(self, namespace: str, collection: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, collection), asyncio.Lock())

    @staticmethod
    def _check_resource_groups(groups: Sequence[str]) -> None:
        for group in groups:
            if group and group != DEFAULT_RESOURCE_GROUP:
                raise resource_group_not_found(group)

    def _check_fields(self, info: CollectionInfo, spec: LoadSpec) -> None:
        try:
            select_fields(info.schema, spec.load_fields or None, spec.skip_dynamic)
        except LoadFieldsError as exc:  # it names every unknown field: cut, as every echo of input
            raise parameter_invalid(echo(exc.message, 500)) from None

    def _check_partitions(self, info: CollectionInfo, partitions: Sequence[str]) -> None:
        for name in partitions:
            if info.partition(name) is None:
                raise partition_not_found(name, f'collection "{info.name}"')

    async def load_collection(
        self,
        database: str,
        collection: str,
        replica_number: int = 0,
        load_fields: Sequence[str] = (),
        skip_dynamic: bool = False,
        resource_groups: Sequence[str] = (),
    ) -> None:
        namespace = self.databases.namespace(database)
        info = await self._info(collection)
        self._check_resource_groups(resource_groups)
        if self.writes is not None:
            self.writes.check_loadable(collection)
        async with self._lock(namespace, collection):
            view = self._view(namespace, collection)
            current = lifecycle.spec_of(view) if view is not None and not view.deleting else None
            new = lifecycle.load_collection(current, collection, replica_number, load_fields, skip_dynamic)
            self._check_fields(info, new)
            await self._apply(namespace, info, view, new)

    async def load_partitions(
        self,
        database: str,
        collection: str,
        partitions: Sequence[str],
        replica_number: int = 0,
        load_fields: Sequence[str] = (),
        skip_dynamic: bool = False,
        resource_groups: Sequence[str] = (),
    ) -> None:
        namespace = self.databases.namespace(database)
        info = await self._info(collection)
        if self.writes is not None:
            self.writes.check_loadable(collection)
        names = check_partitions(partitions, self.settings.limits)
        if not names:
            raise parameter_invalid("partition names should not be empty")
        self._check_partitions(info, names)
        self._check_resource_groups(resource_groups)
        async with self._lock(namespace, collection):
            view = self._view(namespace, collection)
            current = lifecycle.spec_of(view) if view is not None and not view.deleting else None
            new = lifecycle.load_partitions(
                current, collection, names, replica_number, load_fields, skip_dynamic
            )
            self._check_fields(info, new)
            await self._apply(namespace, info, view, new)

    async def release_collection(self, database: str, collection: str) -> None:
        namespace = self.databases.namespace(database)
        await self._info(collection)
        async with self._lock(namespace, collection):
            await self._release_all(namespace, collection)

    async def release_partitions(self, database: str, collection: str, partitions: Sequence[str]) -> None:
        namespace = self.databases.namespace(database)
        info = await self._info(collection)
        names = check_partitions(partitions, self.settings.limits)
        if not names:
            raise parameter_invalid("partition names should not be empty")
        self._check_partitions(info, names)
        async with self._lock(namespace, collection):
            view = self._view(namespace, collection)
            if view is None or view.deleting:
                return  # nothing loaded: releasing is a success (Milvus)
            new = lifecycle.release_partitions(lifecycle.spec_of(view), names, info.partition_names)
            if new is None:
                await self._release_all(namespace, collection)
                return
            await self._apply(namespace, info, view, new, rollback=False)

    async def _release_all(self, namespace: str, collection: str) -> None:
        names = [v.name for v in self._all_views(namespace, collection)]
        for name in names:
            await self.writer.delete(namespace, name)
        gone = await self.kube.wait_until(
            lambda: not any(self.kube.object(namespace, n) for n in names), self.settings.release_timeout
        )
        if not gone:
            raise service_unavailable(
                f"collection {collection} is still being released after {self.settings.release_timeout:g} s "
                f"(CollectionLoad {namespace}/{names[0]} still exists; see its status)"
            )

    def _all_views(self, namespace: str, collection: str) -> list[LoadView]:
        """Every CollectionLoad of the collection (a release releases the collection: all of them)."""
        view = self._view(namespace, collection)
        if view is None:
            return []
        return [v for v in self.kube.objects(namespace) if v.collection == collection]

    async def _apply(
        self,
        namespace: str,
        info: CollectionInfo,
        view: LoadView | None,
        new: LoadSpec,
        rollback: bool = True,
    ) -> None:
        """Create or patch the CollectionLoad, wait for the operator, fail (and roll back) when
        the status says the request cannot be met."""
        collection = info.name
        created = False
        if view is None or view.deleting:
            if view is not None and view.deleting:
                await self.kube.wait_until(
                    lambda: self._view(namespace, collection) is None, self.settings.release_timeout
                )
            name, uid, generation = await self._create(namespace, collection, new)
            created = True
            old: LoadSpec | None = None
        else:
            name, uid, old = view.name, view.uid, lifecycle.spec_of(view)
            patch = lifecycle.spec_patch(old, new)
            if patch:
                updated = await self.writer.patch(namespace, name, {"spec": patch})
                if updated is None:
                    raise service_unavailable(f"CollectionLoad {namespace}/{name} was deleted meanwhile")
                generation = int(updated["metadata"]["generation"])
            else:
                generation = view.generation
        failure = await self._wait_observed(namespace, name, uid, generation)
        if failure is None:
            return
        if rollback:
            await self._roll_back(namespace, name, uid, created, new, old)
        raise failure

    async def _roll_back(
        self, namespace: str, name: str, uid: str, created: bool, new: LoadSpec, old: LoadSpec | None
    ) -> None:
        """Put the CollectionLoad back as it was before a failed load call, and wait until the
        operator acted on that (so a GetLoadState right after the failed call tells the truth)."""
        if created:
            await self.writer.delete(namespace, name)
            await self.kube.wait_until(
                lambda: self.kube.object(namespace, name) is None, self.settings.release_timeout
            )
            return
        undo = lifecycle.spec_patch(new, old) if old is not None else {}
        if not undo:
            return
        restored = await self.writer.patch(namespace, name, {"spec": undo})
        if restored is not None:
            generation = int(restored["metadata"]["generation"])

            def observed() -> bool:
                obj = self.kube.object(namespace, name)
                return obj is None or obj.uid != uid or (obj.observed_generation or 0) >= generation

            await self.kube.wait_until(observed, self.settings.observe_timeout)

    async def _create(self, namespace: str, collection: str, spec: LoadSpec) -> tuple[str, str, int]:
        for name in (collection_load_name(collection), alternative_name(collection)):
            body = {
                "apiVersion": "vectorload.io/v1alpha1",
                "kind": KIND,
                "metadata": {
                    "name": name,
                    "annotations": {COLLECTION_ANNOTATION: collection},
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                },
                "spec": spec.to_spec(),
            }
            try:
                created = await self.writer.create(namespace, body)
            except AlreadyExists:
                continue  # a CollectionLoad of another collection (made with kubectl) has the name
            meta = created["metadata"]
            return name, str(meta.get("uid") or ""), int(meta.get("generation") or 1)
        raise service_unavailable(f"no free CollectionLoad name for collection {collection} in {namespace}")

    async def _wait_observed(
        self, namespace: str, name: str, uid: str, generation: int
    ) -> MilvusError | None:
        """Wait until the operator wrote status for `generation` of the object `uid` (the one
        this call wrote: the cache may not have seen it yet, or still hold a deleted namesake)."""
        seen = False

        def observed() -> bool:
            nonlocal seen
            obj = self.kube.object(namespace, name)
            if obj is None or obj.uid != uid:
                return seen  # gone again after it was seen: deleted meanwhile
            seen = True
            return (obj.observed_generation or 0) >= generation

        if not await self.kube.wait_until(observed, self.settings.observe_timeout):
            raise service_unavailable(
                f"the operator has not acted on CollectionLoad {namespace}/{name} (generation {generation}) "
                f"within {self.settings.observe_timeout:g} s: is it running?"
            )
        obj = self.kube.object(namespace, name)
        if obj is None or obj.uid != uid:
            raise service_unavailable(f"CollectionLoad {namespace}/{name} was deleted meanwhile")
        failure = state.load_failure(obj)
        if failure is None or state.failure_settled(obj):
            return failure

        def resolved() -> bool:
            o = self.kube.object(namespace, name)
            return o is None or o.uid != uid or state.load_failure(o) is None

        if await self.kube.wait_until(resolved, self.settings.failure_grace):
            return None
        obj = self.kube.object(namespace, name)
        return state.load_failure(obj) if obj is not None else failure

    async def load_state(
        self, database: str, collection: str, partitions: Sequence[str] = ()
    ) -> tuple[int, int]:
        """(common.LoadState, progress percent); a missing collection or partition is NotExist."""
        namespace = self.databases.namespace(database)
        try:
            info = await self._info(collection)
        except MilvusError as exc:
            if exc.code == collection_not_found("").code:
                return state.NOT_EXIST, 0
            raise
        names = check_partitions(partitions, self.settings.limits)
        if any(info.partition(p) is None for p in names):
            return state.NOT_EXIST, 0
        view = self._view(namespace, collection)
        load = state.load_state(view, names, info.partition_names)
        progress = (
            100
            if load == state.LOADED
            else state.loading_progress(view, names)
            if load == state.LOADING
            else 0
        )
        return load, progress

    async def wait_loaded(
        self, database: str, collection: str, partitions: Sequence[str], within: float
    ) -> None:
        """Wait (at most `within` seconds) until the load is complete; raise the load's failure.

        REST clients have no wait loop of their own (pymilvus polls GetLoadingProgress), so the
        REST load endpoints return once the collection is Loaded, as the seeds' curl sequence
        (load, then get_load_state: Loaded) expects; still loading after `within`, they return
        success and get_load_state shows the progress."""
        namespace = self.databases.namespace(database)
        info = await self._info(collection)
        names = check_partitions(partitions, self.settings.limits)

        def done() -> bool:
            view = self._view(namespace, collection)
            if view is None or view.deleting:
                return True
            return state.load_failure(view) is not None or (
                state.load_state(view, names, info.partition_names) == state.LOADED
            )

        await self.kube.wait_until(done, within)
        view = self._view(namespace, collection)
        failure = state.load_failure(view) if view is not None else None
        if failure is not None:
            raise failure

    async def loading_progress(self, database: str, collection: str, partitions: Sequence[str] = ()) -> int:
        """GetLoadingProgress; fails with the condition's message when the load cannot succeed,
        and with 101/201 when nothing (or not the partition) is being loaded."""
        namespace = self.databases.namespace(database)
        info = await self._info(collection)
        names = check_partitions(partitions, self.settings.limits)
        self._check_partitions(info, names)
        view = self._view(namespace, collection)
        if view is None or view.deleting:
            raise collection_not_loaded(collection)
        asked = set(state.loaded_partitions(view, info.partition_names))
        for p in names:
            if p not in asked:
                raise partition_not_loaded(p)
        failure = state.load_failure(view)
        if failure is not None:
            raise failure
        if state.load_state(view, names, info.partition_names) == state.LOADED:
            return 100
        return state.loading_progress(view, names)

    async def replicas(
        self, database: str, collection: str | None, collection_id: int = 0
    ) -> list[ReplicaRow]:
        namespace = self.databases.namespace(database)
        if not collection:
            collection = await self._name_of(collection_id)
        info = await self._info(collection)
        view = self._view(namespace, collection)
        if view is None or view.deleting:
            raise collection_not_loaded(collection)
        partitions = state.loaded_partitions(view, info.partition_names)
        return [
            ReplicaRow(
                id=r.id,
                collection_id=info.collection_id,
                partition_ids=tuple(stable_id(collection, p) for p in partitions),
                node_ids=tuple(stable_id("node", namespace, n) for n in r.nodes),
                nodes=r.nodes,
            )
            for r in view.replica_views
        ]

    async def _name_of(self, collection_id: int) -> str:
        for name in await self.catalog.names():
            if stable_id(name) == collection_id:
                return name
        raise collection_not_found(str(collection_id))

    # --------------------------------------------------------------------------- data

    def _serving(
        self, namespace: str, collection: str, partitions: Sequence[str], info: CollectionInfo
    ) -> tuple[LoadView, list[Route], tuple[str, ...] | None]:
        view = self._view(namespace, collection)
        if view is None or view.deleting:
            raise collection_not_loaded(collection)
        asked = state.loaded_partitions(view, info.partition_names)
        for p in partitions:
            if info.partition(p) is None:
                raise partition_not_found(p)
            if p not in asked:
                raise partition_not_loaded(p)
        pods = self.kube.pods(namespace)
        key = (namespace, collection)
        try:
            chosen = plan(view, pods, asked, partitions)
        except MilvusError as why:
            chosen = self._last_plan(key, view, pods, partitions, why)
        else:
            if any(r.complete for r in view.replica_views):
                self._serving_plans[key] = (view.uid, chosen)
        ordered = self.round_robin.order(key, chosen.routes)
        return view, ordered, chosen.partitions

    def _last_plan(
        self,
        key: tuple[str, str],
        view: LoadView,
        pods: dict[str, PodView],
        partitions: Sequence[str],
        why: MilvusError,
    ) -> Plan:
        """The replicas that last served a complete copy of this CollectionLoad, while a spec
        change reloads it (a field change reloads every copy in place: the status counts none of
        them as loaded for the new field set until swapped, yet the querynodes keep serving the old
        copies). Used only while the same object exists and every node of a route is still the
        same serving pod; else the search fails for the reason `routing.plan` gave (`why`)."""
        remembered = self._serving_plans.get(key)
        routes_: tuple[Route, ...] = ()
        if remembered is not None and remembered[0] == view.uid:
            routes_ = tuple(
                r
                for r in remembered[1].routes
                if all(n in pods and pods[n].url == u for n, u in zip(r.nodes, r.urls, strict=True))
            )
        if not routes_:
            raise why
        return Plan(routes_, tuple(partitions) if partitions else (view.partitions or None))

    @staticmethod
    def _loaded_fields(view: LoadView, info: CollectionInfo) -> list[str]:
        if view.loaded_fields:
            return list(view.loaded_fields)
        selection = select_fields(info.schema, view.load_fields or None, view.skip_dynamic)
        return [*selection.fields, *([DYNAMIC_FIELD] if selection.dynamic else [])]

    def _retried(self, route: Route, exc: QuerynodeError) -> None:
        self.metrics.replica_retries.inc()

    async def search(
        self,
        database: str,
        collection: str,
        partitions: Sequence[str],
        dsl: str,
        placeholder_group: bytes,
        output_fields: Sequence[str],
        search_params: dict[str, str],
        nq: int = 0,
    ) -> SearchOutcome:
        namespace = self.databases.namespace(database)
        info = await self._info(collection)
        names = check_partitions(partitions, self.settings.limits)
        view, ordered, scope = self._serving(namespace, collection, names, info)
        args = search_args(
            collection, names, dsl, placeholder_group, output_fields, search_params, nq,
            info.schema, self._loaded_fields(view, info), self.settings.limits,
        )  # fmt: skip
        if _empty(view):  # a loaded collection with no segment yet (created, nothing sealed)
            return SearchOutcome(info, args, HitColumns.from_hits([[] for _ in range(args.nq)]))
        try:
            columns = await on_replicas(
                ordered,
                collection,
                lambda route: search_replica(self.nodes, route, args, scope),
                self._retried,
            )
        except MilvusError as exc:
            if not _only_new_data(view, exc):
                raise
            columns = HitColumns.from_hits([[] for _ in range(args.nq)])
        return SearchOutcome(info, args, columns)

    async def query(
        self,
        database: str,
        collection: str,
        expr: str,
        output_fields: Sequence[str],
        partitions: Sequence[str],
        query_params: dict[str, str],
    ) -> QueryOutcome:
        namespace = self.databases.namespace(database)
        info = await self._info(collection)
        names = check_partitions(partitions, self.settings.limits)
        view, ordered, scope = self._serving(namespace, collection, names, info)
        args = query_args(
            collection, expr, output_fields, names, query_params, info.schema,
            self._loaded_fields(view, info), self.settings.limits,
        )  # fmt: skip
        if not args.filter.strip():
            pk = info.schema.primary_key
            args = QueryArgs(
                args.collection,
                f"{pk.name} >= {-(2**63)}" if pk.type == "int64" else f'{pk.name} >= ""',
                args.output_fields,
                args.partitions,
                args.limit,
                args.offset,
            )
        wanted = (args.limit if args.limit is not None else self.settings.query_default_limit) + args.offset
        wanted = min(wanted, self.settings.limits.max_query_limit)
        if _empty(view):
            return QueryOutcome(info, args.output_fields, [])
        try:
            rows = await on_replicas(
                ordered,
                collection,
                lambda route: query_replica(self.nodes, route, args, scope, wanted),
                self._retried,
            )
        except MilvusError as exc:
            if not _only_new_data(view, exc):
                raise
            rows = []
        rows = _one_per_key(rows, info.schema.primary_key.name)
        end = None if args.limit is None else args.offset + args.limit
        return QueryOutcome(info, args.output_fields, rows[args.offset : end])


def _empty(view: LoadView | None) -> bool:
    """Loaded, and no replica has a segment to hold: every search and query answers nothing."""
    return (
        view is not None
        and state.load_state(view) == state.LOADED
        and bool(view.replica_views)
        and all(r.total_segments == 0 for r in view.replica_views)
    )


def _one_per_key(rows: list[dict[str, Any]], pk: str) -> list[dict[str, Any]]:
    """Each primary key once: while a compacted segment is swapped in, its rows and its sources'
    may be held by different querynodes of a replica for a moment (each node hides duplicates
    among the segments it holds; the search merge keeps each key once too)."""
    seen: set[Any] = set()
    out = []
    for row in rows:
        key = row.get(pk)
        if key in seen:
            continue
        seen.add(key)
        out.append(row)
    return out


def _only_new_data(view: LoadView | None, exc: MilvusError) -> bool:
    """No querynode serves a segment of a collection the operator reports Loaded with new data
    loading (status.pendingSegments): every segment is new data (the write path's first segments)
    — nothing to answer yet, as a Loaded collection without segments answers nothing. A node that
    lost its copy (no pending new data) still fails the call."""
    return (
        exc.code == collection_not_loaded("").code
        and view is not None
        and state.load_state(view) == state.LOADED
        and view.pending_segments > 0
    )
