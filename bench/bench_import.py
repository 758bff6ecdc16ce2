"""Bulk import through the Milvus API: vectorload's proxy against a real Milvus 2.3.5 standalone,
with the same client code (`bench/milvus_driver.py`'s `bulk_import`: pymilvus 2.3.5 ORM — create
the collection, its partitions and the HNSW index with the sample's M / efConstruction, then
`utility.do_bulk_insert` one row-based JSON file per partition, all jobs at once), on the rows of
the sample. Timed: until every job is ImportCompleted, and until every row is indexed.

Baselines in the same run, on the same rows:

* **bare hnswlib**: `add_items` of each partition's vectors into an index with the same M /
  efConstruction and every core — the index build an import cannot avoid;
* **vectorload, Parquet**: the same import from Parquet files (vectorload streams them by record
  batch; Milvus 2.3.5 imports JSON and numpy only), to show what the row-based JSON costs.

What each side does for the same calls: Milvus' data node reads the file, writes binlogs, and its
index node builds the index after the import (ImportCompleted waits for it); vectorload's proxy
checks every row, builds each partition's segment (HNSW included) in staging and publishes them
at once (`vectorload_proxy.imports`), so its ImportCompleted is also "indexed".

Setup: a fresh control plane, the proxy `--no-auth --no-compaction` on an empty storage root,
files in its import root; Milvus in its own network namespace, reading the same JSON files by
absolute path (its storage is local). Results: bench/results/import_<size>.json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.bench_vs_milvus import FIELD, MILVUS_METRIC, proxy_and_milvus, sample_rows, write_bench_args
from bench.milvus_env import MILVUS_VERSION, PymilvusDriver
from bench.operator_common import operator_bench, write_result


def write_files(directory: Path, pk: str, partitions: dict[str, Any]) -> dict[str, dict[str, Path]]:
    """One row-based JSON file (`{"rows": [...]}`, Milvus' form) and one Parquet file per partition."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, Path]] = {}
    for name, (keys, vectors) in partitions.items():
        rows = [{pk: int(k), FIELD: v} for k, v in zip(keys.tolist(), vectors.tolist(), strict=True)]
        json_path = directory / f"{name}.json"
        json_path.write_text(json.dumps({"rows": rows}))
        parquet_path = directory / f"{name}.parquet"
        table = pa.table(
            {
                pk: pa.array(keys, pa.int64()),
                FIELD: pa.array(vectors.tolist(), pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, parquet_path)
        out[name] = {"json": json_path, "parquet": parquet_path}
    return out


def bare_build(partitions: dict[str, Any], metric: str, dim: int, m: int, efc: int) -> float:
    """Seconds to build every partition's index with hnswlib alone (every core)."""
    started = time.perf_counter()
    for keys, vectors in partitions.values():
        index = hnswlib.Index(space=metric, dim=dim)
        index.init_index(max_elements=len(keys), M=m, ef_construction=efc)
        index.add_items(vectors, np.arange(len(keys)), num_threads=-1)
        del index
    return time.perf_counter() - started


def main() -> None:
    args = write_bench_args(__doc__ or "", "imports per system (interleaved)")
    partitions, pk_field, metric, dim, m, efc, rows = sample_rows(args)
    work = Path(tempfile.mkdtemp(prefix="vectorload-bench-import-"))
    storage = work / "storage"
    storage.mkdir()
    files = write_files(storage / ".import", pk_field, partitions)  # the proxy's default import root
    json_bytes = sum(f["json"].stat().st_size for f in files.values())
    print(f"files: {json_bytes / 2**20:,.0f} MiB of JSON, {len(files)} partitions", flush=True)

    def request(kind: str, absolute: bool) -> dict[str, Any]:
        parts = [
            {"name": name, "file": str(f[kind]) if absolute else f[kind].name} for name, f in files.items()
        ]
        return {
            "collection": "bench_import", "pk": pk_field, "field": FIELD, "dim": dim,
            "metric": MILVUS_METRIC[metric], "M": m, "efConstruction": efc, "rows": rows,
            "partitions": parts,
        }  # fmt: skip

    results: dict[str, list[dict[str, Any]]] = {
        "vectorload": [], "vectorload_parquet": [], "milvus": [], "bare_hnswlib": [],
    }  # fmt: skip
    with operator_bench("vectorload-bench-import-", "bench-import", storage, args) as bench:
        with proxy_and_milvus(bench, storage, work, args.milvus_cache) as (ours, milvus):
            for rnd in range(args.rounds):
                order: list[tuple[str, PymilvusDriver | None, dict[str, Any]]] = [
                    ("vectorload", ours, request("json", absolute=False)),
                    ("milvus", milvus, request("json", absolute=True)),
                    ("vectorload_parquet", ours, request("parquet", absolute=False)),
                    ("bare_hnswlib", None, {}),
                ]
                if rnd % 2:
                    order.reverse()
                for system, driver, req in order:
                    if driver is None:
                        out = {"import_seconds": bare_build(partitions, metric, dim, m, efc)}
                        out["indexed_seconds"] = out["import_seconds"]
                    else:
                        out = driver.request("bulk_import", **req)
                    out["rows_per_s"] = rows / out["indexed_seconds"]
                    results[system].append(out)
                    print(
                        f"round {rnd} {system}: completed {out['import_seconds']:.2f}s, indexed "
                        f"{out['indexed_seconds']:.2f}s ({out['rows_per_s']:,.0f} rows/s)"
                        + (f", {out['entities']:,} entities" if "entities" in out else ""),
                        flush=True,
                    )

        def median(system: str, key: str) -> float:
            return float(np.median([r[key] for r in results[system]]))

        figures: dict[str, Any] = {
            "rows": rows,
            "dim": dim,
            "M": m,
            "efConstruction": efc,
            "json_bytes": json_bytes,
            "milvus_version": MILVUS_VERSION,
            "cpus": os.cpu_count(),
            "rounds": results,
            "indexed_seconds_median": {s: median(s, "indexed_seconds") for s in results},
        }
        med = figures["indexed_seconds_median"]
        figures["ratio_vectorload_to_milvus"] = med["vectorload"] / med["milvus"]
        figures["ratio_vectorload_to_bare"] = med["vectorload"] / med["bare_hnswlib"]
        path = write_result("import", args.size, args, bench, figures)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"import until indexed (median of {args.rounds}): vectorload {med['vectorload']:.2f}s, "
        f"Milvus {med['milvus']:.2f}s ({med['milvus'] / med['vectorload']:.2f}x faster), "
        f"vectorload from Parquet {med['vectorload_parquet']:.2f}s, bare hnswlib build "
        f"{med['bare_hnswlib']:.2f}s (vectorload {figures['ratio_vectorload_to_bare']:.2f}x bare); {path}"
    )


if __name__ == "__main__":
    main()
