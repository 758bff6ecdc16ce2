"""`Visibility`: tombstones bounded by held keys, hidden masks for deletes and duplicates, and a
plain model of the rule it must agree with (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vectorload_querynode.visibility import HeldRows, Visibility


def rows(partition: str, sid: str, pks: list[int], ts: list[int]) -> HeldRows:
    return HeldRows(partition, sid, np.asarray(pks, dtype=np.int64), np.asarray(ts, dtype=np.int64))


def delta(
    keys: list[int], ts: int, partition: str | None = None
) -> tuple[np.ndarray, np.ndarray, str | None]:
    return np.asarray(keys, dtype=np.int64), np.full(len(keys), ts, dtype=np.int64), partition


def visible(v: Visibility, partition: str, sid: str) -> list[int]:
    seg = v.segments[(partition, sid)]
    return sorted(int(k) for k in seg.pks[~seg.hidden])


def test_deletes_hide_older_rows_only_and_are_bounded_by_held_keys() -> None:
    v = Visibility("int64")
    v.add(rows("p", "a", [1, 2, 3], [10, 10, 30]), [])
    changed = v.apply([("d1", delta([1, 3, 99], 20))])  # 99 is not held: no tombstone kept
    assert changed == {("p", "a")} and visible(v, "p", "a") == [2, 3]  # 3 is newer than the delete
    assert len(v.tombstones) == 2
    assert v.apply([("d1", delta([2], 50))]) == set()  # a delta is applied once (by id)
    # a segment loaded later applies the deletes: also the one whose tombstone was not kept
    v.add(rows("p", "b", [99, 4], [5, 5]), [delta([1, 3, 99], 20)])
    assert visible(v, "p", "b") == [4]
    # releasing the segment drops the tombstones of keys no held row has any more
    v.remove("p", "b")
    assert len(v.tombstones) == 2


def test_partition_scoped_deletes() -> None:
    v = Visibility("int64")
    v.add(rows("p", "a", [1, 2], [1, 1]), [])
    v.add(rows("q", "b", [1, 2], [1, 1]), [])
    v.apply([("d", delta([1], 5, "q")), ("e", delta([2], 5))])
    assert visible(v, "p", "a") == [1] and visible(v, "q", "b") == []


def test_duplicates_resolve_to_the_newest_row_and_come_back_when_it_is_released() -> None:
    v = Visibility("int64")
    v.add(rows("p", "a", [1, 2, 3], [10, 10, 10]), [])
    v.add(rows("p", "b", [2, 3], [20, 5]), [])  # an upsert of 2 (newer) and an older 3
    assert visible(v, "p", "a") == [1, 3] and visible(v, "p", "b") == [2]
    # equal timestamps (a compaction's output beside its sources): one copy, the larger id
    v.add(rows("p", "c", [1], [10]), [])
    assert visible(v, "p", "a") == [3] and visible(v, "p", "c") == [1]
    v.remove("p", "c")
    assert visible(v, "p", "a") == [1, 3]
    v.remove("p", "b")
    assert visible(v, "p", "a") == [1, 2, 3]


def test_varchar_keys() -> None:
    v = Visibility("varchar")
    v.add(HeldRows("p", "a", np.asarray(["x", "y"], dtype=object), np.asarray([1, 1])), [])
    v.apply([("d", (np.asarray(["y"], dtype=object), np.asarray([2]), None))])
    seg = v.segments[("p", "a")]
    assert seg.pks[~seg.hidden].tolist() == ["x"]


@settings(max_examples=200, deadline=None)
@given(
    segments=st.lists(
        st.lists(
            st.tuples(st.integers(0, 8), st.integers(0, 9)), min_size=1, max_size=6, unique_by=lambda r: r[0]
        ),
        min_size=1,
        max_size=4,
    ),
    deletes=st.lists(
        st.tuples(st.integers(0, 8), st.integers(1, 10), st.sampled_from([None, "p", "q"])), max_size=6
    ),
    removed=st.sets(st.integers(0, 3)),
    data=st.data(),
)
def test_visible_rows_match_the_plain_rule(
    segments: list[list[tuple[int, int]]],
    deletes: list[tuple[int, int, str | None]],
    removed: set[int],
    data: st.DataObject,
) -> None:
    """Whatever the order of loads, deletes and releases: the visible rows are the model's."""
    parts = [data.draw(st.sampled_from(["p", "q"])) for _ in segments]
    v = Visibility("int64")
    published: list[tuple[np.ndarray, np.ndarray, str | None]] = []
    events = [("load", i) for i in range(len(segments))] + [("delete", j) for j in range(len(deletes))]
    order = data.draw(st.permutations(events))
    for kind, i in order:
        if kind == "load":
            seg = segments[i]
            v.add(rows(parts[i], f"s{i}", [k for k, _ in seg], [t for _, t in seg]), published)
        else:
            key, t, part = deletes[i]
            published.append(delta([key], t, part))
            v.apply([(f"d{i}", published[-1])])
    for i in sorted(removed):
        if i < len(segments):
            v.remove(parts[i], f"s{i}")
    held = [i for i in range(len(segments)) if i not in removed]
    for i in held:
        got = set(visible(v, parts[i], f"s{i}"))

        def alive(j: int, key: int, t: int) -> bool:
            newest = max([d for k, d, p in deletes if k == key and p in (None, parts[j])], default=0)
            return newest <= t

        want = set()
        for key, t in segments[i]:
            rivals = [(tt, f"s{j}") for j in held for kk, tt in segments[j] if kk == key and alive(j, kk, tt)]
            if alive(i, key, t) and max(rivals) == (t, f"s{i}"):
                want.add(key)
        assert got == want, (i, segments, deletes, order)
