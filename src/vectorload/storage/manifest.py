"""`SegmentManifest` <-> `manifest.json` dict."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from vectorload.storage.api import SegmentFile, SegmentManifest, StorageError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


def manifest_to_dict(m: SegmentManifest) -> dict[str, Any]:
    return {
        "formatVersion": FORMAT_VERSION,
        "collection": m.collection,
        "partition": m.partition,
        "segmentId": m.segment_id,
        "rows": m.rows,
        "createdAt": m.created_at,
        "files": {
            name: {"path": f.path, "bytes": f.bytes, "sha256": f.sha256} for name, f in m.files.items()
        },
        "indexParams": {name: dict(params) for name, params in m.index_params.items()},
    }


def _corrupt(where: str, message: str) -> StorageError:
    return StorageError("CorruptManifest", f"{where}: {message}")


def _file_from_dict(where: str, name: str, data: object) -> SegmentFile:
    if not isinstance(data, dict):
        raise _corrupt(where, f"file entry {name!r} is not an object")
    path, size, digest = data.get("path"), data.get("bytes"), data.get("sha256")
    if not isinstance(path, str) or not path or "/" in path or "\\" in path or "\x00" in path:
        raise _corrupt(where, f"file entry {name!r} has an invalid path {path!r}")
    if PurePosixPath(path).name in ("", ".", ".."):
        raise _corrupt(where, f"file entry {name!r} has an invalid path {path!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _corrupt(where, f"file entry {name!r} has an invalid size {size!r}")
    if not isinstance(digest, str) or len(digest) != 64:
        raise _corrupt(where, f"file entry {name!r} has an invalid sha256 {digest!r}")
    return SegmentFile(path=path, bytes=size, sha256=digest)


def manifest_from_dict(data: object, where: str) -> SegmentManifest:
    """Parse a manifest; `where` names the file in error messages (CorruptManifest)."""
    if not isinstance(data, dict):
        raise _corrupt(where, "not a JSON object")
    if data.get("formatVersion") != FORMAT_VERSION:
        raise _corrupt(where, f"unsupported formatVersion {data.get('formatVersion')!r}")
    strings = {k: data.get(k) for k in ("collection", "partition", "segmentId", "createdAt")}
    for key, value in strings.items():
        if not isinstance(value, str):
            raise _corrupt(where, f"{key} must be a string")
    rows = data.get("rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise _corrupt(where, f"rows must be a non-negative integer, got {rows!r}")
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise _corrupt(where, "files must be a non-empty object")
    params = data.get("indexParams", {})
    if not isinstance(params, dict) or not all(
        isinstance(p, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in p.values())
        for p in params.values()
    ):
        raise _corrupt(where, "indexParams must map vector fields to {name: int}")
    return SegmentManifest(
        collection=str(strings["collection"]),
        partition=str(strings["partition"]),
        segment_id=str(strings["segmentId"]),
        rows=rows,
        files={str(name): _file_from_dict(where, str(name), f) for name, f in files.items()},
        index_params={str(k): {str(n): int(v) for n, v in p.items()} for k, p in params.items()},
        created_at=str(strings["createdAt"]),
    )
