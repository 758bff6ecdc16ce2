"""Bulk import without processes: the import root confines every path, files are read in chunks
(Parquet by record batch, row-based JSON in both of Milvus' shapes, `$meta` spread into keys),
the shared job state reads back — a job whose runner stopped rewriting it reads as Failed — and
on a real storage root: segments staged unseen and published at once, a stopped job leaves
nothing, a publisher that died midway has what it published retired."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.generation import collection_lock
from vectorload.storage.properties import CollectionProperties
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.tso import HybridClock
from vectorload.storage.writer import CollectionWriter
from vectorload_proxy import imports
from vectorload_proxy.errors import MilvusError
from vectorload_proxy.imports import ImportJob, ImportJobs, check_files, read_chunks, resolve
from vectorload_proxy.writes import WriteSettings


def test_resolve_confines_paths_to_the_import_root(tmp_path: Path) -> None:
    root = tmp_path / "import"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.json").write_text("[]")
    (tmp_path / "secret.json").write_text("[]")
    (root / "escape.json").symlink_to(tmp_path / "secret.json")
    (root / "inside.json").symlink_to(root / "sub" / "a.json")
    assert resolve(root, "sub/a.json") == (root / "sub" / "a.json").resolve()
    assert resolve(root, "inside.json") == (root / "sub" / "a.json").resolve()
    for name, text in {
        "../secret.json": "'..' is not allowed",
        "sub/../../secret.json": "'..' is not allowed",
        "/etc/passwd": "relative to the import root",
        "": "relative to the import root",
        "a\x00.json": "relative to the import root",
        "sub\\a.json": "relative to the import root",
        "escape.json": "resolves outside the import root",
        "nope.json": "does not exist",
        "sub": "does not exist",  # a directory is not a file
    }.items():
        with pytest.raises(MilvusError) as err:
            resolve(root, name)
        assert err.value.code == 1100 and text in err.value.message, name


def test_check_files_takes_json_and_parquet_only() -> None:
    assert check_files(["a.json", "b/c.parquet"]) == ["a.json", "b/c.parquet"]
    for files, text in (
        ([], "no files"),
        (["a.npy"], "numpy file sets are not supported"),
        (["a.csv"], "unsupported file type"),
        (["x.json"] * (imports.MAX_FILES + 1), "at most"),
    ):
        with pytest.raises(MilvusError) as err:
            check_files(files)
        assert text in err.value.message


def test_json_rows_in_both_shapes_with_meta_spread(tmp_path: Path) -> None:
    rows = [{"id": i, "v": [0.0, 1.0], "$meta": json.dumps({"color": "red", "n": i})} for i in range(5)]
    (tmp_path / "a.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "b.json").write_text(json.dumps(rows))
    for name in ("a.json", "b.json"):
        chunks = list(read_chunks(tmp_path / name, name, chunk_rows=2))
        assert [len(c) for c in chunks] == [2, 2, 1]
        assert chunks[0][1] == {"id": 1, "v": [0.0, 1.0], "color": "red", "n": 1}
    (tmp_path / "c.json").write_text(json.dumps({"data": []}))
    (tmp_path / "d.json").write_text("{not json")
    (tmp_path / "e.json").write_text(json.dumps([{"id": 1, "$meta": "[1]"}]))
    for name, text in (
        ("c.json", "expected"),
        ("d.json", "not valid JSON"),
        ("e.json", "$meta is not a JSON object"),
    ):
        with pytest.raises(MilvusError) as err:
            list(read_chunks(tmp_path / name, name))
        assert text in err.value.message and name in err.value.message


def test_parquet_is_streamed_by_record_batch(tmp_path: Path) -> None:
    table = pa.table(
        {"id": pa.array(range(25), pa.int64()), "v": pa.array([[float(i)] * 2 for i in range(25)])}
    )
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=10)
    chunks = list(read_chunks(tmp_path / "a.parquet", "a.parquet", chunk_rows=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert chunks[2][4] == {"id": 24, "v": [24.0, 24.0]}
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(MilvusError, match="not a readable Parquet file"):
        list(read_chunks(tmp_path / "bad.parquet", "bad.parquet"))


class _Writes:
    """What ImportJobs reads of the write path for its job state: the root."""

    def __init__(self, root: Path) -> None:
        self.root = root


def test_job_state_reads_back_and_a_stale_running_job_reads_failed(tmp_path: Path, monkeypatch: Any) -> None:
    jobs = ImportJobs(_Writes(tmp_path))  # type: ignore[arg-type]
    job = jobs._save(ImportJob(7, "", "c", "", ["a.json"], state="Importing").staged(50, 200, []))
    again = jobs.get(7)
    assert again == job and again.progress == 25
    assert again.staged(10, 400, []).progress == 25  # a file read later adds rows: never back
    assert again.staged(150, 200, []).progress == 99  # 100 only once Completed
    assert ImportJob(1, "", "c", "", [], state="Completed").progress == 100
    later = time.time() + jobs.stale_after + 1
    monkeypatch.setattr(imports.time, "time", lambda: later)
    stale = jobs.get(7)
    assert (stale.state, stale.reason, stale.imported_rows) == ("Failed", imports.STOPPED, 0)
    with pytest.raises(MilvusError) as err:
        jobs.get(8)
    assert err.value.code == 2100 and "jobID=8" in err.value.message
    (tmp_path / imports.JOBS_DIR / "9.json").write_text("{torn")
    with pytest.raises(MilvusError):
        jobs.get(9)


class _Counter:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _StorageWrites(_Writes):
    """The parts of the write path an import job's worker uses, on a real storage root."""

    def __init__(self, root: Path, schema: CollectionSchema) -> None:
        super().__init__(root)
        self.writer = CollectionWriter(root)
        self.writer.create_collection(schema)
        self.reader = FilesystemReader(root)
        self.clock = HybridClock()
        self.settings = WriteSettings(build_threads=1)
        self.metrics = SimpleNamespace(import_rows=_Counter())
        self._schema = schema
        self._next_id = 1000

    def schema(self, collection: str) -> CollectionSchema:
        return self._schema

    def auto_id(self, collection: str) -> bool:
        return False

    def properties(self, collection: str) -> CollectionProperties:
        return CollectionProperties()

    def index_params(self, schema: CollectionSchema, props: Any, partition: str) -> tuple[int, int]:
        return 8, 32

    def allocate_ids(self, n: int) -> list[int]:
        self._next_id += n
        return list(range(self._next_id - n, self._next_id))


SCHEMA = CollectionSchema(
    "c",
    (
        FieldSchema("id", "int64", is_primary=True),
        FieldSchema("title", "varchar", max_length=16),
        FieldSchema("v", "float_vector", dim=2, metric="l2"),
    ),
)


def _jobs(tmp_path: Path, rows: list[dict[str, Any]]) -> tuple[ImportJobs, _StorageWrites, ImportJob]:
    writes = _StorageWrites(tmp_path / "root", SCHEMA)
    jobs = ImportJobs(writes, tmp_path / "import", chunk_rows=500, segment_rows=1000)  # type: ignore[arg-type]
    (tmp_path / "import").mkdir()
    (tmp_path / "import" / "a.json").write_text(json.dumps(rows))
    job = jobs._save(ImportJob(42, "", "c", "", ["a.json"]))
    return jobs, writes, job


def _rows(n: int, title: str = "t") -> list[dict[str, Any]]:
    return [{"id": i, "title": f"{title}{i}"[:16], "v": [float(i), 1.0]} for i in range(n)]


def _live(writes: _StorageWrites) -> list[str]:
    return sorted(m.segment_id for m in writes.reader.segments("c", "_default"))


def test_an_import_is_staged_unseen_then_published_at_once_and_a_key_given_twice_keeps_its_later_row(
    tmp_path: Path,
) -> None:
    rows = [*_rows(2400), {"id": 7, "title": "again", "v": [7.0, 2.0]}]  # chunk 5 repeats key 7
    jobs, writes, job = _jobs(tmp_path, rows)
    seen_before: list[list[str]] = []
    publish = writes.writer.publish_locked

    def watching(staged: Any, locked: Any) -> Any:
        seen_before.append(_live(writes))
        return publish(staged, locked)

    writes.writer.publish_locked = watching  # type: ignore[method-assign]
    done = jobs._execute(job, threading.Event())
    assert (done.state, done.imported_rows, done.total_rows, done.segments) == ("Completed", 2401, 2401, [])
    assert seen_before == [[], ["i-42-0"], ["i-42-0", "i-42-1"]]  # all three built, unseen, then renamed
    assert _live(writes) == ["i-42-0", "i-42-1", "i-42-2"]
    assert jobs.get(42).state == "Completed" and writes.metrics.import_rows.value == 2401
    segments = writes.reader.segments("c", "_default")
    assert sum(m.rows for m in segments) == 2401  # key 7 is in two segments: the later row wins
    assert not list((writes.root / "c" / ".staging").glob("*"))
    assert jobs.settled("i-42-0") and jobs.settled("w-0123456789ab-1-2")


def test_a_stopped_job_fails_and_leaves_nothing_staged(tmp_path: Path) -> None:
    jobs, writes, job = _jobs(tmp_path, _rows(1500))
    stop = threading.Event()
    stop.set()
    done = jobs._execute(job, stop)
    assert (done.state, done.reason) == ("Failed", imports.STOPPED)
    assert _live(writes) == [] and not list((writes.root / "c" / ".staging").glob("*"))


def test_recover_retires_what_a_dead_publisher_published_and_fails_its_job(
    tmp_path: Path, monkeypatch: Any
) -> None:
    jobs, writes, job = _jobs(tmp_path, _rows(2500))
    staged: list[Any] = []
    job = jobs._stage(jobs._save(replace(job, state="Importing")), threading.Event(), staged)
    names = [[s.manifest.partition, s.manifest.segment_id] for s in staged]
    job = jobs._save(replace(job, segments=names))
    with collection_lock(writes.root / "c") as locked:  # the publisher dies after two renames
        for s in staged[:2]:
            writes.writer.publish_locked(s, locked)
    assert _live(writes) == ["i-42-0", "i-42-1"]
    assert not jobs.settled("i-42-0")  # the compactor leaves them alone meanwhile
    assert jobs.recover() == 0  # its proxy may still be alive: nothing yet
    later = time.time() + jobs.stale_after + 1
    monkeypatch.setattr(imports.time, "time", lambda: later)
    assert jobs.recover() == 1
    assert _live(writes) == []
    retired = writes.reader.retired_segments("c", "_default")
    assert sorted((r.manifest.segment_id, r.replaced_by) for r in retired) == [("i-42-0", ()), ("i-42-1", ())]
    failed = jobs.get(42)
    assert failed.state == "Failed" and "2 published segments were retired" in failed.reason
    assert failed.segments == [] and failed.imported_rows == 0 and jobs.settled("i-42-0")
    assert jobs.recover() == 0  # once


def test_a_bad_last_row_fails_the_job_after_segments_were_built_and_none_is_seen(tmp_path: Path) -> None:
    bad = {"id": 99_999, "title": "short", "v": [1.0]}
    jobs, writes, job = _jobs(tmp_path, [*_rows(2400), bad])  # two segments built before it
    staged: list[Any] = []
    discard = writes.writer.discard

    def counting(s: Any) -> None:
        staged.append(s)
        discard(s)

    writes.writer.discard = counting  # type: ignore[method-assign]
    done = jobs._execute(job, threading.Event())
    assert done.state == "Failed" and done.imported_rows == 0
    assert (
        "a.json" in done.reason
        and "the dim (1) of field data(v) is not equal to schema dim (2)" in done.reason
    )
    assert len(staged) == 2 and _live(writes) == [] and not list((writes.root / "c" / ".staging").glob("*"))
