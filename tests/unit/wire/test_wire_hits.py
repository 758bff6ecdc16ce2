"""The binary search types (MessagePack) and hit columns: round trips, refusals, the top-k rule."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vectorload.wire import hits as hits_module
from vectorload.wire import querynode as wire
from vectorload.wire.hits import HitColumns, merge, top_k, top_k_rows


def test_packed_search_request_round_trip() -> None:
    vectors = np.arange(6, dtype="<f4").reshape(2, 3)
    body = wire.PackedSearchRequest(
        collection="book", dim=3, vectors=vectors.tobytes(), partitions=("novel",), anns_field="book_intro",
        top_k=5, filter="word_count > 10", output_fields=("title",), ef=64,
    )  # fmt: skip
    raw = wire.encode_msgpack(body)
    assert wire.decode_msgpack(raw, wire.PackedSearchRequest) == body
    plain = msgspec.msgpack.decode(raw)
    assert plain["topK"] == 5 and plain["annsField"] == "book_intro"  # camelCase as in JSON
    assert np.array_equal(np.frombuffer(plain["vectors"], "<f4").reshape(2, 3), vectors)
    minimal = wire.PackedSearchRequest(collection="book", dim=3, vectors=b"\0" * 12)
    assert wire.decode_msgpack(wire.encode_msgpack(minimal), wire.PackedSearchRequest) == minimal


@pytest.mark.parametrize(
    "ids", [np.array([7, -2, 2**62], dtype=np.int64), np.array(["b", "a", ""], dtype=object)]
)
def test_packed_search_answer_round_trip(ids: Any) -> None:
    columns = HitColumns(
        counts=np.array([2, 0, 1]),
        ids=ids,
        distances=np.array([0.25, 0.5, 3.0e38], dtype=np.float32),
        partitions=("novel", "poetry"),
        partition_index=np.array([1, 0, 1]),
        fields=[{"title": "x"}, {}, {"title": None}],
    )
    packed = columns.pack()
    decoded = wire.decode_msgpack(wire.encode_msgpack(packed), wire.PackedSearchAnswer)
    assert decoded == packed
    back = HitColumns.unpack(decoded)
    assert back.ids.tolist() == ids.tolist() and back.distances.tolist() == columns.distances.tolist()
    assert back.counts.tolist() == [2, 0, 1] and back.partition_index.tolist() == [1, 0, 1]
    assert back.counts.dtype == np.int64 and back.partition_index.dtype == np.int64  # index arithmetic
    hits = back.hits()
    assert [[h.id for h in q] for q in hits] == [ids.tolist()[:2], [], ids.tolist()[2:]]
    assert hits[0][0] == wire.Hit(id=ids[0], distance=0.25, partition="poetry", fields={"title": "x"})
    assert HitColumns.from_hits(hits).hits() == hits
    # the JSON answer, encoded query by query, is the very bytes of the whole SearchAnswer
    assert columns.encode_json() == wire.encode(wire.SearchAnswer(results=columns.hits()))
    assert wire.decode(columns.encode_json(), wire.SearchAnswer).results == columns.hits()


def test_packed_answer_without_fields_gives_empty_field_dicts() -> None:
    columns = HitColumns(np.array([1]), np.array([3]), np.array([1.5], np.float32), ("p",), np.array([0]))
    packed = wire.decode_msgpack(wire.encode_msgpack(columns.pack()), wire.PackedSearchAnswer)
    assert packed.fields is None
    assert HitColumns.unpack(packed).hits() == [[wire.Hit(id=3, distance=1.5, partition="p", fields={})]]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"ids": b"\0" * 7}, "$.ids"),  # not whole int64 values
        ({"ids": b"\0" * 16}, "$.ids"),  # 2 ids for 1 hit
        ({"distances": b""}, "$.distances"),
        ({"partitionIndex": (5).to_bytes(4, "little")}, "$.partitionIndex"),
        ({"fields": [{}, {}]}, "$.fields"),
        ({"distances": np.float32("nan").tobytes()}, "$.distances"),
    ],
)
def test_unpack_refuses_columns_that_do_not_fit(change: dict[str, Any], path: str) -> None:
    good = {
        "counts": (1).to_bytes(4, "little"),
        "ids": (9).to_bytes(8, "little"),
        "distances": np.float32(1).tobytes(),
        "partitions": ["p"],
        "partitionIndex": bytes(4),
    }
    packed = wire.decode_msgpack(msgspec.msgpack.encode({**good, **change}), wire.PackedSearchAnswer)
    with pytest.raises(wire.WireError) as info:
        HitColumns.unpack(packed)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("raw", "malformed", "path"),
    [
        (b"\xc1", True, "$"),
        (msgspec.msgpack.encode({"collection": "b", "dim": 2, "vectors": "text"}), False, "$.vectors"),
        (msgspec.msgpack.encode({"collection": "b", "dim": 2, "vectors": b"", "top_k": 3}), False, "$"),
        (msgspec.msgpack.encode([1, 2]), False, "$"),
    ],
)
def test_decode_msgpack_errors_name_the_path(raw: bytes, malformed: bool, path: str) -> None:
    with pytest.raises(wire.WireError) as info:
        wire.decode_msgpack(raw, wire.PackedSearchRequest)
    assert info.value.malformed is malformed and info.value.path == path


def reference(candidates: list[tuple[int, float, Any]], nq: int, k: int) -> list[list[int]]:
    """The rule in plain Python: per query, sort by (distance, str(id)) stably, keep first copies."""
    out: list[list[int]] = []
    for q in range(nq):
        mine = sorted(
            ((d, str(pk), i, pk) for i, (qq, d, pk) in enumerate(candidates) if qq == q), key=lambda c: c[:2]
        )
        seen: set[Any] = set()
        kept: list[int] = []
        for _, _, i, pk in mine:
            if pk not in seen and len(kept) < k:
                seen.add(pk)
                kept.append(i)
        out.append(kept)
    return out


candidate = st.tuples(
    st.integers(0, 3), st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5]), st.integers(-3, 12)
)  # few distinct distances and ids: ties and duplicates everywhere


@settings(max_examples=300, deadline=None)
@given(st.lists(candidate, max_size=40), st.integers(1, 6), st.booleans())
def test_top_k_rule_matches_the_python_reference(
    cands: list[tuple[int, float, int]], k: int, text: bool
) -> None:
    nq = 4
    values: list[Any] = [f"k{pk}" if text else pk for _, _, pk in cands]
    if text:
        ids: Any = np.empty(len(values), dtype=object)
        ids[:] = values
    else:
        ids = np.asarray(values, dtype=np.int64)
    query = np.asarray([q for q, _, _ in cands], dtype=np.int64)
    dists = np.asarray([d for _, d, _ in cands], dtype=np.float32)
    expected = reference([(q, d, v) for (q, d, _), v in zip(cands, values, strict=True)], nq, k)
    for small in (0, 10**6):  # the numpy rule and the Python-list one for few candidates
        hits_module.SMALL = small
        try:
            kept, counts = top_k(query, dists, ids, nq, k)
        finally:
            hits_module.SMALL = 128
        assert counts.tolist() == [len(e) for e in expected]
        assert kept.tolist() == [i for e in expected for i in e]


def test_ties_order_by_the_keys_text_not_their_value() -> None:
    # 10 < 9 as text, as the JSON merge always did; trailing NULs in string keys are kept distinct
    kept, _ = top_k(np.zeros(3, np.int64), np.ones(3, np.float32), np.array([9, 10, 9]), 1, 3)
    assert kept.tolist() == [1, 0]
    ids = np.empty(2, dtype=object)
    ids[:] = ["a\0", "a"]
    kept, counts = top_k(np.zeros(2, np.int64), np.ones(2, np.float32), ids, 1, 5)
    assert kept.tolist() == [1, 0] and counts.tolist() == [2]


def test_merge_of_node_answers_keeps_each_key_once() -> None:
    a = HitColumns(np.array([2, 1]), np.array([1, 2, 3]), np.array([0.5, 0.7, 0.1], np.float32), ("x",),
                   np.array([0, 0, 0]))  # fmt: skip
    b = HitColumns(
        np.array([2, 0]), np.array([2, 4]), np.array([0.6, 0.6], np.float32), ("y",), np.array([0, 0])
    )
    merged = merge([a, b], 2).hits()
    assert [[(h.id, h.partition) for h in q] for q in merged] == [[(1, "x"), (2, "y")], [(3, "x")]]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 5),
    st.integers(0, 12),
    st.integers(1, 8),
    st.lists(st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.5, 3.0e38]), min_size=60, max_size=60),
    st.lists(st.integers(-2, 9), min_size=60, max_size=60),
)
def test_top_k_rows_is_top_k_on_rows(nq: int, width: int, k: int, dists: list[float], pks: list[int]) -> None:
    d = np.asarray(dists[: nq * width], dtype=np.float32).reshape(nq, width)
    ids = np.asarray(pks[: nq * width], dtype=np.int64).reshape(nq, width)
    hits_module.SMALL = 0  # the array versions (small inputs would take the Python one)
    try:
        kept, counts = top_k_rows(d, ids, k)
        want_kept, want_counts = top_k(np.repeat(np.arange(nq), width), d.reshape(-1), ids.reshape(-1), nq, k)
    finally:
        hits_module.SMALL = 128
    assert kept.tolist() == want_kept.tolist() and counts.tolist() == want_counts.tolist()
