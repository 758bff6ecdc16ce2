"""Freshness: insert acknowledged → visible to search through the proxy, at a sustained rate.

Goal (issue 12): p50 <= 1 s and p99 <= 3 s at 1,000 rows/s sustained.

Setup: a fresh control plane, the operator (catalog poll 0.2 s, its default), `--nodes`
querynodes, the proxy with the write path (seal interval 0.25 s, its default), a loaded
collection (int64 key, a 64-d float vector, HNSW L2). A writer thread inserts `--batch` rows every
`--batch / --rate` seconds through pymilvus for `--seconds`; each batch's first row is its probe.
A poller searches every pending probe in one call (nq = pending, top-1) every 20 ms; a probe is
visible when its own id comes back first. Beside it, storage is polled every 20 ms for the newest
sealed row timestamp, so each write's latency splits into "sealed" (log → segment in storage) and
the rest (the operator seeing the segment, a querynode loading it). Results:
bench/results/freshness_<label>.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from bench.operator_common import TOKEN as BENCH_TOKEN
from bench.operator_common import operator_bench, write_result
from vectorload.storage.api import StorageError
from vectorload.storage.columns import read_column
from vectorload.storage.reader import FilesystemReader
from vectorload_dev.testing.proxy_harness import ROOT_TOKEN, ProxyProcess

NAME = "fresh"
DIM = 64


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def newest_sealed_key(reader: FilesystemReader, seen: dict[str, int]) -> int:
    """The largest primary key in the collection's segments (each new segment read once)."""
    try:
        schema = reader.schema(NAME)
        for m in reader.segments(NAME, "_default"):
            if m.segment_id not in seen:
                keys = read_column(reader.segment_file_path(m, "id"), schema.primary_key)
                seen[m.segment_id] = int(np.max(keys)) if len(keys) else -1
    except (StorageError, OSError, ValueError):
        pass  # a segment being published or a manifest read mid-rename: the next poll reads it
    return max(seen.values(), default=-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=1000.0, help="rows per second")
    p.add_argument("--batch", type=int, default=50, help="rows per insert call")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--operator-arg", action="append", default=[])
    p.add_argument("--proxy-arg", action="append", default=[])
    p.add_argument("--label", default="")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    storage = Path(tempfile.mkdtemp(prefix="vectorload-bench-freshness-storage-"))
    with operator_bench("vectorload-bench-freshness-", "bench-fresh", storage, args) as bench:
        for i in range(args.nodes):
            bench.pool.add_node(f"qn-{i}", memory_limit="2Gi")
        bench.operator.start()
        proxy = ProxyProcess(
            bench.cluster.plane,
            bench.workdir,
            bench.ns,
            storage,
            data_token=BENCH_TOKEN,
            extra_args=args.proxy_arg,
        ).start()
        try:
            figures = measure(proxy, storage, args)
        finally:
            proxy.stop()
        path = write_result("freshness", f"r{int(args.rate)}", args, bench, figures)
    shutil.rmtree(storage, ignore_errors=True)
    print(
        f"{args.rate:.0f} rows/s for {args.seconds:.0f}s ({figures['batches']} batches of {args.batch}): "
        f"visible p50 {figures['visible_p50_s']:.3f}s p99 {figures['visible_p99_s']:.3f}s max "
        f"{figures['visible_max_s']:.3f}s; sealed p50 {figures['sealed_p50_s']:.3f}s; ack p50 "
        f"{figures['ack_p50_ms']:.1f} ms; {path}"
    )


def measure(proxy: ProxyProcess, storage: Path, args: argparse.Namespace) -> dict[str, Any]:
    client = MilvusClient(uri=proxy.uri, token=ROOT_TOKEN)
    schema = client.create_schema(enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection(NAME, schema=schema)
    params = client.prepare_index_params()
    params.add_index(
        field_name="vec", index_type="HNSW", metric_type="L2", params={"M": 16, "efConstruction": 100}
    )
    client.create_index(NAME, params)
    client.load_collection(NAME)
    rng = np.random.default_rng(0)
    lock = threading.Lock()
    pending: dict[int, tuple[list[float], float]] = {}  # probe id -> (vector, acked at)
    visible: list[float] = []
    sealed: list[float] = []
    acks: list[float] = []
    sealed_wait: dict[int, float] = {}  # a batch's last id -> acked at, until storage holds it
    done = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        interval = args.batch / args.rate
        next_at = time.monotonic()
        end = next_at + args.seconds
        first = 0
        while time.monotonic() < end:
            vecs = rng.normal(size=(args.batch, DIM)).astype(np.float32)
            data = [{"id": first + i, "vec": vecs[i].tolist()} for i in range(args.batch)]
            started = time.monotonic()
            client.insert(NAME, data)
            acked = time.monotonic()
            acks.append(acked - started)
            with lock:
                pending[first] = (data[0]["vec"], acked)
                sealed_wait[first + args.batch - 1] = acked
            first += args.batch
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        done.set()

    def poller() -> None:
        reader_client = MilvusClient(uri=proxy.uri, token=ROOT_TOKEN)
        while not (done.is_set() and not pending):
            with lock:
                probes = list(pending.items())
            if probes:
                try:
                    hits = reader_client.search(
                        NAME, data=[v for _, (v, _) in probes], limit=1, anns_field="vec"
                    )
                except Exception as exc:
                    errors.append(str(exc))
                    time.sleep(0.05)
                    continue
                now = time.monotonic()
                with lock:
                    for (pid, (_, acked)), hit in zip(probes, hits, strict=True):
                        if hit and hit[0]["id"] == pid:
                            visible.append(now - acked)
                            pending.pop(pid, None)
            time.sleep(0.02)
        reader_client.close()

    def storage_poller() -> None:
        reader = FilesystemReader(storage)
        seen: dict[str, int] = {}
        while not (done.is_set() and not sealed_wait):
            newest = newest_sealed_key(reader, seen)
            now = time.monotonic()
            with lock:
                for key in [k for k in sealed_wait if k <= newest]:
                    sealed.append(now - sealed_wait.pop(key))
            time.sleep(0.02)

    threads = [threading.Thread(target=f) for f in (writer, poller, storage_poller)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 60)
    client.close()
    timestamps_known = bool(sealed)
    return {
        "rate_rows_per_s": args.rate,
        "batch": args.batch,
        "seconds": args.seconds,
        "batches": len(visible),
        "unseen": len(pending),
        "search_errors": len(errors),
        "visible_p50_s": statistics.median(visible),
        "visible_p99_s": percentile(visible, 0.99),
        "visible_max_s": max(visible),
        "sealed_p50_s": statistics.median(sealed) if timestamps_known else float("nan"),
        "sealed_p99_s": percentile(sealed, 0.99) if timestamps_known else float("nan"),
        "ack_p50_ms": 1000 * statistics.median(acks),
        "ack_p99_ms": 1000 * percentile(acks, 0.99),
    }


if __name__ == "__main__":
    main()
