"""Which fields a load may ask for: the one rule, shared by the querynode (which refuses a bad load
request with 400) and the operator (which turns the same refusal into an InvalidSpec condition).

A field list (Milvus' `load_fields`) must name only schema fields, must contain the primary key
and at least one vector field; no list means every field. The dynamic field (`$meta`) is loaded
when the schema has one and the load does not skip it (`skip_load_dynamic_field`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vectorload.storage.api import CollectionSchema


class LoadFieldsError(Exception):
    """`reason` is FieldNotFound (unknown names) or InvalidFields (no primary key / vector field)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class FieldSelection:
    """`requested` is the list as asked (None = every field); `fields` the resolved schema fields
    that must be resident; `dynamic` whether `$meta` is loaded."""

    requested: frozenset[str] | None
    fields: frozenset[str]
    dynamic: bool


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def select_fields(
    schema: CollectionSchema, requested: Iterable[str] | None, skip_dynamic: bool
) -> FieldSelection:
    """Resolve a load's field list against the schema; LoadFieldsError when it cannot work."""
    dynamic = schema.dynamic_field and not skip_dynamic
    names = [f.name for f in schema.fields]
    if requested is None:
        return FieldSelection(None, frozenset(names), dynamic)
    chosen = frozenset(requested)
    unknown = sorted(chosen - set(names))
    if unknown:
        word = "field" if len(unknown) == 1 else "fields"
        raise LoadFieldsError(
            "FieldNotFound",
            f"load field list contains unknown {word} {_quoted(unknown)} "
            f'(collection "{schema.name}" has fields {_quoted(names)})',
        )
    primary = schema.primary_key.name
    if primary not in chosen:
        raise LoadFieldsError(
            "InvalidFields", f'load field list must contain the primary key field "{primary}"'
        )
    vectors = [f.name for f in schema.vector_fields]
    if not chosen & set(vectors):
        raise LoadFieldsError(
            "InvalidFields",
            f"load field list must contain at least one vector field "
            f'(collection "{schema.name}" has vector fields {_quoted(vectors)})',
        )
    return FieldSelection(chosen, chosen, dynamic)
