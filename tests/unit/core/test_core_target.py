"""build_target: spec + catalog -> LoadTarget or SpecProblem."""

from __future__ import annotations

from vectorload.wire.querynode import CollectionCatalog, convert
from vectorload_dev.testing.coresim import catalog, catalog_doc
from vectorload_operator.core import LoadTarget, SpecProblem, build_target

CAT = catalog("book", {"novel": [100, 200], "poem": [50]})


def test_whole_collection_defaults() -> None:
    t = build_target("ns/a", {"collection": "book"}, CAT)
    assert isinstance(t, LoadTarget)
    assert t.partitions == ("novel", "poem")
    assert t.fields is None
    assert t.loaded_fields == frozenset({"book_id", "embedding", "title", "year"})
    assert t.replicas == 1
    assert t.dynamic and t.has_dynamic_field
    assert [(s.partition, s.id, s.bytes) for s in t.segments] == [
        ("novel", "snovel0", 100),
        ("novel", "snovel1", 200),
        ("poem", "spoem0", 50),
    ]


def test_replicas_non_positive_means_one() -> None:
    for n in (0, -3):
        t = build_target("k", {"collection": "book", "replicas": n}, CAT)
        assert isinstance(t, LoadTarget) and t.replicas == 1
    t = build_target("k", {"collection": "book", "replicas": 3}, CAT)
    assert isinstance(t, LoadTarget) and t.replicas == 3


def test_partition_subset_and_predicted_bytes_for_fields() -> None:
    spec = {
        "collection": "book",
        "partitions": ["novel"],
        "loadFields": ["book_id", "embedding"],
        "skipLoadDynamicField": True,
    }
    t = build_target("k", spec, CAT)
    assert isinstance(t, LoadTarget)
    assert t.partitions == ("novel",)
    assert t.fields == frozenset({"book_id", "embedding"})
    assert not t.dynamic and t.skip_dynamic
    # 200: pk 20 + vector 200-80=120 -> 140; title/year/$meta skipped
    assert [s.bytes for s in t.segments] == [70, 140]


def test_dynamic_field_counts_unless_skipped() -> None:
    with_meta = build_target("k", {"collection": "book", "loadFields": ["book_id", "embedding"]}, CAT)
    assert isinstance(with_meta, LoadTarget)
    assert [s.bytes for s in with_meta.segments] == [80, 160, 40]


def test_collection_not_found() -> None:
    p = build_target("k", {"collection": "nope"}, None)
    assert p == SpecProblem("CollectionNotFound", 'collection "nope" not found in storage')


def test_partition_not_found_names_every_missing_partition() -> None:
    p = build_target("k", {"collection": "book", "partitions": ["novel", "drama", "essay"]}, CAT)
    assert isinstance(p, SpecProblem) and p.reason == "PartitionNotFound"
    assert '"drama", "essay"' in p.message and "novel" in p.message.split("(")[1]


def test_load_fields_must_contain_primary_key() -> None:
    p = build_target("k", {"collection": "book", "loadFields": ["embedding", "title"]}, CAT)
    assert p == SpecProblem("InvalidSpec", 'load field list must contain the primary key field "book_id"')


def test_load_fields_must_contain_a_vector_field() -> None:
    p = build_target("k", {"collection": "book", "loadFields": ["book_id", "title"]}, CAT)
    assert isinstance(p, SpecProblem) and p.reason == "InvalidSpec"
    assert p.message.startswith("load field list must contain at least one vector field")
    assert '"embedding"' in p.message


def test_unknown_fields_are_named() -> None:
    p = build_target(
        "k", {"collection": "book", "loadFields": ["book_id", "embedding", "isbn", "author"]}, CAT
    )
    assert isinstance(p, SpecProblem) and p.reason == "InvalidSpec"
    assert 'unknown fields "author", "isbn"' in p.message


def test_schema_without_dynamic_field() -> None:
    cat = catalog("plain", {"p": [100]}, dynamic=False)
    t = build_target("k", {"collection": "plain"}, cat)
    assert isinstance(t, LoadTarget)
    assert not t.has_dynamic_field and not t.dynamic
    assert t.segments[0].bytes == 100


def test_memory_bytes_from_the_catalog_are_preferred_over_file_sizes() -> None:
    doc = catalog_doc("book", {"novel": [100]})
    seg = doc["partitions"][0]["segments"][0]
    seg["memoryBytes"] = {name: n * 3 for name, n in seg["bytes"].items()}
    t = build_target("ns/a", {"collection": "book"}, convert(doc, CollectionCatalog))
    assert isinstance(t, LoadTarget)
    assert t.segments[0].bytes == 300


def test_load_field_rule_is_the_querynodes() -> None:
    """The operator refuses exactly what the querynode would refuse, with the same message."""
    from vectorload.storage.load_fields import LoadFieldsError, select_fields

    for fields in (["embedding", "title"], ["book_id", "title"], ["book_id", "embedding", "isbn"]):
        p = build_target("k", {"collection": "book", "loadFields": fields}, CAT)
        assert isinstance(p, SpecProblem) and p.reason == "InvalidSpec"
        try:
            select_fields(CAT.schema, fields, False)
        except LoadFieldsError as exc:
            assert exc.message == p.message
        else:
            raise AssertionError(f"{fields} accepted by the shared rule")
