"""The collection properties the write path changes after creation: index definitions, auto_id.

Why a file of its own: `collection.json` is written once (its bytes are the schema every reader
compares), but Milvus clients choose the index — type, metric, M, efConstruction — after the
collection exists (`create_index`), may drop and recreate it, and declare `auto_id` on the primary
key. `properties.json`, beside `collection.json`, holds those: small, replaced atomically (written
to a temporary file, fsynced, renamed) under the collection lock, which also moves the collection's
generation so every catalog cache sees the change.

The index definition of a vector field decides how new segments are built (`M`,
`efConstruction`) and the field's metric: `effective_schema` is the stored schema with each
indexed field's metric taken from its definition, and `FilesystemReader.schema` answers that, so
a querynode, the operator and the writer all see one metric. A collection without the file has
no properties: its indexes are the ones its segments were built with (ingest), its metric the
schema's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from .api import CollectionSchema, Metric, StorageBackend, StorageError
from .atomic import write_json_atomic
from .generation import collection_lock

PROPERTIES_FILE = "properties.json"
PROPERTIES_FORMAT = 1
INDEX_TYPES = ("HNSW",)
METRICS: dict[str, Metric] = {"L2": "l2", "IP": "ip", "COSINE": "cosine"}
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200


@dataclass(frozen=True)
class IndexDefinition:
    field: str
    index_name: str
    metric: Metric
    M: int = DEFAULT_M
    ef_construction: int = DEFAULT_EF_CONSTRUCTION
    index_type: str = "HNSW"


@dataclass(frozen=True)
class CollectionProperties:
    auto_id: bool = False
    indexes: tuple[IndexDefinition, ...] = ()

    def index(self, field: str) -> IndexDefinition | None:
        return next((i for i in self.indexes if i.field == field), None)

    def with_index(self, definition: IndexDefinition) -> CollectionProperties:
        kept = tuple(i for i in self.indexes if i.field != definition.field)
        return replace(self, indexes=(*kept, definition))

    def without_index(self, field: str) -> CollectionProperties:
        return replace(self, indexes=tuple(i for i in self.indexes if i.field != field))


def _bad(where: str, message: str) -> StorageError:
    return StorageError("CorruptManifest", f"{where}: {message}")


def properties_to_dict(props: CollectionProperties) -> dict[str, Any]:
    return {
        "formatVersion": PROPERTIES_FORMAT,
        "autoId": props.auto_id,
        "indexes": [
            {
                "field": i.field,
                "indexName": i.index_name,
                "indexType": i.index_type,
                "metric": i.metric,
                "M": i.M,
                "efConstruction": i.ef_construction,
            }
            for i in props.indexes
        ],
    }


def properties_from_dict(data: object, where: str) -> CollectionProperties:
    if not isinstance(data, dict) or data.get("formatVersion") != PROPERTIES_FORMAT:
        raise _bad(where, f"expected an object with formatVersion {PROPERTIES_FORMAT}")
    auto_id = data.get("autoId", False)
    raw = data.get("indexes", [])
    if not isinstance(auto_id, bool) or not isinstance(raw, list):
        raise _bad(where, "autoId must be a boolean and indexes a list")
    indexes = []
    for item in raw:
        if not isinstance(item, dict):
            raise _bad(where, "an index definition must be an object")
        field, name, kind, metric = (item.get(k) for k in ("field", "indexName", "indexType", "metric"))
        m, efc = item.get("M"), item.get("efConstruction")
        if not (isinstance(field, str) and isinstance(name, str) and kind in INDEX_TYPES):
            raise _bad(where, f"bad index definition {item!r}")
        if metric not in METRICS.values() or not isinstance(m, int) or not isinstance(efc, int):
            raise _bad(where, f"bad index definition {item!r}")
        indexes.append(IndexDefinition(field, name, cast(Metric, metric), m, efc, str(kind)))
    return CollectionProperties(auto_id, tuple(indexes))


def read_properties(backend: StorageBackend, collection: str) -> CollectionProperties:
    rel = f"{collection}/{PROPERTIES_FILE}"
    if not backend.exists(rel):
        return CollectionProperties()
    try:
        data = json.loads(backend.read_bytes(rel))
    except (ValueError, OSError) as exc:
        raise _bad(rel, str(exc)) from exc
    return properties_from_dict(data, rel)


def write_properties(root: Path, collection: str, props: CollectionProperties) -> None:
    """Replace the collection's properties atomically under its lock (moves its generation)."""
    cdir = Path(root) / collection
    with collection_lock(cdir) as locked:
        write_json_atomic(cdir / PROPERTIES_FILE, properties_to_dict(props))
        locked.bump()


def effective_schema(schema: CollectionSchema, props: CollectionProperties) -> CollectionSchema:
    """The schema with each indexed vector field's metric from its index definition."""
    if not props.indexes:
        return schema
    fields = tuple(
        replace(f, metric=d.metric)
        if f.type == "float_vector" and (d := props.index(f.name)) is not None
        else f
        for f in schema.fields
    )
    return schema if fields == schema.fields else replace(schema, fields=fields)
