"""Durability: an acknowledged write survives kill -9 of any component right after the answer.

`VECTORLOAD_FAULT_TRIALS` trials (default 3): concurrent pymilvus inserts through a proxy of its
own; right after the Nth acknowledgement the proxy is SIGKILLed; a new proxy adopts the dead
one's write-ahead log, and after a flush storage holds every acknowledged row exactly once (the
replay is idempotent: no key twice, no row count above the keys). Then the same with a querynode
and the operator killed right after acknowledgements on a loaded collection: every acknowledged
row is searchable once they are back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from pymilvus import MilvusClient

from vectorload.storage.columns import read_column
from vectorload.storage.reader import FilesystemReader
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import TEST_TOKEN, OperatorProcess, QuerynodePool
from vectorload_dev.testing.proxy_harness import NAMESPACE, ROOT_TOKEN, ProxyProcess

from .test_writes_pymilvus import index_params, make_schema, rows

TRIALS = int(os.environ.get("VECTORLOAD_FAULT_TRIALS", "3"))
BATCH = 40


def stored_keys(root: Path, collection: str) -> tuple[list[int], int]:
    """(every primary key in the live segments, their row count)."""
    reader = FilesystemReader(root)
    schema = reader.schema(collection)
    pk = schema.primary_key
    keys: list[int] = []
    for p in reader.partitions(collection):
        for m in reader.segments(collection, p):
            keys += [int(k) for k in read_column(reader.segment_file_path(m, pk.name), pk)]
    return keys, len(keys)


WORKER = """
import json, os, signal, sys, threading
import numpy as np
from pymilvus import MilvusClient

uri, token, name, first, kill_after, pid, batch, dim = sys.argv[1:9]
first, kill_after, pid, batch, dim = int(first), int(kill_after), int(pid), int(batch), int(dim)
acked, lock, killed, counter = [], threading.Lock(), threading.Event(), iter(range(1_000_000))

def rows(start):
    vecs = np.random.default_rng(start).normal(size=(batch, dim)).astype(np.float32)
    return [{"id": start + i, "title": f"t{start + i}", "count": start + i, "score": 0.5, "flag": True,
             "vec": vecs[i].tolist(), "genre": "x"} for i in range(batch)]

def worker():
    client = MilvusClient(uri=uri, token=token, timeout=10)
    while not killed.is_set():
        with lock:
            start = first + next(counter) * batch
        try:
            client.insert(name, rows(start))
        except Exception:
            return  # the proxy is gone: unacknowledged
        with lock:
            acked.extend(range(start, start + batch))
            if len(acked) >= kill_after * batch and not killed.is_set():
                killed.set()
                os.kill(pid, signal.SIGKILL)  # right after this acknowledgement

threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
print(json.dumps(acked), flush=True)
os._exit(0)  # no grpc teardown against a dead server
"""


def insert_until_killed(uri: str, name: str, first: int, kill_after: int, pid: int) -> list[int]:
    """4 threads insert batches; right after the `kill_after`th acknowledgement the proxy `pid`
    is SIGKILLed. Returns the keys of every acknowledged batch. The clients run in a child process:
    pymilvus channels reconnecting to a dead proxy must not live in this process, which forks the
    next proxy (gRPC's fork handlers then abort the child before it execs)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            uri,
            ROOT_TOKEN,
            name,
            str(first),
            str(kill_after),
            str(pid),
            str(BATCH),
            "8",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    acked: list[int] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return acked


def test_acknowledged_inserts_survive_kill_9_of_the_proxy(
    wclient: MilvusClient,
    writes_plane: ControlPlane,
    writes_pool: QuerynodePool,
    write_root: Path,
    writes_workdir: Path,
) -> None:
    name = "durable"
    wclient.create_collection(name, schema=make_schema(wclient))
    wclient.create_index(name, index_params(wclient))
    args = ["--seal-interval", "0.5", "--no-compaction"]
    all_acked: list[int] = []
    try:
        for trial in range(TRIALS):
            victim = ProxyProcess(
                writes_plane, writes_workdir, NAMESPACE, write_root, TEST_TOKEN, extra_args=args
            ).start()
            acked = insert_until_killed(victim.uri, name, trial * 100_000, 5 + trial, victim.pid)
            assert victim.proc is not None and victim.proc.wait(10) == -signal.SIGKILL
            assert len(acked) >= (5 + trial) * BATCH
            all_acked += acked
            heir = ProxyProcess(
                writes_plane, writes_workdir, NAMESPACE, write_root, TEST_TOKEN, extra_args=args
            ).start()
            try:
                client = MilvusClient(uri=heir.uri, token=ROOT_TOKEN)
                client.flush(name)  # returns once the adopted log is sealed too
                client.close()
            finally:
                assert heir.stop() == 0
            keys, count = stored_keys(write_root, name)
            missing = set(all_acked) - set(keys)
            assert not missing, f"trial {trial}: {len(missing)} acknowledged rows lost"
            assert count == len(set(keys)), f"trial {trial}: a replay wrote rows twice"
    finally:
        wclient.drop_collection(name)


def test_acknowledged_rows_are_searchable_after_kill_9_of_a_querynode_and_the_operator(
    wclient: MilvusClient, writes_pool: QuerynodePool, writes_operator: OperatorProcess
) -> None:
    name = "durable_loaded"
    wclient.create_collection(name, schema=make_schema(wclient))
    wclient.create_index(name, index_params(wclient))
    wclient.load_collection(name)
    try:
        expected: list[int] = []
        for trial in range(TRIALS):
            first = trial * 1000
            wclient.insert(name, rows(first, 100))
            expected += list(range(first, first + 100))
            # right after the acknowledgement: kill -9 a querynode, then the operator
            node = sorted(writes_pool.nodes)[trial % len(writes_pool.nodes)]
            writes_pool.restart_node(node)
            writes_operator.stop(kill=True)
            writes_operator.start(timeout=60)
            want = sorted(expected)
            wait_for(
                f"trial {trial}: every acknowledged row queryable",
                lambda want=want: _ids(wclient, name) == want,  # type: ignore[misc]
                timeout=60,
                interval=0.2,
            )
            vec = rows(first, 100)[42]["vec"]
            hits = wclient.search(name, data=[vec], limit=1, anns_field="vec")[0]
            assert hits and hits[0]["id"] == first + 42
    finally:
        wclient.drop_collection(name)


def _ids(client: MilvusClient, name: str) -> list[int] | None:
    try:
        return sorted(
            r["id"] for r in client.query(name, filter="id >= 0", output_fields=["id"], limit=16384)
        )
    except Exception:
        return None  # a replica still refilling: asked again
