"""Milvus load calls → the CollectionLoad spec they ask for (pure functions).

Milvus' newer semantics, not the seeds' old constraints — a load call states what should be in
memory and the operator reconciles towards it:

- LoadCollection: the whole collection (`partitions: []`). Loading a loaded collection succeeds;
  a different `replica_number` reconfigures online; a different `load_fields` reloads replica by
  replica (the operator does it; Milvus refuses this).
- LoadPartitions: the union of what is asked for and what is loaded; on a whole-collection load
  it changes nothing (every partition is already asked for).
- ReleasePartitions: the difference. Releasing from a whole-collection load keeps every other
  partition of storage; releasing the last one is NotLoad — the CollectionLoad is deleted.
- ReleaseCollection: delete (not here: nothing to compute).

Field configuration and replicas when a call leaves them out: `replica_number <= 0` keeps the
current count (1 for a new load); an empty `load_fields` keeps the current field list and its
`skip_load_dynamic_field` (every field, and the dynamic field unless skipped, for a new load),
so that adding a partition never reloads fields. `load_fields` given with the dynamic field's
name `$meta` means "and the dynamic field": it is not a schema field, so it becomes
`skipLoadDynamicField: false` rather than a name in `loadFields`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from vectorload.storage.api import DYNAMIC_FIELD

from .state import LoadView


@dataclass(frozen=True)
class LoadSpec:
    """The part of `CollectionLoad.spec` the Milvus API manages; `()` means every one."""

    collection: str
    partitions: tuple[str, ...] = ()
    load_fields: tuple[str, ...] = ()
    skip_dynamic: bool = False
    replicas: int = 1

    def to_spec(self) -> dict[str, Any]:
        """The spec body of a new CollectionLoad."""
        return {
            "collection": self.collection,
            "partitions": list(self.partitions),
            "loadFields": list(self.load_fields),
            "skipLoadDynamicField": self.skip_dynamic,
            "replicas": self.replicas,
        }


def spec_of(view: LoadView) -> LoadSpec:
    return LoadSpec(
        collection=view.collection,
        partitions=view.partitions,
        load_fields=view.load_fields,
        skip_dynamic=view.skip_dynamic,
        replicas=view.replicas,
    )


def _fields(
    current: LoadSpec | None, load_fields: Sequence[str], skip_dynamic: bool
) -> tuple[tuple[str, ...], bool]:
    if not load_fields:
        if current is not None:
            return current.load_fields, current.skip_dynamic
        return (), skip_dynamic
    names = set(load_fields)
    if DYNAMIC_FIELD in names:
        names.discard(DYNAMIC_FIELD)
        skip_dynamic = False
    return tuple(sorted(names)), skip_dynamic


def _replicas(current: LoadSpec | None, replica_number: int) -> int:
    if replica_number > 0:
        return replica_number
    return current.replicas if current is not None else 1


def load_collection(
    current: LoadSpec | None,
    collection: str,
    replica_number: int = 0,
    load_fields: Sequence[str] = (),
    skip_dynamic: bool = False,
) -> LoadSpec:
    fields, skip = _fields(current, load_fields, skip_dynamic)
    return LoadSpec(collection, (), fields, skip, _replicas(current, replica_number))


def load_partitions(
    current: LoadSpec | None,
    collection: str,
    partitions: Sequence[str],
    replica_number: int = 0,
    load_fields: Sequence[str] = (),
    skip_dynamic: bool = False,
) -> LoadSpec:
    fields, skip = _fields(current, load_fields, skip_dynamic)
    if current is not None and not current.partitions:
        wanted: tuple[str, ...] = ()  # the whole collection is already asked for
    else:
        held = set(current.partitions) if current is not None else set()
        wanted = tuple(sorted(held | set(partitions)))
    return LoadSpec(collection, wanted, fields, skip, _replicas(current, replica_number))


def release_partitions(
    current: LoadSpec, partitions: Sequence[str], all_partitions: Sequence[str]
) -> LoadSpec | None:
    """The spec after releasing `partitions`; None when nothing would stay loaded (delete)."""
    held = set(current.partitions) if current.partitions else set(all_partitions)
    left = held - set(partitions)
    if not left:
        return None
    if not current.partitions and left == set(all_partitions):
        return current  # nothing asked for was loaded: unchanged
    return replace(current, partitions=tuple(sorted(left)))


def spec_patch(old: LoadSpec, new: LoadSpec) -> dict[str, Any]:
    """The JSON merge patch of `spec` turning `old` into `new` (changed keys only; `{}` when
    nothing changes, so a repeated load call writes nothing and bumps no generation)."""
    before, after = old.to_spec(), new.to_spec()
    return {k: v for k, v in after.items() if before.get(k) != v and k != "collection"}
