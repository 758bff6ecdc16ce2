"""Spec + collection catalog -> LoadTarget (what should be resident), or a SpecProblem.

The catalog is typed (`vectorload.wire.querynode.CollectionCatalog`): its schema is storage's
`CollectionSchema`, parsed once by storage's own parser, so nothing here guesses key spellings.
Which fields a load may ask for is storage's one rule (`vectorload.storage.load_fields`), the
rule the querynode applies to a load request; a refusal becomes InvalidSpec with its message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vectorload.storage.api import TS_FIELD
from vectorload.storage.load_fields import LoadFieldsError, select_fields
from vectorload.wire.querynode import CollectionCatalog
from vectorload_operator.core.model import (
    DYNAMIC_FIELD,
    LoadTarget,
    RetiredTargetSegment,
    SpecProblem,
    TargetKey,
    TargetResult,
    TargetSegment,
)


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _replicas(spec: Mapping[str, Any]) -> int:
    raw = spec.get("replicas")
    try:
        n = int(raw) if raw is not None else 1
    except (TypeError, ValueError):
        n = 1
    return n if n > 0 else 1


def segment_bytes(sizes: Mapping[str, int], fields: frozenset[str] | None, dynamic: bool) -> int:
    """Bytes a load of this field subset takes; keys are field names, `$meta` and `$ts` (the row
    timestamps, which every load reads)."""
    total = 0
    for name, n in sizes.items():
        if name == DYNAMIC_FIELD:
            if dynamic:
                total += int(n)
        elif name == TS_FIELD or fields is None or name in fields:
            total += int(n)
    return total


def build_target(key: TargetKey, spec: Mapping[str, Any], catalog: CollectionCatalog | None) -> TargetResult:
    """Validate a CollectionLoad spec against the collection catalog (`GET /v1/catalog/{c}`).

    Returns a LoadTarget, or a SpecProblem with reason CollectionNotFound (catalog None),
    PartitionNotFound or InvalidSpec (loadFields without the primary key, without a vector
    field, or naming unknown fields). Messages name the offending objects, as Milvus does.
    """
    collection = str(spec.get("collection", ""))
    if catalog is None:
        return SpecProblem("CollectionNotFound", f'collection "{collection}" not found in storage')

    schema = catalog.schema
    requested = [str(f) for f in (spec.get("loadFields") or [])]
    skip_dynamic = bool(spec.get("skipLoadDynamicField", False))
    try:
        selection = select_fields(schema, requested or None, skip_dynamic)
    except LoadFieldsError as exc:
        return SpecProblem("InvalidSpec", exc.message)

    by_name = {p.name: p for p in catalog.partitions}
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

    segments: list[TargetSegment] = []
    retired: list[RetiredTargetSegment] = []
    for pname in partitions:
        for seg in by_name[pname].segments:
            # predicted resident bytes (file sizes + the querynode's measured overheads): placement
            # uses the arithmetic the querynode's memory admission applies
            predicted = segment_bytes(seg.memory_bytes, selection.requested, selection.dynamic)
            segments.append(
                TargetSegment(pname, seg.id, seg.rows, predicted, seg.compacted_from, seg.generation)
            )
        retired.extend(
            RetiredTargetSegment(pname, r.id, r.rows, r.replaced_by, r.compacted_from, r.generation)
            for r in by_name[pname].retired
        )
    segments.sort(key=lambda s: (s.partition, s.id))
    retired.sort(key=lambda s: (s.partition, s.id))

    return LoadTarget(
        key=key,
        collection=collection,
        partitions=partitions,
        fields=selection.requested,
        loaded_fields=selection.fields,
        skip_dynamic=skip_dynamic,
        dynamic=selection.dynamic,
        has_dynamic_field=schema.dynamic_field,
        replicas=_replicas(spec),
        segments=tuple(segments),
        retired=tuple(retired),
        generation=catalog.generation,
    )
