"""Insert throughput and index build time through the Milvus API: vectorload's proxy against a
real Milvus 2.3.5 standalone, with the same client code (`bench/milvus_driver.py`'s `ingest`:
pymilvus 2.3.5 ORM — create the collection and partitions, insert every row of the sample in
batches of 20,000, flush, create the HNSW index with the sample's M / efConstruction, wait until
every row is indexed).

Goal (issue 12): insert throughput >= Milvus', index build time <= Milvus'.

What each side does for the same calls: Milvus writes the rows to its log broker and builds the
index in its index node after the flush; vectorload acknowledges an insert once its write-ahead
log record is fsynced on the storage and holds the rows there until the collection has an index
(a vectorload segment is always indexed), so its "index build" is the sealer building each
partition's HNSW segment (hnswlib, every core) once CreateIndex arrives.

Setup: a fresh control plane (the proxy watches CollectionLoads), the proxy `--no-auth
--no-compaction` on an empty storage root; Milvus in its own network namespace. Results:
bench/results/insert_<size>.json.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_vs_milvus import FIELD, MILVUS_METRIC, proxy_and_milvus, sample_rows, write_bench_args
from bench.milvus_env import MILVUS_VERSION, PymilvusDriver
from bench.operator_common import operator_bench, write_result


def ingest(driver: PymilvusDriver, req: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    out = driver.request("ingest", **req)
    out["total_seconds"] = time.perf_counter() - started
    out["insert_rows_per_s"] = out["rows"] / out["insert_seconds"]
    return out


def main() -> None:
    args = write_bench_args(__doc__ or "", "ingests per system (interleaved)")
    partitions, pk_field, metric, dim, m, efc, rows = sample_rows(args)
    work = Path(tempfile.mkdtemp(prefix="vectorload-bench-insert-"))
    part_files = []
    for name, (pks, vecs) in partitions.items():
        np.save(work / f"{name}-pk.npy", pks)
        np.save(work / f"{name}-vectors.npy", vecs)
        part_files.append(
            {"name": name, "pk": f"{work}/{name}-pk.npy", "vectors": f"{work}/{name}-vectors.npy"}
        )
    req = {
        "collection": "bench_insert", "pk": pk_field, "field": FIELD, "dim": dim,
        "metric": MILVUS_METRIC[metric], "M": m, "efConstruction": efc, "partitions": part_files,
    }  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {"vectorload": [], "milvus": []}
    storage = work / "storage"
    storage.mkdir()
    with operator_bench("vectorload-bench-insert-", "bench-insert", storage, args) as bench:
        with proxy_and_milvus(bench, storage, work, args.milvus_cache) as (ours, milvus):
            for rnd in range(args.rounds):
                order = [("vectorload", ours), ("milvus", milvus)]
                if rnd % 2:
                    order.reverse()
                for system, driver in order:
                    out = ingest(driver, req)
                    results[system].append(out)
                    print(
                        f"round {rnd} {system}: insert {out['insert_seconds']:.2f}s "
                        f"({out['insert_rows_per_s']:,.0f} rows/s), flush {out['flush_seconds']:.2f}s, "
                        f"index {out['index_seconds']:.2f}s, {out['entities']:,} entities",
                        flush=True,
                    )

        def best(system: str, key: str, fn: Any = min) -> float:
            return float(fn(r[key] for r in results[system]))

        figures: dict[str, Any] = {
            "rows": rows,
            "dim": dim,
            "M": m,
            "efConstruction": efc,
            "milvus_version": MILVUS_VERSION,
            "cpus": os.cpu_count(),
            "rounds": results,
            "insert_rows_per_s": {s: best(s, "insert_rows_per_s", max) for s in results},
            "index_seconds": {s: best(s, "index_seconds") for s in results},
            "flush_seconds": {s: best(s, "flush_seconds") for s in results},
        }
        figures["insert_ratio_vectorload_to_milvus"] = (
            figures["insert_rows_per_s"]["vectorload"] / figures["insert_rows_per_s"]["milvus"]
        )
        figures["index_ratio_vectorload_to_milvus"] = (
            figures["index_seconds"]["vectorload"] / figures["index_seconds"]["milvus"]
        )
        path = write_result("insert", args.size, args, bench, figures)
    print(
        f"insert rows/s: vectorload {figures['insert_rows_per_s']['vectorload']:,.0f}, Milvus "
        f"{figures['insert_rows_per_s']['milvus']:,.0f} "
        f"({figures['insert_ratio_vectorload_to_milvus']:.2f}x); "
        f"index: vectorload {figures['index_seconds']['vectorload']:.2f}s, Milvus "
        f"{figures['index_seconds']['milvus']:.2f}s; {path}"
    )


if __name__ == "__main__":
    main()
