"""The Kubernetes side: a watch cache of CollectionLoads and querynode pods, and the writes.

Why the `kubernetes` client's watch on threads and not `kubernetes_asyncio`: the product already
depends on `kubernetes` (126 MB installed, for the operator's and the CLI's needs), and a second,
asyncio flavour of the same generated client would double that for two watch streams per
namespace. The proxy's hot path never waits on the API server: each watch runs on a daemon thread
(list, then watch from the list's resourceVersion, relist on 410 Gone, on any error with backoff,
and every `resync` seconds), keeps typed views (`state.LoadView`, `state.PodView`) in memory, and
tells the event loop that something changed; the asyncio side only reads the views and awaits
changes (`KubeCache.wait_until`). Writes (create, merge-patch, delete of a CollectionLoad) are
rare and run on the default executor.

The cache is the proxy's only state: answers are computed from it (`state.py`), and after a
restart the first list rebuilds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from .errors import MilvusError, echo, parameter_invalid, service_unavailable
from .state import LoadView, PodView, load_view, pod_view, winner

log = logging.getLogger(__name__)

GROUP = "vectorload.io"
VERSION = "v1alpha1"
PLURAL = "collectionloads"
KIND = "CollectionLoad"

WATCH_TIMEOUT = 60  # seconds the API server keeps one watch request open
DEFAULT_RESYNC = 300.0


def api_client() -> Any:
    """An ApiClient from $KUBECONFIG (or ~/.kube/config), else the in-cluster ServiceAccount."""
    configuration = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    except Exception:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


@dataclass
class _Namespace:
    loads: dict[str, LoadView]  # by object name
    winners: dict[str, LoadView]  # by collection
    pods: dict[str, PodView]
    loads_synced: bool = False
    pods_synced: bool = False


class KubeCache:
    """CollectionLoads and querynode pods of the served namespaces, kept current by watches."""

    def __init__(
        self,
        namespaces: Iterable[str],
        querynode_selector: str,
        resync: float = DEFAULT_RESYNC,
        api: Any | None = None,
    ) -> None:
        self.namespaces = tuple(dict.fromkeys(namespaces))
        self.selector = querynode_selector
        self.resync = resync
        self._api = api
        self._lock = threading.Lock()
        self._data = {ns: _Namespace({}, {}, {}) for ns in self.namespaces}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None  # replaced by a fresh one on every change
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.events = 0
        self.relists = 0
        self.errors = 0

    # -------------------------------------------------------------------------- lifecycle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        api = self._api if self._api is not None else api_client()
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        for ns in self.namespaces:
            list_loads = functools.partial(custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL)
            list_pods = functools.partial(core.list_namespaced_pod, ns, label_selector=self.selector)
            for kind, fn in (("loads", list_loads), ("pods", list_pods)):
                thread = threading.Thread(
                    target=self._run, args=(kind, ns, fn, api), name=f"watch-{kind}-{ns}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def synced(self) -> bool:
        with self._lock:
            return all(d.loads_synced and d.pods_synced for d in self._data.values())

    # ----------------------------------------------------------------------------- watches

    def _run(self, kind: str, namespace: str, list_fn: Callable[..., Any], api: Any) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._list_and_watch(kind, namespace, list_fn, api)
                backoff = 1.0
            except ApiException as exc:
                self.errors += 1
                if exc.status != 410:
                    log.warning("watch of %s in %s: API error %s %s", kind, namespace, exc.status, exc.reason)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
            except Exception as exc:  # connection errors, API server restarts
                self.errors += 1
                log.warning("watch of %s in %s failed: %s: %s", kind, namespace, type(exc).__name__, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _to_dict(self, obj: Any, api: Any) -> dict[str, Any]:
        if isinstance(obj, dict):
            return obj
        return dict(api.sanitize_for_serialization(obj))

    def _list_and_watch(self, kind: str, namespace: str, list_fn: Callable[..., Any], api: Any) -> None:
        listed = list_fn(_request_timeout=30)
        if isinstance(listed, dict):
            items = list(listed.get("items") or [])
            version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        else:
            items = [self._to_dict(i, api) for i in listed.items or []]
            version = str(listed.metadata.resource_version or "")
        self._replace(kind, namespace, items)
        self.relists += 1
        listed_at = time.monotonic()
        while not self._stop.is_set():
            w = watch.Watch()  # type: ignore[no-untyped-call]
            for event in w.stream(  # type: ignore[no-untyped-call]
                list_fn,
                resource_version=version,
                timeout_seconds=WATCH_TIMEOUT,
                allow_watch_bookmarks=True,
                _request_timeout=WATCH_TIMEOUT + 15,
            ):
                kind_of_event = event.get("type")
                raw = event.get("raw_object") or {}
                if kind_of_event == "ERROR":
                    code = raw.get("code") if isinstance(raw, dict) else None
                    w.stop()  # type: ignore[no-untyped-call]
                    if code == 410:
                        return  # resourceVersion too old: relist
                    raise RuntimeError(f"watch error event: {echo(raw, 300)}")
                obj = (
                    raw
                    if isinstance(raw, dict) and raw.get("metadata")
                    else self._to_dict(event["object"], api)
                )
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind_of_event == "BOOKMARK":
                    continue
                self._apply(kind, namespace, str(kind_of_event), obj)
                if self._stop.is_set():
                    w.stop()  # type: ignore[no-untyped-call]
                    return
            if time.monotonic() - listed_at >= self.resync:
                return  # resync: relist

    # ------------------------------------------------------------------------------- store

    def _replace(self, kind: str, namespace: str, items: list[dict[str, Any]]) -> None:
        with self._lock:
            data = self._data[namespace]
            if kind == "loads":
                data.loads = {}
                for item in items:
                    view = load_view(
                        {**item, "metadata": {**(item.get("metadata") or {}), "namespace": namespace}}
                    )
                    data.loads[view.name] = view
                data.winners = self._winners(data.loads.values())
                data.loads_synced = True
            else:
                data.pods = {v.name: v for v in (pod_view(item) for item in items)}
                data.pods_synced = True
        self._notify()

    def _apply(self, kind: str, namespace: str, event: str, obj: dict[str, Any]) -> None:
        self.events += 1
        with self._lock:
            data = self._data[namespace]
            if kind == "loads":
                meta = {**(obj.get("metadata") or {}), "namespace": namespace}
                view = load_view({**obj, "metadata": meta})
                old = data.loads.get(view.name)
                if event == "DELETED":
                    data.loads.pop(view.name, None)
                else:
                    data.loads[view.name] = view
                affected = {view.collection} | ({old.collection} if old is not None else set())
                for collection in affected:
                    best = winner(v for v in data.loads.values() if v.collection == collection)
                    if best is None:
                        data.winners.pop(collection, None)
                    else:
                        data.winners[collection] = best
            else:
                pod = pod_view(obj)
                if event == "DELETED":
                    data.pods.pop(pod.name, None)
                else:
                    data.pods[pod.name] = pod
        self._notify()

    @staticmethod
    def _winners(views: Iterable[LoadView]) -> dict[str, LoadView]:
        by_collection: dict[str, list[LoadView]] = {}
        for view in views:
            by_collection.setdefault(view.collection, []).append(view)
        out: dict[str, LoadView] = {}
        for collection, group in by_collection.items():
            best = winner(group)
            if best is not None:
                out[collection] = best
        return out

    def _notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()

    # ------------------------------------------------------------------------------- reads

    def view(self, namespace: str, collection: str) -> LoadView | None:
        """The CollectionLoad answering for `collection` in `namespace` (the oldest)."""
        with self._lock:
            data = self._data.get(namespace)
            return None if data is None else data.winners.get(collection)

    def views(self, namespace: str) -> dict[str, LoadView]:
        with self._lock:
            data = self._data.get(namespace)
            return {} if data is None else dict(data.winners)

    def object(self, namespace: str, name: str) -> LoadView | None:
        with self._lock:
            data = self._data.get(namespace)
            return None if data is None else data.loads.get(name)

    def objects(self, namespace: str) -> list[LoadView]:
        """Every CollectionLoad of the namespace (losers of a conflict too)."""
        with self._lock:
            data = self._data.get(namespace)
            return [] if data is None else list(data.loads.values())

    def pod(self, namespace: str, name: str) -> PodView | None:
        with self._lock:
            data = self._data.get(namespace)
            return None if data is None else data.pods.get(name)

    def pods(self, namespace: str) -> dict[str, PodView]:
        with self._lock:
            data = self._data.get(namespace)
            return {} if data is None else dict(data.pods)

    async def wait_until(self, check: Callable[[], bool], within: float) -> bool:
        """Wait until `check()` holds (re-evaluated on every change of the cache); False when it
        still does not after `within` seconds."""
        deadline = asyncio.get_running_loop().time() + within
        while not check():
            event = self._event
            remaining = deadline - asyncio.get_running_loop().time()
            if event is None or remaining <= 0:
                return check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(remaining, 1.0))
        return True


class KubeWriter:
    """Create, merge-patch and delete CollectionLoads (on the default executor)."""

    def __init__(self, api: Any | None = None) -> None:
        self._api = api
        self._custom: Any = None

    def _client(self) -> Any:
        if self._custom is None:
            self._custom = client.CustomObjectsApi(self._api if self._api is not None else api_client())
        return self._custom

    @staticmethod
    def _error(exc: ApiException, what: str) -> MilvusError:
        reason = echo(str(exc.reason or ""), 200)
        body = exc.body if isinstance(exc.body, str) else ""
        detail = _api_message(body) or reason
        if exc.status == 422:
            return parameter_invalid(f"{what} refused by the API server: {detail}")
        if exc.status in (401, 403):
            return service_unavailable(f"the proxy may not {what}: {detail}")
        return service_unavailable(f"{what} failed: {exc.status} {detail}")

    async def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create; the API's 409 AlreadyExists is raised as `AlreadyExists`."""

        def run() -> dict[str, Any]:
            return dict(
                self._client().create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
            )

        try:
            return await asyncio.to_thread(run)
        except ApiException as exc:
            if exc.status == 409:
                raise AlreadyExists(str(body["metadata"]["name"])) from exc
            raise self._error(exc, f"create CollectionLoad {namespace}/{body['metadata']['name']}") from exc

    async def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch; None when the object is gone."""

        def run() -> dict[str, Any]:
            return dict(
                self._client().patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, patch,
                    _content_type="application/merge-patch+json",
                )
            )  # fmt: skip

        try:
            return await asyncio.to_thread(run)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._error(exc, f"update CollectionLoad {namespace}/{name}") from exc

    async def delete(self, namespace: str, name: str) -> bool:
        """Delete; False when it was already gone."""

        def run() -> None:
            self._client().delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

        try:
            await asyncio.to_thread(run)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise self._error(exc, f"delete CollectionLoad {namespace}/{name}") from exc
        return True


class AlreadyExists(Exception):
    pass


def _api_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    return echo(str(data.get("message") or ""), 500) if isinstance(data, dict) else ""
