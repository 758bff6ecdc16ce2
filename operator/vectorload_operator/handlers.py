"""kopf handlers: a thin adapter that feeds the registry and the pod index, and starts the loop.

`register(runtime)` attaches everything to kopf's default registry once per process. Every
handler is `async`: kopf runs it on its event loop (a sync handler would run in a worker thread
and change the registry while the reconcile loop iterates it), so the registry, the loop and the
writers share one thread and need no lock.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from vectorload_operator.pods import QuerynodePod, flatten_index, parse_pod
from vectorload_operator.runtime import Runtime
from vectorload_operator.settings import CRD_GROUP, CRD_PLURAL, CRD_VERSION, FINALIZER

log = logging.getLogger(__name__)

_registered: Runtime | None = None


def configure_settings(settings: kopf.OperatorSettings, runtime: Runtime) -> None:
    cfg = runtime.config
    settings.persistence.finalizer = FINALIZER
    # status is schema-validated (no `status.kopf`): keep kopf's bookkeeping in annotations
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.vectorload.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.vectorload.io", key="last-handled-configuration"
    )
    # stalled watches reconnect: the server ends a watch after server_timeout,
    # the client gives up after client_timeout
    settings.watching.server_timeout = cfg.watch_server_timeout
    settings.watching.client_timeout = cfg.watch_client_timeout
    settings.watching.connect_timeout = cfg.watch_connect_timeout
    settings.watching.reconnect_backoff = 0.5
    settings.networking.request_timeout = cfg.watch_client_timeout
    settings.posting.level = logging.WARNING
    # Namespace-scoped (the chart's `operator.watchNamespace`): RBAC grants no cluster-wide
    # namespace list/watch, and kopf would retry that forbidden listing for about a minute
    # before serving anything. Declare the restricted mode: the namespaces are exact names.
    if not cfg.all_namespaces:
        settings.scanning.disabled = True


def register(runtime: Runtime) -> None:
    """Register the handlers for `runtime` (idempotent per process)."""
    global _registered
    if _registered is not None:
        _registered = runtime
        return
    _registered = runtime
    selector = runtime.config.querynode_selector

    def _is_querynode(labels: Any, **_: Any) -> bool:
        return selector.matches(labels)

    @kopf.index("pods", when=_is_querynode, id="querynodes")
    async def querynodes(
        body: kopf.Body, namespace: str | None, name: str, **_: Any
    ) -> dict[tuple[str, str], QuerynodePod]:
        return {(namespace or "", name): parse_pod(body)}

    @kopf.on.startup(id="start-reconciler", backoff=2, retries=10)
    async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        index: kopf.Index[tuple[str, str], QuerynodePod] = kwargs["querynodes"]
        rt = _runtime()
        configure_settings(settings, rt)
        await rt.metrics.serve(rt.config.metrics_port, rt.config.bind_address)
        await rt.start(lambda: flatten_index(index))

    @kopf.on.cleanup(id="stop-reconciler")
    async def cleanup(**_: Any) -> None:
        await _runtime().stop()

    @kopf.on.resume(CRD_GROUP, CRD_VERSION, CRD_PLURAL, id="register-resume")
    @kopf.on.create(CRD_GROUP, CRD_VERSION, CRD_PLURAL, id="register-create")
    @kopf.on.update(CRD_GROUP, CRD_VERSION, CRD_PLURAL, id="register-update")
    async def track(body: kopf.Body, diff: kopf.Diff | None = None, **_: Any) -> None:
        rt = _runtime()
        entry = rt.registry.upsert(body)
        for op, path, old, new in diff or ():
            if path == ("spec", "partitions") and rt.publisher is not None:
                rt.publisher.partitions_changed(entry, old, new)
            log.debug("%s %s: %s", op, path, entry.key)

    @kopf.on.delete(CRD_GROUP, CRD_VERSION, CRD_PLURAL, id="release")
    async def release(body: kopf.Body, **_: Any) -> None:
        rt = _runtime()
        entry = rt.registry.mark_deleting(body)
        try:
            await asyncio.wait_for(entry.released.wait(), timeout=rt.config.delete_timeout)
        except TimeoutError:
            raise kopf.TemporaryError(f"still releasing collection {entry.collection}", delay=1) from None
        rt.released(entry)


def _runtime() -> Runtime:
    if _registered is None:
        raise RuntimeError("vectorload_operator.handlers.register() was not called")
    return _registered
