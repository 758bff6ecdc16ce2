"""What each step of the querynode's search costs or gains, measured side by side in one run.

Variants, in interleaved rounds (best pass of each, the machine is shared), at one ef, top-10,
batch 1 and batch 100, one client, one request at a time:

* bare hnswlib on the querynode's index files in this process, 1 thread and T threads (T = the
  CPUs this process may use; with T threads it follows the querynode's plan: a batch smaller
  than T searches the segments side by side, a larger one gets `num_threads=T`) -- the ceiling;
* the querynode with `--search-threads 1` and with `--search-threads auto` (T), each through
  JSON and through the MessagePack search.

Each variant's figures are its best q/s and its lowest CPU time per query over the rounds (the
querynode process's CPU, or this process's for bare hnswlib). So "parallel search" is auto
against 1, "binary path" MessagePack against JSON, and "HTTP + the querynode's own work" the
querynode against bare hnswlib with the same threads. Every variant's answers are compared with
bare hnswlib's (same indexes, same ef: they must be identical).
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Any

from bench.bench_vs_milvus import FIELD, BareHnswlib, QuerynodeSystem
from bench.common import (
    bench_spec,
    ensure_sample,
    parser,
    sample_label,
    segments,
    warm_page_cache,
    write_result,
)
from vectorload.storage.sample import sample_queries
from vectorload_querynode.cpus import available_cpus

TOP_K = 10
BATCHES = (1, 100)
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(variant: Any) -> float:
    """CPU time (user + system, all threads) of whoever does the variant's work: the querynode
    process, or this process for bare hnswlib. Unlike q/s on a shared machine, CPU per query
    hardly moves when other work competes for the cores."""
    if isinstance(variant, QuerynodeSystem):
        fields = Path(f"/proc/{variant.qn.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    return time.process_time()


def main() -> None:
    p = parser(__doc__ or "")
    p.set_defaults(size="medium")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum measuring time per figure")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best of each figure)")
    p.add_argument("--ef", type=int, default=256, help="hnswlib ef of every search")
    args = p.parse_args()
    if args.rounds < 1 or args.seconds <= 0 or args.ef < TOP_K:
        raise SystemExit(f"--rounds and --seconds must be positive, --ef at least {TOP_K}")
    root = ensure_sample(args.size, args.cache_dir, args.dim)
    spec = bench_spec(args.size, args.dim)
    segs = segments(root)
    pk = "book_id"
    queries = sample_queries(42, 400, FIELD, spec)
    threads = available_cpus()
    warm_page_cache([seg.paths[f] for seg in segs for f in (pk, FIELD)])
    variants: list[Any] = []
    try:
        for t in sorted({1, threads}):
            bare = BareHnswlib(segs, pk, "l2", spec.intro_dim, queries, TOP_K, t)
            bare.load()
            variants.append(bare)
        host = args.host.rsplit(".", 1)
        for i, setting in enumerate(sorted({1, threads})):
            qn = QuerynodeSystem(root, f"{host[0]}.{int(host[1]) + i}", pk, queries, TOP_K,
                                 extra=["--search-threads", str(setting)])  # fmt: skip
            qn.load()
            qn.name = f"querynode-t{setting}-json"
            packed = copy.copy(qn)
            packed.binary, packed.name = True, f"querynode-t{setting}-msgpack"
            variants += [qn, packed]
        best: dict[str, dict[int, float]] = {}
        cpu: dict[str, dict[int, float]] = {}  # CPU seconds per query, lowest round
        answers: dict[str, dict[int, list[list[int]]]] = {}
        for rnd in range(args.rounds):
            for batch in BATCHES:
                shift = rnd % len(variants)
                for v in variants[shift:] + variants[:shift]:
                    v.search(args.ef, batch, 0.0, count=20)  # warm up
                    cpu_before = cpu_seconds(v)
                    run = v.search(args.ef, batch, args.seconds)
                    cpu_per_query = (cpu_seconds(v) - cpu_before) / (run.passes * len(queries))
                    slot = best.setdefault(v.name, {})
                    slot[batch] = max(slot.get(batch, 0.0), run.qps)
                    low = cpu.setdefault(v.name, {})
                    low[batch] = min(low.get(batch, math.inf), cpu_per_query)
                    answers.setdefault(v.name, {}).setdefault(batch, run.ids)
            shown = "  ".join(f"{n} {b[1]:,.0f}/{b[100]:,.0f}" for n, b in best.items())
            print(f"round {rnd + 1}/{args.rounds} (q/s batch 1/100): {shown}", flush=True)
    finally:
        for v in variants:
            if isinstance(v, QuerynodeSystem) and not v.binary:
                v.close()
    reference = answers["bare"]
    identical = {n: all(a[b] == reference[b] for b in BATCHES) for n, a in answers.items()}
    figures: dict[str, Any] = {
        "segments": len(segs),
        "rows": sum(s.manifest.rows for s in segs),
        "top_k": TOP_K,
        "ef": args.ef,
        "threads": threads,
        "rounds": args.rounds,
        "qps": {n: {str(b): q for b, q in v.items()} for n, v in best.items()},
        "cpu_us_per_query": {n: {str(b): c * 1e6 for b, c in v.items()} for n, v in cpu.items()},
        "answers_identical_to_bare": identical,
    }
    for batch in BATCHES:
        q = {n: v[batch] for n, v in best.items()}
        figures[f"ratios_batch{batch}"] = {
            "parallel_json": q[f"querynode-t{threads}-json"] / q["querynode-t1-json"],
            "parallel_msgpack": q[f"querynode-t{threads}-msgpack"] / q["querynode-t1-msgpack"],
            "msgpack_over_json": q[f"querynode-t{threads}-msgpack"] / q[f"querynode-t{threads}-json"],
            "querynode_over_bare_same_threads": q[f"querynode-t{threads}-msgpack"]
            / q["bare" if threads == 1 else f"bare-t{threads}"],
            "querynode_t1_over_bare_t1": q["querynode-t1-msgpack"] / q["bare"],
        }
    path = write_result("querynode_search", sample_label(args.size, args.dim), figures)
    print(f"sample {args.size}: {len(segs)} segments, top-{TOP_K}, ef {args.ef}, {threads} threads")
    for name, values in best.items():
        c = cpu[name]
        print(f"  {name:<24} batch 1 {values[1]:8,.0f} q/s {c[1] * 1e6:6,.0f} µs CPU/q   "
              f"batch 100 {values[100]:8,.0f} q/s {c[100] * 1e6:6,.0f} µs CPU/q   "
              f"answers identical to bare: {identical[name]}")  # fmt: skip
    for batch in BATCHES:
        print(
            f"batch {batch}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures[f"ratios_batch{batch}"].items())
        )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
