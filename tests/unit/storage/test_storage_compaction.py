"""Compaction (merge, dedup, deletes, lineage, retirement), crash safety under kill -9, and GC."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload.storage.api import TS_FIELD, StorageError
from vectorload.storage.cli import compact_main
from vectorload.storage.compaction import STEPS, collect_garbage, compact, pick_small_segments
from vectorload.storage.generation import collection_lock
from vectorload.storage.hnsw import open_index
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing.storage import segment_inputs, visible_rows, writer_with_collection


def _write(
    writer: CollectionWriter, sid: str, rows: int, first_pk: int, ts0: int | None, seed: int = 0
) -> None:
    ts = None if ts0 is None else np.arange(ts0, ts0 + rows, dtype=np.int64)
    inputs = segment_inputs(rows=rows, seed=seed, first_pk=first_pk)
    inputs["scalars"]["title"] = [f"{sid}-{i}" for i in range(rows)]
    writer.write_segment("book", "_default", sid, **inputs, num_threads=1, timestamps=ts)


@pytest.fixture
def three(writer: CollectionWriter) -> CollectionWriter:
    """a: keys 0-19 at ts 1-20; b: keys 10-29 at ts 100-119 (newer copies of 10-19); c: keys
    100-104 without timestamps; deletes of 0, 1, 2 and 15 at ts 50 (15's row in b is newer)."""
    _write(writer, "a", 20, 0, 1)
    _write(writer, "b", 20, 10, 100, seed=1)
    _write(writer, "c", 5, 100, None, seed=2)
    writer.write_delta("book", [0, 1, 2, 15], 50)
    return writer


def test_compaction_merges_dedups_applies_deletes_and_retires(three: CollectionWriter, root: Path) -> None:
    before = visible_rows(root)
    reader = FilesystemReader(root)
    steps: list[str] = []
    result = compact(root, "book", "_default", ["c", "a", "b"], num_threads=1, on_step=steps.append)
    assert steps == list(STEPS)
    assert (result.rows_in, result.rows_out, result.deleted_rows, result.duplicate_rows) == (45, 32, 3, 10)
    new = result.segment
    assert new is not None and new.compacted_from == ("a", "b", "c") and not result.resumed
    assert new.deltas_applied == reader.deltas("book")[0].seq
    assert (new.min_ts, new.max_ts) == (0, 119) and new.has_timestamps
    assert new.index_params == reader.segment("book", "_default", "a").index_params
    # live: only the new segment; the sources are retired naming it, and stay readable
    assert [m.segment_id for m in reader.segments("book", "_default")] == [new.segment_id]
    retired = reader.retired_segments("book", "_default")
    assert [(r.manifest.segment_id, r.replaced_by) for r in retired] == [
        (s, (new.segment_id,)) for s in ("a", "b", "c")
    ]
    reader.verify_segment(new)
    # a reader sees exactly what it saw before: deletes and duplicates resolved the same way
    assert visible_rows(root) == before
    assert len(before) == 32
    # the rebuilt index holds each kept row's vector (row order = the new segment's rows)
    pks = np.load(reader.segment_file_path(new, "book_id"))
    ts = np.load(reader.segment_file_path(new, TS_FIELD))
    assert sorted(pks.tolist()) == sorted(k for (_, k) in before)
    src = segment_inputs(rows=20, seed=1, first_pk=10)["vectors"]["intro"]
    index = open_index(reader.segment_file_path(new, "intro"), reader.schema("book").field("intro"))  # type: ignore[arg-type]
    row = int(np.flatnonzero(pks == 12)[0])
    assert ts[row] == 102
    assert np.allclose(index.get_items([row])[0], src[2])


def test_compaction_of_a_varchar_key_collection(tmp_path: Path) -> None:
    root = tmp_path / "r"
    writer = writer_with_collection(root, pk_type="varchar")
    for sid, first, t in (("a", 0, 1), ("b", 5, 100)):
        inputs = segment_inputs(rows=10, first_pk=first)
        inputs["primary_keys"] = [f"k{i:03d}" for i in range(first, first + 10)]
        writer.write_segment(
            "book", "_default", sid, **inputs, num_threads=1, timestamps=np.arange(t, t + 10)
        )
    writer.write_delta("book", ["k000", "k007"], 50)
    before = visible_rows(root)
    result = compact(root, "book", "_default", ["a", "b"], num_threads=1)
    assert (result.rows_out, result.deleted_rows, result.duplicate_rows) == (14, 1, 5)
    assert visible_rows(root) == before


def test_a_compaction_that_finds_every_row_deleted_retires_without_a_new_segment(
    writer: CollectionWriter, root: Path
) -> None:
    _write(writer, "a", 4, 0, 1)
    writer.write_delta("book", [0, 1, 2, 3], 10)
    result = compact(root, "book", "_default", ["a"], num_threads=1)
    assert result.segment is None and result.rows_out == 0 and result.deleted_rows == 4
    reader = FilesystemReader(root)
    assert reader.segments("book", "_default") == []
    assert [r.replaced_by for r in reader.retired_segments("book", "_default")] == [()]
    assert compact(root, "book", "_default", ["a"]).resumed  # a rerun has nothing left to do


def test_compaction_refusals(three: CollectionWriter, root: Path) -> None:
    with pytest.raises(StorageError, match="at least one segment"):
        compact(root, "book", "_default", [])
    with pytest.raises(StorageError) as err:
        compact(root, "book", "_default", ["a", "nope"])
    assert err.value.reason == "SegmentNotFound" and "nope" in err.value.message
    inputs = segment_inputs(rows=3, first_pk=500)
    three.write_segment("book", "_default", "m8", **inputs, num_threads=1, M=8)
    with pytest.raises(StorageError, match="different index parameters") as err:
        compact(root, "book", "_default", ["a", "m8"])
    assert err.value.reason == "InvalidArgument"
    result = compact(root, "book", "_default", ["a", "b"], num_threads=1)
    assert result.segment is not None
    with pytest.raises(StorageError, match=f"compacted into {result.segment.segment_id}") as err:
        compact(root, "book", "_default", ["a", "c"])
    assert err.value.reason == "SegmentRetired"


def test_a_concurrent_compaction_of_the_same_sources_loses_cleanly(
    three: CollectionWriter, root: Path
) -> None:
    inner: list[Any] = []

    def on_step(step: str) -> None:
        if step == "staged" and not inner:  # another process compacts the same segments meanwhile
            inner.append(compact(root, "book", "_default", ["a", "b"], num_threads=1))

    with pytest.raises(StorageError) as err:
        compact(root, "book", "_default", ["a", "b"], num_threads=1, on_step=on_step)
    assert err.value.reason == "SegmentRetired"
    reader = FilesystemReader(root)
    live = [m.segment_id for m in reader.segments("book", "_default")]
    assert sorted(live) == sorted(["c", inner[0].segment.segment_id])  # only the winner published
    staging = root / "book" / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []


KILLED = """
import sys
import time
from pathlib import Path
from vectorload.storage.compaction import compact

def on_step(step):
    print(step, flush=True)
    sys.stdin.readline()  # the test kills us here

compact(Path({root!r}), "book", "_default", ["a", "b", "c"], num_threads=1, on_step=on_step)
print("finished", flush=True)
"""


def _kill_at(root: Path, step: str) -> list[str]:
    """Run a compaction in a child process and SIGKILL it once it reports `step`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED.format(root=str(root)))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    seen: list[str] = []
    try:
        while True:
            line = proc.stdout.readline().decode().strip()
            if not line:
                raise AssertionError(f"compaction ended before {step}: {proc.stderr.read().decode()}")
            seen.append(line)
            if line == step:
                proc.kill()
                break
            proc.stdin.write(b"\n")
            proc.stdin.flush()
    finally:
        assert proc.wait(30) == -9
    return seen


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_every_step_then_a_rerun_converges(three: CollectionWriter, root: Path, step: str) -> None:
    expected = visible_rows(root)
    assert len(expected) == 32
    seen = _kill_at(root, step)
    assert seen[-1] == step
    reader = FilesystemReader(root)
    live = {m.segment_id for m in reader.segments("book", "_default")}
    # never a lost row, never a row shown twice: a reader resolves what is live the same way
    assert visible_rows(root) == expected
    new = live - {"a", "b", "c"}
    if step in ("read", "staged"):
        assert live == {"a", "b", "c"}  # nothing visible changed
    elif step == "published":
        assert len(new) == 1 and live >= {"a", "b", "c"}  # the new segment beside its live sources
    else:
        assert len(new) == 1 and live == new  # killed after the retirement, before returning
    result = compact(root, "book", "_default", ["a", "b", "c"], num_threads=1)
    assert result.resumed == (step in ("published", "retired"))
    assert result.segment is not None
    assert [m.segment_id for m in reader.segments("book", "_default")] == [result.segment.segment_id]
    assert {r.manifest.segment_id for r in reader.retired_segments("book", "_default")} == {"a", "b", "c"}
    assert visible_rows(root) == expected
    CollectionWriter(root).clean_staging("book")  # the killed child's staging is removable
    staging = root / "book" / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_kill_9_between_two_retirement_markers(three: CollectionWriter, root: Path) -> None:
    """A compaction killed after writing some markers: the rest are written by the rerun."""
    script = f"""
import os, signal
from pathlib import Path
from vectorload.storage import writer as w
real = w._create_exclusive
count = [0]
def one_then_die(path, data):
    if count[0] == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    count[0] += 1
    return real(path, data)
w._create_exclusive = one_then_die
from vectorload.storage.compaction import compact
compact(Path({str(root)!r}), "book", "_default", ["a", "b", "c"], num_threads=1)
"""
    expected = visible_rows(root)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    reader = FilesystemReader(root)
    assert len(reader.retired_segments("book", "_default")) == 1
    assert len(reader.segments("book", "_default")) == 3  # the new one + two still live
    assert visible_rows(root) == expected
    assert compact(root, "book", "_default", ["a", "b", "c"]).resumed
    assert len(reader.retired_segments("book", "_default")) == 3
    assert visible_rows(root) == expected


# ---------------------------------------------------------------------------- garbage collection


def test_garbage_collection_keeps_retired_segments_for_the_grace_period(
    three: CollectionWriter, root: Path
) -> None:
    result = compact(root, "book", "_default", ["a", "b", "c"], num_threads=1)
    assert result.segment is not None
    reader = FilesystemReader(root)
    now = time.time()
    gen = reader.generation("book")
    kept = collect_garbage(root, "book", grace_s=600, now=now)
    assert kept.segments == () and kept.deltas == () and reader.generation("book") == gen
    assert len(reader.retired_segments("book", "_default")) == 3
    gone = collect_garbage(root, "book", grace_s=600, now=now + 601)
    assert sorted(gone.segments) == ["_default/a", "_default/b", "_default/c"] and gone.markers == 3
    assert reader.retired_segments("book", "_default") == [] and reader.generation("book") == gen + 1
    assert sorted(p.name for p in (root / "book" / "_default").iterdir()) == [result.segment.segment_id]
    assert not (root / "book" / ".trash").exists()
    with pytest.raises(StorageError) as err:
        reader.segment("book", "_default", "a")
    assert err.value.reason == "SegmentNotFound"


def test_deltas_are_collected_only_when_nothing_can_need_them(writer: CollectionWriter, root: Path) -> None:
    _write(writer, "a", 10, 0, 1)
    _write(writer, "b", 10, 100, 1000)
    d = writer.write_delta("book", [3, 4], 500)  # hides rows of a; b's rows are all newer
    reader = FilesystemReader(root)
    # without the writer's promise that older rows are all sealed, a delta is never removed
    assert collect_garbage(root, "book", grace_s=0).deltas == ()
    # a still has rows older than the delete and has not applied it
    assert collect_garbage(root, "book", grace_s=0, sealed_through=10**9).deltas == ()
    # rows below 400 are sealed, but the delete is at 500: a row at 450 may still arrive
    compact(root, "book", "_default", ["a"], num_threads=1)
    early = collect_garbage(root, "book", grace_s=0, sealed_through=400)
    assert early.deltas == () and early.segments == ("_default/a",)
    removed = collect_garbage(root, "book", grace_s=0, sealed_through=500)
    assert removed.deltas == (d.delta_id,) and reader.deltas("book") == []
    assert {k for _, k in visible_rows(root)} == set(range(10)) - {3, 4} | set(range(100, 110))


def test_garbage_collection_removes_orphan_markers(writer: CollectionWriter, root: Path) -> None:
    _write(writer, "a", 3, 0, 1)
    with collection_lock(root / "book") as locked:
        writer.retire_locked(locked, "_default", ["a"], ())
    # an interrupted collection: the segment went to the trash, its marker stayed
    (root / "book" / ".trash").mkdir()
    (root / "book" / "_default" / "a").rename(root / "book" / ".trash" / "x")
    assert FilesystemReader(root).retired_segments("book", "_default") == []
    result = collect_garbage(root, "book", grace_s=600)
    assert result.markers == 1 and list((root / "book" / "_default").iterdir()) == []
    assert not (root / "book" / ".trash").exists()


def test_pick_small_segments_and_the_compact_command(
    writer: CollectionWriter, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i, rows in enumerate([5, 5, 30, 5, 5, 5]):
        _write(writer, f"s{i}", rows, 100 * i, 1 + 100 * i)
    reader = FilesystemReader(root)
    groups = pick_small_segments(reader.segments("book", "_default"), small_rows=10, target_rows=12)
    assert groups == [("s0", "s1"), ("s3", "s4")]  # s5 alone is not worth it; s2 is not small
    with pytest.raises(StorageError):
        pick_small_segments([], small_rows=0, target_rows=1)
    before = visible_rows(root)
    args = ["--root", str(root), "--collection", "book", "--small-rows", "10", "--target-rows", "12"]
    assert compact_main([*args, "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("compacted 2 segments of book/_default") == 2
    assert len(reader.segments("book", "_default")) == 4 and visible_rows(root) == before
    assert compact_main(["--root", str(root), "--collection", "book", "--gc", "--grace", "0"]) == 0
    assert "removed 4 retired segments" in capsys.readouterr().out
    assert compact_main(["--root", str(root), "--collection", "book", "--segments", "nope"]) == 2
    assert "SegmentNotFound" in capsys.readouterr().err
