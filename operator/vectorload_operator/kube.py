"""Kubernetes API calls the adapter makes itself (status patches, events, initial lists),
through the official client run in worker threads."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vectorload_operator.settings import CRD_GROUP, CRD_PLURAL, CRD_VERSION
from vectorload_operator.status import ObjectGone


def load_config() -> None:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        # $KUBECONFIG is read now, not when the kubernetes package was first imported
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]


class KubeApi:
    def __init__(self) -> None:
        self._api_client = client.ApiClient()
        self._custom = client.CustomObjectsApi(self._api_client)
        self._core = client.CoreV1Api(self._api_client)

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        def call() -> None:
            try:
                self._custom.patch_namespaced_custom_object_status(
                    CRD_GROUP,
                    CRD_VERSION,
                    namespace,
                    CRD_PLURAL,
                    name,
                    patch,
                    _content_type="application/merge-patch+json",
                    _request_timeout=10,
                )
            except ApiException as exc:
                if exc.status == 404:
                    raise ObjectGone(f"{namespace}/{name}") from exc
                raise

        await asyncio.to_thread(call)

    async def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        def call() -> None:
            self._core.create_namespaced_event(namespace, body, _request_timeout=10)  # type: ignore[arg-type]

        await asyncio.to_thread(call)

    async def list_collectionloads(self, namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
        def call() -> list[dict[str, Any]]:
            if not namespaces:
                res: Any = self._custom.list_cluster_custom_object(CRD_GROUP, CRD_VERSION, CRD_PLURAL)
                return list(res.get("items") or [])
            items: list[dict[str, Any]] = []
            for ns in namespaces:
                one: Any = self._custom.list_namespaced_custom_object(CRD_GROUP, CRD_VERSION, ns, CRD_PLURAL)
                items.extend(one.get("items") or [])
            return items

        return await asyncio.to_thread(call)

    async def list_pods(self, namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
        def call() -> list[dict[str, Any]]:
            responses: list[Any] = (
                [self._core.list_pod_for_all_namespaces(_preload_content=False)]
                if not namespaces
                else [self._core.list_namespaced_pod(ns, _preload_content=False) for ns in namespaces]
            )
            items: list[dict[str, Any]] = []
            for resp in responses:
                items.extend(json.loads(resp.data).get("items") or [])
            return items

        return await asyncio.to_thread(call)
