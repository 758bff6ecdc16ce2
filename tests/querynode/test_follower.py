"""`DeltaFollower` over a real storage root: new deltas are found by polling the generation and
read once; a segment registered later applies earlier deltas; the thread finds a delete fast."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from vectorload.storage.compaction import collect_garbage, compact
from vectorload.storage.reader import FilesystemReader, segment_file_rel_path
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.storage import segment_inputs, writer_with_collection
from vectorload_querynode.follower import DeltaFollower


def _segment(writer: CollectionWriter, sid: str, first: int, rows: int = 10, ts0: int | None = 1) -> None:
    ts = None if ts0 is None else np.arange(ts0, ts0 + rows)
    writer.write_segment(
        "book", "_default", sid, **segment_inputs(rows=rows, first_pk=first), num_threads=1, timestamps=ts
    )


def _register(follower: DeltaFollower, reader: FilesystemReader, sid: str) -> None:
    m = reader.segment("book", "_default", sid)
    pks = np.load(reader.backend.local_path(segment_file_rel_path(m, "book_id")))
    follower.segment_loaded(reader.schema("book"), m, pks)


def _visible(follower: DeltaFollower, reader: FilesystemReader, sid: str) -> list[int]:
    m = reader.segment("book", "_default", sid)
    pks = np.load(reader.backend.local_path(segment_file_rel_path(m, "book_id")))
    hidden = follower.hidden("book", "_default", sid)
    return sorted(int(k) for k in (pks if hidden is None else pks[~hidden]))


def test_polling_applies_new_deltas_once_and_late_segments_apply_old_ones(tmp_path: Path) -> None:
    root = tmp_path / "r"
    writer = writer_with_collection(root)
    reader = FilesystemReader(root)
    _segment(writer, "a", 0)
    follower = DeltaFollower(reader)
    _register(follower, reader, "a")
    assert follower.poll_once() == 0 and _visible(follower, reader, "a") == list(range(10))
    writer.write_delta("book", [1, 2, 50], 100)  # 50: not held here yet
    assert follower.poll_once() == 1 and _visible(follower, reader, "a") == [0, *range(3, 10)]
    reads = follower.delta_reads
    assert follower.poll_once() == 0 and follower.delta_reads == reads  # nothing new: one small read
    # a segment loaded later: the delete of 50 applies although no held row had that key before
    _segment(writer, "b", 50, ts0=5)
    _register(follower, reader, "b")
    assert _visible(follower, reader, "b") == list(range(51, 60))
    assert follower.delta_reads == reads  # served from the cache of parsed deltas
    # an upsert of 3: delete at 200, new row at 200 in a new segment
    writer.write_delta("book", [3], 200)
    inputs = segment_inputs(rows=1, first_pk=3)
    writer.write_segment("book", "_default", "c", **inputs, num_threads=1, timestamps=[200])
    follower.poll_once()
    _register(follower, reader, "c")
    assert 3 not in _visible(follower, reader, "a") and _visible(follower, reader, "c") == [3]
    stats = follower.stats()
    assert stats.collections == 1 and stats.tombstones >= 3 and stats.deltas_applied == 2
    follower.segment_released("book", "_default", "b")
    follower.segment_released("book", "_default", "c")
    follower.segment_released("book", "_default", "a")
    assert follower.stats().collections == 0 and follower.visibility("book") is None


def test_the_thread_finds_a_delete_within_a_few_polls_and_follows_compaction(tmp_path: Path) -> None:
    root = tmp_path / "r"
    writer = writer_with_collection(root)
    reader = FilesystemReader(root)
    _segment(writer, "a", 0, ts0=None)
    _segment(writer, "b", 10, ts0=None)
    follower = DeltaFollower(reader, interval=0.02)
    for sid in ("a", "b"):
        _register(follower, reader, sid)
    follower.start()
    try:
        started = time.monotonic()
        writer.write_delta("book", [4, 14], 7)
        wait_for(
            "the delete applied", lambda: 4 not in _visible(follower, reader, "a"), timeout=5, interval=0.005
        )
        took = time.monotonic() - started
        assert 14 not in _visible(follower, reader, "b")
        print(f"delete seen by the follower after {took * 1e3:.0f} ms (interval 20 ms)")
        # the compacted copy beside its sources: each key visible once
        result = compact(root, "book", "_default", ["a", "b"], num_threads=1)
        assert result.segment is not None
        _register(follower, reader, result.segment.segment_id)
        union = [k for sid in ("a", "b", result.segment.segment_id) for k in _visible(follower, reader, sid)]
        assert sorted(union) == sorted(set(range(20)) - {4, 14})
        for sid in ("a", "b"):
            follower.segment_released("book", "_default", sid)
        assert _visible(follower, reader, result.segment.segment_id) == sorted(set(range(20)) - {4, 14})
        collect_garbage(root, "book", grace_s=0, sealed_through=10**6)
        wait_for("GC'd deltas forgotten", lambda: follower.stats().deltas_applied == 0, timeout=5)
    finally:
        follower.close()
