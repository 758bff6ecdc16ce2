"""Volume contents on disk: fetch the secrets and configMaps a pod refers to, and write the files
of its secret / configMap / downwardAPI / projected volumes; create emptyDir, hostPath (the
*OrCreate types) and per-claim directories."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from pathlib import Path

from vectorload_dev.kubelet.api import ApiClient, ApiError, Json, q
from vectorload_dev.kubelet.podspec import (
    Objects,
    SpecError,
    TokenFile,
    Volume,
    downward_files,
    object_files,
    projected_files,
)
from vectorload_dev.kubelet.tokens import write_file


async def fetch_objects(
    api: ApiClient, namespace: str, kind: str, names: Iterable[str]
) -> dict[str, dict[str, bytes] | None]:
    """kind "secrets" or "configmaps": name -> key -> bytes (None when the object does not exist)."""
    found: dict[str, dict[str, bytes] | None] = {}
    for name in sorted(set(names)):
        try:
            obj = await api.get(f"/api/v1/namespaces/{q(namespace)}/{kind}/{q(name)}")
        except ApiError as exc:
            if exc.status == 404:
                found[name] = None
                continue
            raise
        data: dict[str, bytes] = {}
        if kind == "secrets":
            data.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
            data.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
        else:
            data.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        found[name] = data
    return found


def materialize(
    pod: Json,
    volumes: Mapping[str, Volume],
    *,
    secrets: Objects,
    config_maps: Objects,
    allocatable: Mapping[str, str],
) -> list[tuple[Path, TokenFile]]:
    """Create every volume; returns the service-account token files still to be minted."""
    tokens: list[tuple[Path, TokenFile]] = []
    for volume in volumes.values():
        source = volume.source
        files: dict[str, tuple[bytes, int]] = {}
        if volume.kind == "hostPath":
            kind = source.get("type") or ""
            if kind == "DirectoryOrCreate":
                volume.path.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate":
                volume.path.parent.mkdir(parents=True, exist_ok=True)
                volume.path.touch(exist_ok=True)
            elif kind in ("Directory", "File") and not volume.path.exists():
                raise SpecError(f"hostPath {volume.path} does not exist")
            continue
        volume.path.mkdir(parents=True, exist_ok=True)
        if volume.kind == "secret":
            files = object_files(secrets, "secret", source["secretName"], source, source.get("defaultMode"))
        elif volume.kind == "configMap":
            files = object_files(config_maps, "configmap", source["name"], source, source.get("defaultMode"))
        elif volume.kind == "downwardAPI":
            files = downward_files(pod, source.get("items"), source.get("defaultMode"), allocatable)
        elif volume.kind == "projected":
            files, token_files = projected_files(
                pod, source, secrets=secrets, config_maps=config_maps, allocatable=allocatable
            )
            tokens.extend((volume.path, token) for token in token_files)
        for relative, (content, mode) in files.items():
            write_file(volume.path / relative, content, mode)
    return tokens
