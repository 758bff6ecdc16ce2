"""Search throughput: querynode over HTTP (one client, keep-alive) vs bare `knn_query` on the
same per-segment indexes in one process (same k, ef, one thread, merge included), at batch 1
and batch 100 queries per call."""

from __future__ import annotations

import heapq
import http.client
import json
import time
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt

from bench.common import (
    DATA_TOKEN,
    bench_spec,
    ensure_sample,
    load_collection,
    parser,
    sample_label,
    segments,
    start_querynode,
    write_result,
)
from vectorload.storage.sample import sample_queries

TOP_K = 10
EF = 64


def bare_qps(indexes: list[Any], queries: npt.NDArray[np.float32], batch: int, seconds: float) -> float:
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for start in range(0, len(queries), batch):
            chunk = queries[start : start + batch]
            per_segment = [index.knn_query(chunk, k=TOP_K, num_threads=1) for index in indexes]
            for qi in range(len(chunk)):  # the same top-k merge the querynode does
                heapq.nsmallest(
                    TOP_K,
                    (
                        (d, int(lab))
                        for labels, dists in per_segment
                        for lab, d in zip(labels[qi], dists[qi], strict=True)
                    ),
                )
            done += len(chunk)
    return done / (time.perf_counter() - started)


def http_qps(host: str, port: int, queries: npt.NDArray[np.float32], batch: int, seconds: float) -> float:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {DATA_TOKEN}"}
    bodies = [
        json.dumps(
            {
                "collection": "book",
                "annsField": "book_intro",
                "vectors": queries[s : s + batch].tolist(),
                "topK": TOP_K,
                "ef": EF,
            }
        )
        for s in range(0, len(queries), batch)
    ]
    done = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            for body in bodies:
                conn.request("POST", "/v1/search", body, headers)
                resp = conn.getresponse()
                payload = resp.read()
                if resp.status != 200:
                    raise RuntimeError(payload[:300])
                done += batch
    finally:
        conn.close()
    return done / (time.perf_counter() - started)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--seconds", type=float, default=8.0, help="measuring time per figure")
    args = p.parse_args()
    root = ensure_sample(args.size, args.cache_dir, args.dim)
    spec = bench_spec(args.size, args.dim)
    segs = segments(root)
    queries = sample_queries(42, 400, "book_intro", spec)
    indexes = []
    for seg in segs:
        index = hnswlib.Index(space="l2", dim=spec.intro_dim)
        index.load_index(str(seg.paths["book_intro"]))
        index.set_ef(EF)
        indexes.append(index)
    figures: dict[str, Any] = {}
    for batch in (1, 100):
        figures[f"bare_qps_batch{batch}"] = bare_qps(indexes, queries, batch, args.seconds)
    del indexes
    qn = start_querynode(root, args.host)
    try:
        load_collection(qn, ["book_id", "book_intro"], skip_dynamic=True)
        http_qps(args.host, int(qn.port or 0), queries[:20], 1, 1.0)  # warm up
        for batch in (1, 100):
            figures[f"querynode_qps_batch{batch}"] = http_qps(
                args.host, int(qn.port or 0), queries, batch, args.seconds
            )
    finally:
        qn.stop()
    for batch in (1, 100):
        figures[f"ratio_batch{batch}"] = (
            figures[f"querynode_qps_batch{batch}"] / figures[f"bare_qps_batch{batch}"]
        )
    figures.update({"segments": len(segs), "top_k": TOP_K, "ef": EF, "anns_field": "book_intro"})
    path = write_result("querynode_search", sample_label(args.size, args.dim), figures)
    print(f"sample {args.size}: {len(segs)} segments, top-{TOP_K}, ef {EF}, one client / one hnswlib thread")
    for batch in (1, 100):
        bare, qn_qps = figures[f"bare_qps_batch{batch}"], figures[f"querynode_qps_batch{batch}"]
        print(
            f"batch {batch:>3}: querynode {qn_qps:9.1f} q/s   bare knn_query {bare:9.1f} q/s   "
            f"ratio {qn_qps / bare:.2f}"
        )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
