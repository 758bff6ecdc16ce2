"""`CollectionSchema` <-> JSON dict (the `--schema` file and `collection.json`).

Format (camelCase keys, as in the HTTP API):

    {"name": "book", "description": "", "enableDynamicField": true,
     "fields": [{"name": "book_id", "type": "int64", "isPrimary": true},
                {"name": "title", "type": "varchar", "maxLength": 512},
                {"name": "book_intro", "type": "float_vector", "dim": 64, "metric": "l2"}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast, get_args

from vectorload.storage.api import (
    DYNAMIC_FIELD,
    CollectionSchema,
    FieldSchema,
    FieldType,
    Metric,
    StorageError,
)
from vectorload.storage.names import check_name

FORMAT_VERSION = 1
_FIELD_TYPES: tuple[str, ...] = get_args(FieldType)
_METRICS: tuple[str, ...] = get_args(Metric)
_SCHEMA_KEYS = {"formatVersion", "name", "description", "enableDynamicField", "fields"}
_FIELD_KEYS = {"name", "type", "isPrimary", "dim", "metric", "maxLength"}
MAX_DIM = 32768


def _bad(message: str) -> StorageError:
    return StorageError("InvalidArgument", message)


def field_to_dict(f: FieldSchema) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "type": f.type}
    if f.is_primary:
        out["isPrimary"] = True
    if f.dim is not None:
        out["dim"] = f.dim
    if f.metric is not None:
        out["metric"] = f.metric
    if f.max_length is not None:
        out["maxLength"] = f.max_length
    return out


def schema_to_dict(schema: CollectionSchema) -> dict[str, Any]:
    return {
        "formatVersion": FORMAT_VERSION,
        "name": schema.name,
        "description": schema.description,
        "enableDynamicField": schema.dynamic_field,
        "fields": [field_to_dict(f) for f in schema.fields],
    }


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"{what} must be a positive integer, got {value!r}")
    return value


def field_from_dict(data: object) -> FieldSchema:
    if not isinstance(data, dict):
        raise _bad(f"schema field must be an object, got {data!r}")
    name = data.get("name")
    label = f"field {name!r}"
    unknown = set(data) - _FIELD_KEYS
    if unknown:
        raise _bad(f"{label}: unknown keys {sorted(unknown)}")
    check_name("field", name, reason="InvalidArgument")
    ftype = data.get("type")
    if ftype not in _FIELD_TYPES:
        raise _bad(f"{label}: type must be one of {list(_FIELD_TYPES)}, got {ftype!r}")
    is_primary = data.get("isPrimary", False)
    if not isinstance(is_primary, bool):
        raise _bad(f"{label}: isPrimary must be a boolean")
    dim = metric = max_length = None
    if ftype == "float_vector":
        dim = _positive_int(data.get("dim"), f"{label}: dim")
        if dim > MAX_DIM:
            raise _bad(f"{label}: dim {dim} exceeds {MAX_DIM}")
        metric = data.get("metric", "l2")
        if metric not in _METRICS:
            raise _bad(f"{label}: metric must be one of {list(_METRICS)}, got {metric!r}")
    else:
        for key in ("dim", "metric"):
            if key in data:
                raise _bad(f"{label}: {key} is only valid for float_vector fields")
    if ftype == "varchar":
        if data.get("maxLength") is not None:
            max_length = _positive_int(data["maxLength"], f"{label}: maxLength")
    elif "maxLength" in data:
        raise _bad(f"{label}: maxLength is only valid for varchar fields")
    return FieldSchema(
        name=cast(str, name),
        type=cast(FieldType, ftype),
        is_primary=is_primary,
        dim=dim,
        metric=cast(Metric | None, metric),
        max_length=max_length,
    )


def schema_from_dict(data: object, name: str | None = None) -> CollectionSchema:
    """Parse and validate a schema dict. `name` fills (or must equal) the dict's `name`."""
    if not isinstance(data, dict):
        raise _bad("schema must be a JSON object")
    unknown = set(data) - _SCHEMA_KEYS
    if unknown:
        raise _bad(f"schema: unknown keys {sorted(unknown)}")
    if data.get("formatVersion", FORMAT_VERSION) != FORMAT_VERSION:
        raise _bad(f"schema: unsupported formatVersion {data.get('formatVersion')!r}")
    given = data.get("name", name)
    if name is not None and given != name:
        raise _bad(f"schema: name {given!r} does not match collection {name!r}")
    check_name("collection", given, reason="InvalidArgument")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _bad("schema: description must be a string")
    dynamic = data.get("enableDynamicField", True)
    if not isinstance(dynamic, bool):
        raise _bad("schema: enableDynamicField must be a boolean")
    raw_fields = data.get("fields")
    if not isinstance(raw_fields, list):
        raise _bad("schema: fields must be a list")
    schema = CollectionSchema(
        name=cast(str, given),
        fields=tuple(field_from_dict(f) for f in raw_fields),
        dynamic_field=dynamic,
        description=description,
    )
    validate_schema(schema)
    return schema


def validate_schema(schema: CollectionSchema) -> None:
    """Check a schema built in code (or parsed) for consistency; StorageError('InvalidArgument')."""
    check_name("collection", schema.name, reason="InvalidArgument")
    seen: set[str] = set()
    for f in schema.fields:
        check_name("field", f.name, reason="InvalidArgument")
        if f.name in seen:
            raise _bad(f"schema: duplicate field {f.name!r}")
        seen.add(f.name)
        if f.type not in _FIELD_TYPES:
            raise _bad(f"field {f.name!r}: unknown type {f.type!r}")
        if f.type == "float_vector":
            if f.dim is None or f.dim < 1 or f.dim > MAX_DIM:
                raise _bad(f"field {f.name!r}: float_vector needs 1 <= dim <= {MAX_DIM}")
            if f.metric not in _METRICS:
                raise _bad(f"field {f.name!r}: metric must be one of {list(_METRICS)}")
            if f.is_primary:
                raise _bad(f"field {f.name!r}: a float_vector cannot be the primary key")
        elif f.dim is not None or f.metric is not None:
            raise _bad(f"field {f.name!r}: dim/metric are only valid for float_vector fields")
        if f.max_length is not None and (f.type != "varchar" or f.max_length < 1):
            raise _bad(f"field {f.name!r}: maxLength must be positive and only on varchar fields")
    primaries = [f for f in schema.fields if f.is_primary]
    if len(primaries) != 1:
        raise _bad(f"schema: exactly one primary key field is required, got {len(primaries)}")
    if primaries[0].type not in ("int64", "varchar"):
        raise _bad(f"field {primaries[0].name!r}: the primary key must be int64 or varchar")
    if not schema.vector_fields:
        raise _bad("schema: at least one float_vector field is required")
    if DYNAMIC_FIELD in seen:
        raise _bad(f"schema: {DYNAMIC_FIELD!r} is reserved for the dynamic field")


def load_schema_file(path: Path, collection: str | None = None) -> CollectionSchema:
    """Read a `--schema` JSON file; errors (InvalidArgument) name the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _bad(f"schema file {path}: {exc}") from exc
    try:
        return schema_from_dict(data, name=collection)
    except StorageError as exc:
        raise StorageError(exc.reason, f"schema file {path}: {exc.message}") from exc
