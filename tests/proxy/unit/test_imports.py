"""Bulk import without processes: the import root confines every path, files are read in chunks
(Parquet by record batch, row-based JSON in both of Milvus' shapes, `$meta` spread into keys),
and the shared job state reads back — a job whose runner stopped rewriting it reads as Failed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vectorload_proxy import imports
from vectorload_proxy.errors import MilvusError
from vectorload_proxy.imports import ImportJob, ImportJobs, check_files, read_chunks, resolve


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
    job = jobs._save(
        ImportJob(7, "", "c", "", ["a.json"], state="Importing", total_rows=200, imported_rows=50)
    )
    again = jobs.get(7)
    assert again == job and again.progress == 25
    assert ImportJob(1, "", "c", "", [], state="Completed").progress == 100
    later = time.time() + imports.STALE_AFTER + 1
    monkeypatch.setattr(imports.time, "time", lambda: later)
    stale = jobs.get(7)
    assert (stale.state, stale.reason) == ("Failed", imports.STOPPED)
    with pytest.raises(MilvusError) as err:
        jobs.get(8)
    assert err.value.code == 2100 and "jobID=8" in err.value.message
    (tmp_path / imports.JOBS_DIR / "9.json").write_text("{torn")
    with pytest.raises(MilvusError):
        jobs.get(9)
