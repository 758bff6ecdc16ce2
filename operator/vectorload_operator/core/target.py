"""Spec + collection catalog -> LoadTarget (what should be resident), or a SpecProblem."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vectorload_operator.core.model import (
    DYNAMIC_FIELD,
    LoadTarget,
    SpecProblem,
    TargetKey,
    TargetResult,
    TargetSegment,
)

_VECTOR_TYPES = frozenset({"float_vector", "floatvector", "binary_vector", "binaryvector", "vector"})


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _field_name(f: Mapping[str, Any]) -> str:
    return str(f.get("name", ""))


def _is_primary(f: Mapping[str, Any]) -> bool:
    return bool(f.get("is_primary") or f.get("isPrimary") or f.get("isPrimaryKey") or f.get("primary"))


def _is_vector(f: Mapping[str, Any]) -> bool:
    kind = str(f.get("type") or f.get("dataType") or f.get("data_type") or "")
    return kind.replace("_", "").lower() in {t.replace("_", "") for t in _VECTOR_TYPES}


def _has_dynamic(schema: Mapping[str, Any]) -> bool:
    for key in ("dynamic_field", "dynamicField", "enableDynamicField", "enable_dynamic_field"):
        if key in schema:
            return bool(schema[key])
    return True


def _replicas(spec: Mapping[str, Any]) -> int:
    raw = spec.get("replicas")
    try:
        n = int(raw) if raw is not None else 1
    except (TypeError, ValueError):
        n = 1
    return n if n > 0 else 1


def segment_bytes(sizes: Mapping[str, int], fields: frozenset[str] | None, dynamic: bool) -> int:
    """Bytes a load of this field subset reads; keys are field names and `$meta`."""
    total = 0
    for name, n in sizes.items():
        if name == DYNAMIC_FIELD:
            if dynamic:
                total += int(n)
        elif fields is None or name in fields:
            total += int(n)
    return total


def build_target(key: TargetKey, spec: Mapping[str, Any], catalog: Mapping[str, Any] | None) -> TargetResult:
    """Validate a CollectionLoad spec against the collection catalog (`GET /v1/catalog/{c}`).

    Returns a LoadTarget, or a SpecProblem with reason CollectionNotFound (catalog None),
    PartitionNotFound or InvalidSpec (loadFields without the primary key, without a vector
    field, or naming unknown fields). Messages name the offending objects, as Milvus does.
    """
    collection = str(spec.get("collection", ""))
    if catalog is None:
        return SpecProblem("CollectionNotFound", f'collection "{collection}" not found in storage')

    schema: Mapping[str, Any] = catalog.get("schema") or {}
    schema_fields: list[Mapping[str, Any]] = list(schema.get("fields") or [])
    names = [_field_name(f) for f in schema_fields]
    primary = next((_field_name(f) for f in schema_fields if _is_primary(f)), None)
    vectors = [_field_name(f) for f in schema_fields if _is_vector(f)]
    has_dynamic = _has_dynamic(schema)

    requested = [str(f) for f in (spec.get("loadFields") or [])]
    fields: frozenset[str] | None = None
    if requested:
        unknown = sorted({f for f in requested if f not in names})
        if unknown:
            word = "field" if len(unknown) == 1 else "fields"
            return SpecProblem(
                "InvalidSpec",
                f'load field list contains unknown {word} {_quoted(unknown)} (collection "{collection}" '
                f"has fields {_quoted(names)})",
            )
        fields = frozenset(requested)
        if primary is not None and primary not in fields:
            return SpecProblem(
                "InvalidSpec", f'load field list must contain the primary key field "{primary}"'
            )
        if not fields & set(vectors):
            return SpecProblem(
                "InvalidSpec",
                f"load field list must contain at least one vector field (collection "
                f'"{collection}" has vector fields {_quoted(vectors)})',
            )

    catalog_partitions: list[Mapping[str, Any]] = list(catalog.get("partitions") or [])
    by_name = {str(p.get("name")): p for p in catalog_partitions}
    wanted = [str(p) for p in (spec.get("partitions") or [])]
    if wanted:
        missing = sorted({p for p in wanted if p not in by_name})
        if missing:
            word = "partition" if len(missing) == 1 else "partitions"
            return SpecProblem(
                "PartitionNotFound",
                f'{word} {_quoted(missing)} not found in collection "{collection}" '
                f"(partitions: {_quoted(sorted(by_name))})",
            )
        partitions = tuple(sorted(set(wanted)))
    else:
        partitions = tuple(sorted(by_name))

    skip_dynamic = bool(spec.get("skipLoadDynamicField", False))
    dynamic = has_dynamic and not skip_dynamic
    segments: list[TargetSegment] = []
    for pname in partitions:
        for seg in by_name[pname].get("segments") or []:
            # predicted resident bytes (file sizes + the querynode's measured overheads) when the
            # catalog publishes them, so placement uses the arithmetic admission applies
            sizes: Mapping[str, int] = seg.get("memoryBytes") or seg.get("bytes") or {}
            predicted = segment_bytes(sizes, fields, dynamic) if sizes else int(seg.get("totalBytes", 0))
            segments.append(TargetSegment(pname, str(seg["id"]), int(seg.get("rows", 0)), predicted))
    segments.sort(key=lambda s: (s.partition, s.id))

    return LoadTarget(
        key=key,
        collection=collection,
        partitions=partitions,
        fields=fields,
        loaded_fields=fields if fields is not None else frozenset(names),
        skip_dynamic=skip_dynamic,
        dynamic=dynamic,
        has_dynamic_field=has_dynamic,
        replicas=_replicas(spec),
        segments=tuple(segments),
    )
