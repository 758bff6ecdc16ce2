"""Storage primitives for changing data: row timestamps, deltas, retirement, the generation."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vectorload.storage.api import TS_FIELD, StorageError
from vectorload.storage.deltas import DeleteSet, newest_rows, read_delta
from vectorload.storage.generation import GENERATION_FILE, collection_lock
from vectorload.storage.manifest import MANIFEST_NAME, retired_marker_name
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.tso import HybridClock, compose, logical, physical_ms
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing.storage import writer_with_collection

MakeInputs = Callable[..., dict[str, Any]]

# the keys of a manifest written by earlier versions: a segment written without the new features
V1_KEYS = {
    "formatVersion",
    "collection",
    "partition",
    "segmentId",
    "rows",
    "createdAt",
    "files",
    "indexParams",
}


def _manifest_json(root: Path, partition: str, segment: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "book" / partition / segment / MANIFEST_NAME).read_text())
    return data


# ------------------------------------------------------------------------------- timestamps


def test_row_timestamps_are_written_and_read(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    ts = np.arange(1000, 1010, dtype=np.int64)
    m = writer.write_segment("book", "_default", "s", **make_inputs(rows=10), num_threads=1, timestamps=ts)
    assert m.has_timestamps and (m.min_ts, m.max_ts) == (1000, 1009)
    assert m.files[TS_FIELD].path == "$ts.npy"
    reader = FilesystemReader(root)
    (read,) = reader.segments("book", "_default")
    assert read == m
    assert np.array_equal(np.load(reader.segment_file_path(m, TS_FIELD)), ts)
    reader.verify_segment(m)
    doc = _manifest_json(root, "_default", "s")
    assert doc["minTs"] == 1000 and doc["maxTs"] == 1009 and doc["files"]["$ts"]["path"] == "$ts.npy"
    # every load reads the timestamps, whatever its field subset
    assert m.bytes_for(frozenset({"book_id", "intro"}), False) == sum(
        m.files[k].bytes for k in ("book_id", "intro", TS_FIELD)
    )


def test_segment_without_timestamps_has_exactly_the_old_keys(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    m = writer.write_segment("book", "_default", "s", **make_inputs(rows=5), num_threads=1)
    doc = _manifest_json(root, "_default", "s")
    assert set(doc) == V1_KEYS | {"generation"}
    assert TS_FIELD not in doc["files"] and not m.has_timestamps and m.min_ts is None
    # a manifest of an earlier version (no generation) reads with the defaults
    del doc["generation"]
    path = root / "book" / "_default" / "s" / MANIFEST_NAME
    path.write_text(json.dumps(doc))
    (old,) = FilesystemReader(root).segments("book", "_default")
    assert (old.generation, old.compacted_from, old.min_ts, old.deltas_applied) == (0, (), None, 0)


@pytest.mark.parametrize(
    ("ts", "message"),
    [
        ([-1, 2, 3, 4, 5], "timestamp -1 is negative"),
        ([1, 2, 3], "has 3 rows, expected 5"),
        ([1.5, 2, 3, 4, 5], "expected int64 values"),
        ([[1, 2, 3, 4, 5]], "1-D"),
    ],
)
def test_bad_timestamps_are_refused_naming_ts(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs, ts: object, message: str
) -> None:
    with pytest.raises(StorageError, match=message) as err:
        writer.write_segment("book", "_default", "s", **make_inputs(rows=5), num_threads=1, timestamps=ts)
    assert err.value.reason == "InvalidArgument" and "'$ts'" in err.value.message
    assert FilesystemReader(root).segments("book", "_default") == []


def test_hybrid_clock_is_strictly_increasing_and_readable() -> None:
    wall = [1_700_000_000.0]
    clock = HybridClock(lambda: wall[0])
    a, b = clock.now(), clock.now()
    assert b == a + 1 and physical_ms(a) == 1_700_000_000_000 and logical(b) == 1
    wall[0] -= 5  # the wall clock steps back: timestamps still grow
    c = clock.now()
    assert c > b
    clock.observe(compose(1_800_000_000_000))
    assert clock.now() > compose(1_800_000_000_000)
    with pytest.raises(ValueError):
        compose(-1)


# ------------------------------------------------------------------------------- generation


def test_generation_moves_on_every_change(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    reader = FilesystemReader(root)
    g0 = reader.generation("book")
    assert g0 >= 1  # creating `_default` moved it
    writer.create_partition("book", "novel")
    assert reader.generation("book") == g0 + 1
    writer.create_partition("book", "novel")  # idempotent: nothing changed
    assert reader.generation("book") == g0 + 1
    m = writer.write_segment("book", "novel", "s", **make_inputs(rows=5), num_threads=1)
    assert m.generation == g0 + 2 == reader.generation("book")
    d = writer.write_delta("book", [1, 2], 7)
    assert d.seq == g0 + 3 == reader.generation("book")
    with collection_lock(root / "book") as locked:
        assert writer.retire_locked(locked, "novel", ["s"], ()) == 1
        assert writer.retire_locked(locked, "novel", ["s"], ()) == 0  # a marker is written once
    assert reader.generation("book") == g0 + 4


def test_a_collection_of_an_earlier_version_has_generation_zero(root: Path, make_inputs: MakeInputs) -> None:
    writer = writer_with_collection(root)
    (root / "book" / GENERATION_FILE).unlink()
    assert FilesystemReader(root).generation("book") == 0
    (root / "book" / GENERATION_FILE).write_text("{not json")
    with pytest.raises(StorageError) as err:
        FilesystemReader(root).generation("book")
    assert err.value.reason == "CorruptManifest" and GENERATION_FILE in err.value.message
    (root / "book" / GENERATION_FILE).unlink()
    writer.write_segment("book", "_default", "s", **make_inputs(rows=3), num_threads=1)
    assert FilesystemReader(root).generation("book") == 1


def test_change_token_sees_a_change_whose_writer_died_before_moving_the_generation(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    reader = FilesystemReader(root)
    writer.write_segment("book", "_default", "s", **make_inputs(rows=3), num_threads=1)
    before = reader.change_token("book")
    assert before.startswith(f"g{reader.generation('book')}-")
    assert reader.change_token("book") == before  # stable while nothing changes
    gen = reader.generation("book")
    # a retirement marker written by a writer that died before bumping the generation
    marker = root / "book" / "_default" / retired_marker_name("s")
    marker.write_text(json.dumps({"formatVersion": 1, "segmentId": "s", "replacedBy": [], "retiredAt": "x"}))
    st_ = os.stat(marker.parent)
    os.utime(marker.parent, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000))  # a later clock tick
    assert reader.generation("book") == gen
    assert reader.change_token("book") != before


# ----------------------------------------------------------------------------------- deltas


def test_deltas_are_ordered_deduplicated_and_verified(writer: CollectionWriter, root: Path) -> None:
    writer.create_partition("book", "novel")
    d1 = writer.write_delta("book", [5, 3, 5], [10, 20, 30])
    d2 = writer.write_delta("book", np.array([7]), 40, partition="novel")
    reader = FilesystemReader(root)
    assert [d.delta_id for d in reader.deltas("book")] == [d1.delta_id, d2.delta_id]
    assert d1.seq < d2.seq and d1.delta_id.startswith(f"{d1.seq:016d}-")
    assert (d1.partition, d1.rows, d1.min_ts, d1.max_ts) == (None, 2, 20, 30)
    assert d2.partition == "novel"
    schema = reader.schema("book")
    keys, ts = read_delta(reader, d1, schema)
    assert keys.tolist() == [3, 5] and ts.tolist() == [20, 30]  # key 5 keeps its newest delete
    # a changed file is caught by its sha256
    path = root / reader.delta_file_rel_path(d1, TS_FIELD)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError) as err:
        read_delta(reader, d1, schema)
    assert err.value.reason == "ChecksumMismatch"


def test_varchar_primary_key_deltas(tmp_path: Path) -> None:
    writer = writer_with_collection(tmp_path / "r", pk_type="varchar")
    d = writer.write_delta("book", ["b", "a", "b"], 5)
    keys, ts = read_delta(writer.reader, d, writer.reader.schema("book"))
    assert keys.tolist() == ["a", "b"] and ts.tolist() == [5, 5]
    with pytest.raises(StorageError, match="expected a string"):
        writer.write_delta("book", [1], 5)


@pytest.mark.parametrize(
    ("keys", "ts", "partition", "reason", "message"),
    [
        ([], 5, None, "InvalidArgument", "no primary keys"),
        ([1], 0, None, "InvalidArgument", "must be > 0"),
        ([1, 2], [3], None, "InvalidArgument", "1 timestamps for 2 primary keys"),
        (["x"], 5, None, "InvalidArgument", "expected int64 values"),
        ([1], True, None, "InvalidArgument", "must be an integer"),
        ("12", 5, None, "InvalidArgument", "must be a sequence"),
        ([1], 5, "nope", "PartitionNotFound", "partition 'nope' not found"),
        ([1], 5, "bad name", "InvalidArgument", "partition"),
    ],
)
def test_bad_deltas_are_refused_and_leave_nothing(
    writer: CollectionWriter, root: Path, keys: Any, ts: Any, partition: str | None, reason: str, message: str
) -> None:
    gen = writer.reader.generation("book")
    with pytest.raises(StorageError, match=message) as err:
        writer.write_delta("book", keys, ts, partition=partition)
    assert err.value.reason == reason
    assert writer.reader.deltas("book") == [] and writer.reader.generation("book") == gen
    staging = root / "book" / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_a_delta_published_by_a_writer_killed_before_the_generation_moved_is_repaired(
    writer: CollectionWriter, root: Path
) -> None:
    d1 = writer.write_delta("book", [1], 5)
    # simulate the crash window: the generation file still says the value before d1
    (root / "book" / GENERATION_FILE).write_text(json.dumps({"formatVersion": 1, "generation": d1.seq - 1}))
    d2 = writer.write_delta("book", [2], 6)
    assert d2.seq == d1.seq + 1  # d1's seq is never handed out again
    assert FilesystemReader(root).generation("book") == d2.seq


# ------------------------------------------------------------------------------- retirement


def test_retired_segments_leave_the_live_listing_but_stay_readable(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    a = writer.write_segment("book", "_default", "a", **make_inputs(rows=3), num_threads=1)
    b = writer.write_segment("book", "_default", "b", **make_inputs(rows=3, first_pk=3), num_threads=1)
    with collection_lock(root / "book") as locked:
        writer.retire_locked(locked, "_default", ["a"], ("b",))
    reader = FilesystemReader(root)
    assert [m.segment_id for m in reader.segments("book", "_default")] == ["b"]
    (retired,) = reader.retired_segments("book", "_default")
    assert (
        retired.manifest == a
        and retired.replaced_by == ("b",)
        and retired.generation == reader.generation("book")
    )
    assert reader.segment("book", "_default", "a") == a and reader.is_retired(a) and not reader.is_retired(b)
    reader.verify_segment(a)
    with collection_lock(root / "book") as locked, pytest.raises(StorageError) as err:
        writer.retire_locked(locked, "_default", ["nope"], ())
    assert err.value.reason == "SegmentNotFound"


# --------------------------------------------------------------------- the rule, as a model

keys_st = st.integers(min_value=0, max_value=6)
ts_st = st.integers(min_value=0, max_value=20)
parts_st = st.sampled_from(["p", "q"])


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(keys_st, ts_st, parts_st), max_size=30),
    deletes=st.lists(
        st.tuples(keys_st, st.integers(min_value=1, max_value=20), st.one_of(st.none(), parts_st))
    ),
)
def test_delete_set_and_dedup_match_the_plain_rule(
    rows: list[tuple[int, int, str]], deletes: list[tuple[int, int, str | None]]
) -> None:
    ds = DeleteSet("int64")
    for key, t, part in deletes:  # one add per delete: many small deltas, merged lazily
        ds.add(np.array([key]), np.array([t]), part)
    for key, t, part in rows:
        newest = max([d for k, d, p in deletes if k == key and p in (None, part)], default=-1)
        assert bool(ds.hidden(np.array([key]), np.array([t]), part)[0]) == (newest > t)
    if rows:
        pks = np.array([r[0] for r in rows])
        keep = newest_rows(pks, np.array([r[1] for r in rows]), np.arange(len(rows)))
        for i, (key, t, _) in enumerate(rows):
            best = max((r[1], j) for j, r in enumerate(rows) if r[0] == key)
            assert bool(keep[i]) == (best == (t, i))
    held = {r[0] for r in rows}
    ds.restrict(np.array(sorted(held), dtype=np.int64))
    assert len(ds) <= len(held) * 3  # at most one tombstone per held key and scope
    for key, t, part in rows:  # restricting to held keys changes no answer for held rows
        newest = max([d for k, d, p in deletes if k == key and p in (None, part)], default=-1)
        assert bool(ds.hidden(np.array([key]), np.array([t]), part)[0]) == (newest > t)
