from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from vectorload.storage.api import CollectionSchema, StorageError
from vectorload.storage.schema_json import schema_from_dict, schema_to_dict

MakeSchema = Callable[..., CollectionSchema]


# The documented --schema format (docs/storage-format.md).
BASE: dict[str, Any] = {
    "name": "book",
    "description": "",
    "enableDynamicField": True,
    "fields": [
        {"name": "book_id", "type": "int64", "isPrimary": True},
        {"name": "title", "type": "varchar", "maxLength": 32},
        {"name": "word_count", "type": "int64"},
        {"name": "rating", "type": "float"},
        {"name": "in_print", "type": "bool"},
        {"name": "intro", "type": "float_vector", "dim": 8, "metric": "l2"},
        {"name": "cover", "type": "float_vector", "dim": 4, "metric": "cosine"},
    ],
}


def test_round_trip(make_schema: MakeSchema) -> None:
    schema = make_schema()
    assert schema_from_dict(BASE) == schema
    assert schema_to_dict(schema) == {**BASE, "formatVersion": 1}
    assert schema_from_dict(schema_to_dict(schema)) == schema
    assert schema_from_dict({k: v for k, v in BASE.items() if k != "name"}, name="book") == schema


def test_defaults_metric_l2_and_dynamic_on() -> None:
    data = {
        "fields": [
            {"name": "k", "type": "varchar", "isPrimary": True},
            {"name": "v", "type": "float_vector", "dim": 2},
        ]
    }
    schema = schema_from_dict(data, name="c")
    assert schema.dynamic_field is True
    assert schema.vector_fields[0].metric == "l2"
    assert schema.primary_key.type == "varchar" and schema.primary_key.max_length is None


def _with(change: dict[str, Any], index: int | None = None) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    target = data if index is None else data["fields"][index]
    for key, value in change.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_with({"dim": 0}, 5), "intro"),
        (_with({"dim": None}, 5), "intro"),
        (_with({"metric": "hamming"}, 5), "intro"),
        (_with({"type": "double"}, 3), "rating"),
        (_with({"dim": 3}, 3), "rating"),
        (_with({"maxLength": 0}, 1), "title"),
        (_with({"maxLength": 5}, 2), "word_count"),
        (_with({"name": "9bad"}, 2), "9bad"),
        (_with({"colour": "red"}, 2), "word_count"),
        (_with({"isPrimary": None}, 0), "primary key"),
        (_with({"isPrimary": True}, 2), "primary key"),
        (_with({"name": "book_id"}, 2), "book_id"),
        (_with({"name": "bad-name"}), "bad-name"),
        (_with({"fields": [{"name": "k", "type": "int64", "isPrimary": True}]}), "float_vector"),
        (_with({"enableDynamicField": "yes"}), "enableDynamicField"),
    ],
)
def test_invalid_schemas_name_the_problem(data: dict[str, Any], named: str) -> None:
    with pytest.raises(StorageError) as err:
        schema_from_dict(data)
    assert err.value.reason == "InvalidArgument"
    assert named in err.value.message


def test_name_must_match_collection() -> None:
    with pytest.raises(StorageError, match="does not match"):
        schema_from_dict(BASE, name="other")
