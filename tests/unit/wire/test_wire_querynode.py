"""The querynode wire types: the documented examples decode to the expected values, every type
round-trips (encode → decode equals), and the decoder refuses what the contract forbids."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.wire import querynode as w

DOCS = Path(__file__).resolve().parents[3] / "docs" / "querynode.md"
EXAMPLE = re.compile(r"<!-- wire: (\w+) -->\n```json\n(.*?)\n```", re.S)

SCHEMA = CollectionSchema(
    name="book",
    fields=(
        FieldSchema("book_id", "int64", is_primary=True),
        FieldSchema("book_intro", "float_vector", dim=64, metric="l2"),
    ),
    dynamic_field=True,
)

COMPACTED = "20261202T025110-93f23c7f2c8d"

EXPECTED: dict[str, w.Wire] = {
    "ErrorBody": w.ErrorBody(
        error=w.ErrorDetail(
            reason="UnknownKey",
            message='unknown key "top_k" in the search request (did you mean "topK"?)',
        )
    ),
    "CatalogList": w.CatalogList(collections=("book", "metrics")),
    "CollectionCatalog": w.CollectionCatalog(
        name="book",
        schema=SCHEMA,
        partitions=(
            w.PartitionCatalog(
                name="novel",
                segments=(
                    w.SegmentSummary(
                        id="novel-0000",
                        rows=850,
                        bytes={"book_id": 6928, "book_intro": 254372, "$meta": 40960},
                        total_bytes=302260,
                        memory_bytes={"book_id": 6928, "book_intro": 2958372, "$meta": 54560},
                    ),
                    w.SegmentSummary(
                        id=COMPACTED,
                        rows=1200,
                        bytes={"book_id": 9728, "book_intro": 359096, "$meta": 57344, "$ts": 9728},
                        total_bytes=435896,
                        memory_bytes={"book_id": 9728, "book_intro": 2736536, "$meta": 76544, "$ts": 9728},
                        compacted_from=("novel-0001", "novel-0002"),
                        generation=14,
                    ),
                ),
                retired=(
                    w.RetiredSummary(id="novel-0001", rows=850, replaced_by=(COMPACTED,)),
                    w.RetiredSummary(id="novel-0002", rows=400, replaced_by=(COMPACTED,)),
                ),
            ),
        ),
        deltas=w.DeltaSummary(count=2, newest_ts=464628105297920000),
        generation=15,
    ),
    "CatalogTokensRequest": w.CatalogTokensRequest(collections=("book", "metrics")),
    "CatalogTokens": w.CatalogTokens(tokens={"book": '"g15-5c3a0f1e9b7d2a64"'}),
    "Distribution": w.Distribution(
        node="qn-0",
        boot_id="5d0c8b0e9f6e4a39b8d1f0a7c2e4b6d1",
        capacity=w.Capacity(
            memory_limit_bytes=2147483648, used_bytes=69206016, reserved_bytes=0, threshold=0.9
        ),
        segments=(
            w.HeldSegment(
                collection="book",
                partition="novel",
                segment="novel-0000",
                state="loaded",
                reason="",
                message="",
                bytes=3019860,
                rows=850,
                fields=("book_id", "book_intro"),
                dynamic_field=False,
                reloading=w.Reloading(fields=("book_id", "book_intro", "title"), dynamic_field=False),
            ),
            w.HeldSegment(
                collection="book",
                partition="novel",
                segment="novel-0001",
                state="failed",
                reason="ChecksumMismatch",
                message="file book_intro.hnsw: sha256 differs from the manifest",
                bytes=0,
                rows=0,
                fields=("book_id", "book_intro"),
                dynamic_field=False,
            ),
        ),
    ),
    "LoadRequest": w.LoadRequest(
        collection="book",
        partition="novel",
        segments=("novel-0000", "novel-0001"),
        fields=("book_id", "book_intro"),
        skip_dynamic_field=True,
    ),
    "LoadAnswer": w.LoadAnswer(
        results=(
            w.LoadResult(segment="novel-0000", state="loading", reason="", message=""),
            w.LoadResult(
                segment="novel-0001",
                state="refused",
                reason="InsufficientMemory",
                message="segment novel/novel-0001 on node qn-0: predicted 140691 bytes + used 54721237 "
                "+ reserved 0 = 54861928 bytes exceeds capacity 8388608 × threshold 0.5 = 4194304 bytes",
            ),
        )
    ),
    "ReleaseRequest": w.ReleaseRequest(
        collection="book", segments=(w.ReleaseTarget(partition="novel", segment="novel-0000"),)
    ),
    "ReleaseAnswer": w.ReleaseAnswer(released=1),
    "SearchRequest": w.SearchRequest(
        collection="book",
        vectors=[[0.1, 0.2, 0.3]],
        anns_field="book_intro",
        top_k=2,
        filter="word_count > 1000",
        output_fields=("title",),
        partitions=("novel",),
        ef=64,
    ),
    "SearchAnswer": w.SearchAnswer(
        results=[
            [
                w.Hit(id=17, distance=0.25, partition="novel", fields={"title": "Silent Spring"}),
                w.Hit(id=4, distance=0.5, partition="novel", fields={"title": "Dune"}),
            ]
        ]
    ),
    "QueryRequest": w.QueryRequest(
        collection="book", filter="in_print and word_count > 1000", output_fields=("title",), limit=5
    ),
    "GetRequest": w.GetRequest(collection="book", ids=[17, 4], output_fields=("title",)),
    "RowsAnswer": w.RowsAnswer(
        rows=[{"book_id": 17, "title": "Silent Spring"}, {"book_id": 4, "title": "Dune"}]
    ),
    "HealthAnswer": w.HealthAnswer(status="ok"),
}

BODY_TYPES = {name: getattr(w, name) for name in EXPECTED}


def _examples() -> dict[str, str]:
    found = dict(EXAMPLE.findall(DOCS.read_text(encoding="utf-8")))
    assert found, f"no wire examples in {DOCS}"
    return found


def test_every_body_type_has_a_documented_example() -> None:
    assert set(_examples()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_documented_example_decodes_to_the_expected_value(name: str) -> None:
    text = _examples()[name]
    assert w.decode(text.encode(), BODY_TYPES[name]) == EXPECTED[name]
    # and the same from already parsed JSON
    assert w.convert(json.loads(text), BODY_TYPES[name]) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_round_trip(name: str) -> None:
    value = EXPECTED[name]
    raw = w.encode(value)
    assert w.decode(raw, type(value)) == value
    assert json.loads(raw) == w.to_builtins(value)


def test_wire_keys_are_camel_case() -> None:
    assert w.field_names(w.SearchRequest) == (
        "collection",
        "vectors",
        "partitions",
        "annsField",
        "topK",
        "filter",
        "outputFields",
        "ef",
    )
    assert "memoryBytes" in w.field_names(w.SegmentSummary)
    assert json.loads(w.encode(EXPECTED["Distribution"]))["segments"][0]["dynamicField"] is False


def test_catalog_schema_is_parsed_by_the_storage_parser() -> None:
    doc = json.loads(_examples()["CollectionCatalog"])
    doc["schema"]["fields"][0]["is_primary"] = True  # another spelling is not guessed: it is refused
    with pytest.raises(w.WireError) as info:
        w.convert(doc, w.CollectionCatalog)
    assert info.value.path == "$.schema" and "is_primary" in info.value.message
    doc = json.loads(_examples()["CollectionCatalog"])
    doc["schema"]["name"] = "other"
    with pytest.raises(w.WireError, match="does not match"):
        w.convert(doc, w.CollectionCatalog)


@pytest.mark.parametrize(
    ("raw", "path", "key", "unknown"),
    [
        (b'{"collection": "c", "vectors": [[1]], "top_k": 3}', "$", "top_k", True),
        (b'{"collection": "c", "vectors": [[1]], "ef": {"a": 1}}', "$.ef", "ef", False),
        (b'{"collection": "c", "vectors": [[1]], "topK": null}', "$.topK", "topK", False),
        (b'{"collection": "c", "vectors": [[1, true]]}', "$.vectors[0][1]", "vectors", False),
        (b'{"collection": "c", "vectors": [[1e400]]}', "$.vectors[0][0]", "vectors", False),
        (b'{"collection": 5, "vectors": [[1]]}', "$.collection", "collection", False),
        (b'{"vectors": [[1]]}', "$", None, False),
        (b'{"collection": "c", "vectors": [[1]], "ids": [1]}', "$", "ids", True),
        (b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "$", None, False),
    ],
)
def test_decoder_refuses_and_names_the_path(raw: bytes, path: str, key: str | None, unknown: bool) -> None:
    with pytest.raises(w.WireError) as info:
        w.decode(raw, w.SearchRequest)
    err = info.value
    assert (err.path, err.key, err.unknown, err.malformed) == (path, key, unknown, False)


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b"nul", b'{"collection": "\xff"}'])
def test_malformed_json(raw: bytes) -> None:
    with pytest.raises(w.WireError) as info:
        w.decode(raw, w.SearchRequest)
    assert info.value.malformed and info.value.message


def test_messages_never_echo_the_input() -> None:
    secret = "x" * 5000
    for raw in (
        json.dumps({"collection": ["c"], "vectors": [[1]], "filter": secret}).encode(),
        json.dumps({"collection": "c", "vectors": [[secret]]}).encode(),
        json.dumps({"collection": "c", "vectors": [[1]], "ids": [secret]}).encode(),
    ):
        with pytest.raises(w.WireError) as info:
            w.decode(raw, w.SearchRequest)
        assert "xxxx" not in str(info.value) and len(str(info.value)) < 200


def test_non_finite_floats_encode_as_null() -> None:
    hit = w.Hit(id=1, distance=float("inf"), partition="p", fields={"x": float("nan")})
    assert json.loads(w.encode(hit)) == {"id": 1, "distance": None, "partition": "p", "fields": {"x": None}}


# --------------------------------------------------------------------------------- hypothesis

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
segment_ids = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
texts = st.text(max_size=30)
counts = st.integers(min_value=0, max_value=2**62)
finite = st.floats(allow_nan=False, allow_infinity=False)

reloading = st.builds(w.Reloading, fields=st.tuples(names) | st.just(()), dynamic_field=st.booleans())
held = st.builds(
    w.HeldSegment,
    collection=names,
    partition=names,
    segment=segment_ids,
    state=st.sampled_from(["loading", "loaded", "failed"]),
    reason=texts,
    message=texts,
    bytes=counts,
    rows=counts,
    fields=st.lists(names, max_size=4).map(tuple),
    dynamic_field=st.booleans(),
    reloading=st.just(w.UNSET) | reloading,
)
distributions = st.builds(
    w.Distribution,
    node=texts,
    boot_id=texts,
    capacity=st.builds(
        w.Capacity,
        memory_limit_bytes=counts,
        used_bytes=counts,
        reserved_bytes=counts,
        threshold=st.floats(min_value=0.01, max_value=1.0),
    ),
    segments=st.lists(held, max_size=6).map(tuple),
)
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | texts
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
searches = st.builds(
    w.SearchRequest,
    collection=names,
    vectors=st.lists(st.lists(finite, min_size=1, max_size=4), min_size=1, max_size=3),
    partitions=st.none() | st.lists(names, max_size=4).map(tuple),
    anns_field=st.none() | names,
    top_k=st.integers(1, 16384),
    filter=st.none() | texts,
    output_fields=st.none() | st.lists(names, max_size=4).map(tuple),
    ef=st.none() | st.integers(1, 65536),
)
hits = st.builds(
    w.Hit,
    id=st.integers(-(2**63), 2**63 - 1) | texts,
    distance=finite,
    partition=names,
    fields=st.dictionaries(names, json_values, max_size=3),
)
bodies: st.SearchStrategy[Any] = st.one_of(
    distributions,
    searches,
    st.builds(w.SearchAnswer, results=st.lists(st.lists(hits, max_size=3), max_size=3)),
    st.builds(
        w.LoadRequest,
        collection=names,
        partition=names,
        segments=st.lists(segment_ids, max_size=4).map(tuple),
        fields=st.none() | st.lists(names, max_size=4).map(tuple),
        skip_dynamic_field=st.booleans(),
    ),
    st.builds(
        w.LoadAnswer,
        results=st.lists(
            st.builds(
                w.LoadResult,
                segment=segment_ids,
                state=st.sampled_from(["loading", "loaded", "refused"]),
                reason=texts,
                message=texts,
            ),
            max_size=4,
        ).map(tuple),
    ),
    st.builds(
        w.ReleaseRequest,
        collection=names,
        segments=st.none()
        | st.lists(st.builds(w.ReleaseTarget, partition=names, segment=segment_ids), max_size=3).map(tuple),
    ),
    st.builds(
        w.GetRequest,
        collection=names,
        ids=st.lists(st.integers(-(2**63), 2**63 - 1) | texts, max_size=4),
        output_fields=st.none() | st.lists(names, max_size=4).map(tuple),
    ),
    st.builds(w.RowsAnswer, rows=st.lists(st.dictionaries(names, json_values, max_size=3), max_size=3)),
    st.builds(w.ErrorBody, error=st.builds(w.ErrorDetail, reason=names, message=texts)),
)


summaries = st.builds(
    w.SegmentSummary,
    id=segment_ids,
    rows=counts,
    bytes=st.dictionaries(names, counts, max_size=3),
    total_bytes=counts,
    memory_bytes=st.dictionaries(names, counts, max_size=3),
    compacted_from=st.lists(segment_ids, max_size=3).map(tuple),
    generation=counts,
)
catalogs = st.builds(
    w.CollectionCatalog,
    name=st.just("book"),
    schema=st.just(SCHEMA),
    partitions=st.lists(
        st.builds(
            w.PartitionCatalog,
            name=names,
            segments=st.lists(summaries, max_size=3).map(tuple),
            retired=st.lists(
                st.builds(
                    w.RetiredSummary,
                    id=segment_ids,
                    rows=counts,
                    replaced_by=st.lists(segment_ids, max_size=2).map(tuple),
                    compacted_from=st.lists(segment_ids, max_size=2).map(tuple),
                ),
                max_size=3,
            ).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
    deltas=st.builds(w.DeltaSummary, count=counts, newest_ts=counts),
    generation=counts,
)
bodies = st.one_of(bodies, catalogs)


def test_a_catalog_without_the_change_data_keys_reads_as_unchanged_data() -> None:
    """What a storage (or a querynode) of an earlier version answers: nothing compacted, retired
    or deleted, generation 0."""
    doc = json.loads(_examples()["CollectionCatalog"])
    del doc["deltas"], doc["generation"], doc["partitions"][0]["retired"]
    for seg in doc["partitions"][0]["segments"]:
        seg.pop("compactedFrom", None)
        seg.pop("generation", None)
    catalog = w.convert(doc, w.CollectionCatalog)
    assert (catalog.generation, catalog.deltas) == (0, w.NO_DELTAS)
    assert catalog.partitions[0].retired == ()
    assert all(s.compacted_from == () and s.generation == 0 for s in catalog.partitions[0].segments)


@settings(max_examples=300, deadline=None)
@given(bodies)
def test_generated_values_round_trip(value: w.Wire) -> None:
    assert w.decode(w.encode(value), type(value)) == value


def test_answers_have_no_silent_defaults() -> None:
    """A distribution item without `bytes` is an error, not 0 bytes (the operator used to read
    missing keys as defaults); only `reloading` may be absent."""
    body = json.loads(_examples()["Distribution"])
    del body["segments"][1]["bytes"]
    with pytest.raises(w.WireError) as info:
        w.convert(body, w.Distribution)
    assert info.value.path == "$.segments[1]" and "bytes" in info.value.message
