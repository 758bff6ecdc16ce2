"""Bulk import through the proxy, with the real clients: pymilvus' `utility.do_bulk_insert` /
`get_bulk_insert_state` / `list_bulk_insert_tasks` (gRPC Import, GetImportState,
ListImportTasks) and `pymilvus.bulk_writer.bulk_import` / `get_import_progress` /
`list_import_jobs` (REST v2 jobs/import): Parquet and row-based JSON files in the import root
become searchable rows of a loaded collection; a file with a bad row fails the job naming the
file and nothing of it becomes visible; paths outside the import root, numpy sets and unknown
jobs are refused with Milvus' error."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pymilvus import DataType, MilvusClient, connections, utility
from pymilvus.client.types import BulkInsertState
from pymilvus.exceptions import MilvusException

from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import TEST_TOKEN
from vectorload_dev.testing.proxy_harness import NAMESPACE, ROOT_TOKEN, ProxyProcess

from .conftest import PROXY_ARGS

DIM = 8


@pytest.fixture
def import_root(write_root: Path) -> Path:
    root = write_root / ".import"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture
def orm(write_proxy: ProxyProcess) -> Iterator[str]:
    alias = f"import-{time.monotonic_ns()}"
    connections.connect(alias=alias, uri=write_proxy.uri, token=ROOT_TOKEN)
    yield alias
    connections.disconnect(alias)


@contextmanager
def collection(client: MilvusClient, name: str, auto_id: bool) -> Iterator[None]:
    """A loaded collection for one test, dropped (storage and all) when it ends."""
    schema = client.create_schema(auto_id=auto_id, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True, auto_id=auto_id)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("title", DataType.VARCHAR, max_length=64)
    index = client.prepare_index_params()
    index.add_index(
        field_name="vec", index_type="HNSW", metric_type="L2", params={"M": 16, "efConstruction": 64}
    )
    client.create_collection(name, schema=schema, index_params=index)
    client.load_collection(name)
    try:
        yield
    finally:
        client.drop_collection(name)


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def write_parquet(path: Path, ids: range, vecs: np.ndarray) -> None:
    table = pa.table(
        {
            "id": pa.array(list(ids), pa.int64()),
            "vec": pa.array([v.tolist() for v in vecs], pa.list_(pa.float32())),
            "title": pa.array([f"p{i}" for i in ids]),
            "$meta": pa.array([json.dumps({"shelf": i % 3}) for i in ids]),
        }
    )
    pq.write_table(table, path, row_group_size=700)  # several record batches per file


def ids_of(client: MilvusClient, name: str, expr: str) -> list[int]:
    return sorted(int(r["id"]) for r in client.query(name, filter=expr, output_fields=["id"], limit=16384))


def wait_job(task: int, alias: str) -> Any:
    def finished() -> Any:
        state = utility.get_bulk_insert_state(task, using=alias)
        return (
            state if state.state in (BulkInsertState.ImportCompleted, BulkInsertState.ImportFailed) else None
        )

    return wait_for(f"import job {task} finished", finished, timeout=120, interval=0.1)


def test_do_bulk_insert_parquet_and_json_then_search(
    wclient: MilvusClient, orm: str, import_root: Path
) -> None:
    name = "imported"
    with collection(wclient, name, auto_id=False):
        pvecs, jvecs = vectors(2000, 1), vectors(300, 2)
        write_parquet(import_root / "books.parquet", range(2000), pvecs)
        rows = [
            {"id": 5000 + i, "vec": v.tolist(), "title": f"j{i}", "color": "red"} for i, v in enumerate(jvecs)
        ]
        (import_root / "more").mkdir(exist_ok=True)
        (import_root / "more" / "rows.json").write_text(json.dumps({"rows": rows}))
        task = utility.do_bulk_insert(name, files=["books.parquet"], using=orm)
        second = utility.do_bulk_insert(name, files=["more/rows.json"], using=orm)
        state = wait_job(task, orm)
        assert state.state == BulkInsertState.ImportCompleted, state
        assert state.row_count == 2000 and state.infos["collection"] == name
        assert state.infos["progress_percent"] == "100" and state.infos["files"] == "books.parquet"
        assert wait_job(second, orm).state == BulkInsertState.ImportCompleted
        # loaded automatically: every row, the $meta of Parquet and JSON's dynamic key
        wait_for("imported rows queryable", lambda: len(ids_of(wclient, name, "id >= 0")) == 2300, timeout=30)
        hit = wclient.search(name, data=[pvecs[1234].tolist()], limit=1, output_fields=["title", "shelf"])[0][
            0
        ]
        assert (hit["id"], hit["entity"]["title"], hit["entity"]["shelf"]) == (1234, "p1234", 1234 % 3)
        assert ids_of(wclient, name, 'color == "red"') == list(range(5000, 5300))
        listed = utility.list_bulk_insert_tasks(collection_name=name, using=orm)
        assert [t.task_id for t in listed] == [task, second]
        assert all(t.state == BulkInsertState.ImportCompleted for t in listed)


def test_a_bad_row_fails_the_job_and_nothing_is_visible(
    wclient: MilvusClient, orm: str, import_root: Path
) -> None:
    name = "import_bad"
    with collection(wclient, name, auto_id=False):
        good = [{"id": i, "vec": [0.1] * DIM, "title": "ok"} for i in range(25_000)]  # 3 chunks
        bad = [*good, {"id": 99_999, "vec": [0.1] * (DIM - 1), "title": "short"}]
        (import_root / "bad.json").write_text(json.dumps(bad))
        state = wait_job(utility.do_bulk_insert(name, files=["bad.json"], using=orm), orm)
        assert state.state == BulkInsertState.ImportFailed
        reason = state.infos["failed_reason"]
        assert (
            "bad.json" in reason and "the dim (7) of field data(vec) is not equal to schema dim (8)" in reason
        )
        assert state.row_count == 0
        wclient.insert(name, [{"id": -1, "vec": [0.2] * DIM, "title": "marker"}])
        wait_for("marker row visible", lambda: ids_of(wclient, name, "id < 100000") == [-1], timeout=30)


def test_refusals(wclient: MilvusClient, orm: str, import_root: Path, write_root: Path) -> None:
    name = "import_refused"
    (write_root / "outside.json").write_text("[]")
    with collection(wclient, name, auto_id=False):
        cases = {
            "../outside.json": "'..' is not allowed",
            "/etc/passwd.json": "a path relative to the import root is required",
            "missing.parquet": "does not exist in the import root",
            "a.npy": "unsupported file type",
        }
        for path, text in cases.items():
            with pytest.raises(MilvusException) as err:
                utility.do_bulk_insert(name, files=[path], using=orm)
            assert err.value.code == 1100 and text in err.value.message, (path, err.value.message)
        (import_root / "link.json").unlink(missing_ok=True)
        (import_root / "link.json").symlink_to(write_root / "outside.json")
        with pytest.raises(MilvusException, match="resolves outside the import root"):
            utility.do_bulk_insert(name, files=["link.json"], using=orm)
        with pytest.raises(MilvusException) as err:
            utility.do_bulk_insert("no_such_collection", files=["x.json"], using=orm)
        assert err.value.code == 100
        with pytest.raises(MilvusException) as err:
            utility.get_bulk_insert_state(123456789, using=orm)
        assert err.value.code == 2100 and "import job not found" in err.value.message


def test_rest_bulk_import_with_auto_ids(
    wclient: MilvusClient, write_proxy: ProxyProcess, import_root: Path
) -> None:
    from pymilvus.bulk_writer import bulk_import, get_import_progress, list_import_jobs

    name = "import_rest"
    with collection(wclient, name, auto_id=True):
        vecs = vectors(500, 3)
        table = pa.table(
            {
                "vec": pa.array([v.tolist() for v in vecs], pa.list_(pa.float32())),
                "title": pa.array([f"r{i}" for i in range(500)]),
            }
        )
        pq.write_table(table, import_root / "auto.parquet")
        resp = bulk_import(
            url=write_proxy.uri, api_key=ROOT_TOKEN, collection_name=name, files=[["auto.parquet"]]
        )
        job_id = resp.json()["data"]["jobId"]

        def done() -> dict[str, Any] | None:
            data: dict[str, Any] = get_import_progress(
                url=write_proxy.uri, api_key=ROOT_TOKEN, job_id=job_id
            ).json()["data"]
            return data if data["state"] in ("Completed", "Failed") else None

        data = wait_for("REST import finished", done, timeout=120, interval=0.1)
        assert (data["state"], data["progress"], data["importedRows"], data["totalRows"]) == (
            "Completed",
            100,
            500,
            500,
        )
        assert data["collectionName"] == name and data["completeTime"].endswith("Z")
        records = list_import_jobs(url=write_proxy.uri, api_key=ROOT_TOKEN, collection_name=name).json()[
            "data"
        ]["records"]
        assert [r["jobId"] for r in records] == [job_id] and records[0]["state"] == "Completed"
        wait_for("auto-id rows queryable", lambda: len(ids_of(wclient, name, "id >= 0")) == 500, timeout=30)
        got = wclient.query(name, filter='title == "r42"', output_fields=["id", "title"])
        assert len(got) == 1
        # a numpy file set (Milvus' numpy form) is refused with Milvus' REST error shape
        with pytest.raises(MilvusException, match="numpy file sets are not supported"):
            bulk_import(
                url=write_proxy.uri, api_key=ROOT_TOKEN, collection_name=name, files=[["a.npy", "b.npy"]]
            )


def test_a_proxy_killed_mid_import_leaves_no_row_and_another_proxy_fails_its_job(
    wclient: MilvusClient,
    writes_plane: ControlPlane,
    write_root: Path,
    writes_workdir: Path,
    import_root: Path,
) -> None:
    """kill -9 of the proxy running an import: nothing it staged becomes visible, and a proxy
    that is still up records the job Failed once its state goes stale (`--import-stale-after`)."""
    name = "import_killed"
    n = 300_000  # fields only: the columnar Parquet path, several seconds of staging
    table = pa.table(
        {
            "id": pa.array(np.arange(n), pa.int64()),
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(vectors(n, 9).ravel()), DIM),
            "title": pa.array([f"k{i}" for i in range(n)]),
        }
    )
    pq.write_table(table, import_root / "big.parquet", row_group_size=10_000)
    args = [*PROXY_ARGS, "--import-stale-after", "3"]
    with collection(wclient, name, auto_id=False):
        victim = ProxyProcess(
            writes_plane, writes_workdir, NAMESPACE, write_root, TEST_TOKEN, extra_args=args
        )
        victim.start()
        alias = f"victim-{time.monotonic_ns()}"
        connections.connect(alias=alias, uri=victim.uri, token=ROOT_TOKEN)
        task = utility.do_bulk_insert(name, files=["big.parquet"], using=alias)
        wait_for(
            "the import under way",
            lambda: utility.get_bulk_insert_state(task, using=alias).row_count > 0,
            timeout=60,
            interval=0.05,
        )
        connections.disconnect(alias)
        victim.proc.kill()  # type: ignore[union-attr]
        assert victim.proc.wait(10) == -signal.SIGKILL  # type: ignore[union-attr]
        survivor = ProxyProcess(
            writes_plane, writes_workdir, NAMESPACE, write_root, TEST_TOKEN, extra_args=args
        )
        survivor.start()
        try:
            alias = f"survivor-{time.monotonic_ns()}"
            connections.connect(alias=alias, uri=survivor.uri, token=ROOT_TOKEN)
            state = wait_job(task, alias)
            connections.disconnect(alias)
            assert state.state == BulkInsertState.ImportFailed and state.row_count == 0
            assert "the proxy running the import stopped" in state.infos["failed_reason"]
            live = [p.name for p in (write_root / name / "_default").iterdir() if p.name.startswith("i-")]
            assert live == [], live
            assert ids_of(wclient, name, "id >= 0") == []
        finally:
            assert survivor.stop() == 0
