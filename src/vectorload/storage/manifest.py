"""`SegmentManifest` <-> `manifest.json`, retirement markers and delta manifests <-> their JSON."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from vectorload.storage.api import (
    SEGMENT_ID_PATTERN,
    TS_FIELD,
    DeltaManifest,
    SegmentFile,
    SegmentManifest,
    StorageError,
)

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
        **optional_keys(m),
    }


def optional_keys(m: SegmentManifest) -> dict[str, Any]:
    """The keys of data-change features, present only when they say something (a segment written
    without them has exactly the keys of earlier versions)."""
    out: dict[str, Any] = {}
    if m.generation:
        out["generation"] = m.generation
    if m.compacted_from:
        out["compactedFrom"] = list(m.compacted_from)
    if m.min_ts is not None and m.max_ts is not None:
        out["minTs"] = m.min_ts
        out["maxTs"] = m.max_ts
    if m.deltas_applied:
        out["deltasApplied"] = m.deltas_applied
    return out


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


def _optional_int(data: dict[str, Any], key: str, where: str, default: int | None) -> int | None:
    value = data.get(key, default)
    if value is default:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 2**63:
        raise _corrupt(where, f"{key} must be a non-negative int64, got {value!r}")
    return value


def _compacted_from(data: dict[str, Any], where: str) -> tuple[str, ...]:
    value = data.get("compactedFrom", [])
    if not isinstance(value, list) or not all(
        isinstance(v, str) and SEGMENT_ID_PATTERN.fullmatch(v) for v in value
    ):
        raise _corrupt(where, "compactedFrom must be a list of segment ids")
    return tuple(value)


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
    min_ts = _optional_int(data, "minTs", where, None)
    max_ts = _optional_int(data, "maxTs", where, None)
    if (min_ts is None) != (max_ts is None) or (
        min_ts is not None and max_ts is not None and min_ts > max_ts
    ):
        raise _corrupt(
            where, f"minTs/maxTs must both be present with minTs <= maxTs, got {min_ts!r}/{max_ts!r}"
        )
    return SegmentManifest(
        collection=str(strings["collection"]),
        partition=str(strings["partition"]),
        segment_id=str(strings["segmentId"]),
        rows=rows,
        files={str(name): _file_from_dict(where, str(name), f) for name, f in files.items()},
        index_params={str(k): {str(n): int(v) for n, v in p.items()} for k, p in params.items()},
        created_at=str(strings["createdAt"]),
        generation=_optional_int(data, "generation", where, 0) or 0,
        compacted_from=_compacted_from(data, where),
        min_ts=min_ts,
        max_ts=max_ts,
        deltas_applied=_optional_int(data, "deltasApplied", where, 0) or 0,
    )


# ------------------------------------------------------------------------------ retirement

RETIRED_SUFFIX = ".retired.json"


def retired_marker_name(segment_id: str) -> str:
    """The marker's file name in the partition directory (never a segment id: ids have no `.`)."""
    return f"{segment_id}{RETIRED_SUFFIX}"


def retired_to_dict(
    segment_id: str, replaced_by: tuple[str, ...], retired_at: str, generation: int
) -> dict[str, Any]:
    return {
        "formatVersion": FORMAT_VERSION,
        "segmentId": segment_id,
        "replacedBy": list(replaced_by),
        "retiredAt": retired_at,
        "generation": generation,
    }


def retired_from_dict(data: object, where: str) -> tuple[str, tuple[str, ...], str, int]:
    """(segment id, replaced by, retired at, generation) of a retirement marker."""
    if not isinstance(data, dict):
        raise _corrupt(where, "not a JSON object")
    if data.get("formatVersion") != FORMAT_VERSION:
        raise _corrupt(where, f"unsupported formatVersion {data.get('formatVersion')!r}")
    segment_id, retired_at = data.get("segmentId"), data.get("retiredAt")
    if not isinstance(segment_id, str) or not SEGMENT_ID_PATTERN.fullmatch(segment_id):
        raise _corrupt(where, f"segmentId must be a segment id, got {segment_id!r}")
    if not isinstance(retired_at, str):
        raise _corrupt(where, "retiredAt must be a string")
    replaced = data.get("replacedBy")
    if not isinstance(replaced, list) or not all(
        isinstance(v, str) and SEGMENT_ID_PATTERN.fullmatch(v) for v in replaced
    ):
        raise _corrupt(where, "replacedBy must be a list of segment ids")
    generation = _optional_int(data, "generation", where, 0) or 0
    return segment_id, tuple(replaced), retired_at, generation


# ---------------------------------------------------------------------------------- deltas

DELTA_MANIFEST_NAME = "delta.json"


def delta_to_dict(d: DeltaManifest) -> dict[str, Any]:
    return {
        "formatVersion": FORMAT_VERSION,
        "collection": d.collection,
        "deltaId": d.delta_id,
        "seq": d.seq,
        "partition": d.partition,
        "rows": d.rows,
        "minTs": d.min_ts,
        "maxTs": d.max_ts,
        "createdAt": d.created_at,
        "files": {
            name: {"path": f.path, "bytes": f.bytes, "sha256": f.sha256} for name, f in d.files.items()
        },
    }


def delta_from_dict(data: object, where: str) -> DeltaManifest:
    if not isinstance(data, dict):
        raise _corrupt(where, "not a JSON object")
    if data.get("formatVersion") != FORMAT_VERSION:
        raise _corrupt(where, f"unsupported formatVersion {data.get('formatVersion')!r}")
    for key in ("collection", "deltaId", "createdAt"):
        if not isinstance(data.get(key), str):
            raise _corrupt(where, f"{key} must be a string")
    partition = data.get("partition")
    if partition is not None and not isinstance(partition, str):
        raise _corrupt(where, "partition must be a string or null")
    numbers = {k: _optional_int(data, k, where, None) for k in ("seq", "rows", "minTs", "maxTs")}
    for key, value in numbers.items():
        if value is None:
            raise _corrupt(where, f"{key} must be a non-negative integer")
    files = data.get("files")
    if not isinstance(files, dict) or len(files) != 2 or TS_FIELD not in files:
        raise _corrupt(where, f"files must hold the primary keys and {TS_FIELD}")
    return DeltaManifest(
        collection=str(data["collection"]),
        delta_id=str(data["deltaId"]),
        seq=int(numbers["seq"] or 0),
        partition=partition,
        rows=int(numbers["rows"] or 0),
        min_ts=int(numbers["minTs"] or 0),
        max_ts=int(numbers["maxTs"] or 0),
        files={str(name): _file_from_dict(where, str(name), f) for name, f in files.items()},
        created_at=str(data["createdAt"]),
    )
