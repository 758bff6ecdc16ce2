"""Apply → Loaded: wall time from `kubectl apply` of a CollectionLoad (all of `book`) to its status
loadState Loaded (seen on a watch), vs bare `hnswlib.Index.load_index` of the index files the
busiest querynode got, in one process, measured in the same round. Goal: overhead <= 0.5 s.

Also measured per round: the same per-node segment sets loaded straight through the querynodes'
API, in parallel, without the operator (what the querynodes alone cost for this placement)."""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from bench.bench_querynode_load import bare_load_seconds
from bench.operator_common import (
    Bench,
    Watcher,
    add_common_args,
    index_specs,
    median,
    operator_bench,
    prepared_sample,
    write_result,
)
from vectorload.storage.sample import COLLECTION
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import QuerynodePool, collection_load, is_loaded, loaded_segments


def direct_load_seconds(pool: QuerynodePool, placement: dict[str, list[tuple[str, str]]]) -> float:
    """Load each node's segments through its own API, all nodes at once; seconds until all loaded."""
    started = time.monotonic()
    errors: list[str] = []

    def one(name: str, segs: list[tuple[str, str]]) -> None:
        qn = pool.nodes[name]
        by_partition: dict[str, list[str]] = {}
        for partition, segment in segs:
            by_partition.setdefault(partition, []).append(segment)
        for partition, ids in by_partition.items():
            body = {"collection": COLLECTION, "partition": partition, "segments": ids, "fields": None,
                    "skipDynamicField": False}  # fmt: skip
            status, answer = qn.request("POST", "/v1/segments/load", body, timeout=30)
            if status != 200 or any(r["state"] == "refused" for r in answer["results"]):
                errors.append(f"{name}: {answer}")
                return
        while True:
            loaded = loaded_segments(pool.distribution(name))
            if len(loaded) == len(segs):
                return
            time.sleep(0.02)

    threads = [threading.Thread(target=one, args=item) for item in placement.items() if item[1]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return time.monotonic() - started


def release_all(pool: QuerynodePool) -> None:
    for qn in pool.nodes.values():
        qn.request("POST", "/v1/segments/release", {"collection": COLLECTION, "segments": None})


def nothing_held(pool: QuerynodePool) -> bool:
    return all(not pool.distribution(n)["segments"] for n in pool.nodes)


def one_round(bench: Bench, watcher: Watcher) -> dict[str, Any]:
    pool, operator = bench.pool, bench.operator
    wait_for("querynodes empty", lambda: nothing_held(pool), timeout=60, interval=0.05)
    time.sleep(1.0)  # let the operator settle (a pass or two) before the clock starts
    started = time.monotonic()
    pool.kubectl_apply([collection_load("book", {"collection": COLLECTION})])
    created = time.monotonic()
    seen = watcher.wait(is_loaded, after=started, timeout=300, what="Loaded")
    apply_to_loaded = seen.at - started
    held = {n: loaded_segments(pool.distribution(n)) for n in pool.nodes}
    placement = {n: [(part, seg) for part, seg, _ in segs] for n, segs in held.items()}
    share_bytes = {n: sum(b for *_, b in segs) for n, segs in held.items()}
    busiest = max(share_bytes, key=lambda n: share_bytes[n])
    bare = bare_load_seconds(index_specs(pool.root, placement[busiest]))
    pool.delete("book")
    wait_for("querynodes released", lambda: nothing_held(pool), timeout=60, interval=0.05)
    wait_for("CollectionLoad gone", lambda: not pool.collection_loads(), timeout=60, interval=0.05)
    # the same placement straight through the querynodes; the operator is stopped meanwhile (it
    # would release segments no CollectionLoad wants)
    operator.stop()
    direct = direct_load_seconds(pool, placement)
    release_all(pool)
    operator.start()
    return {
        "apply_to_loaded_s": apply_to_loaded,
        "kubectl_apply_s": created - started,
        "created_to_loaded_s": seen.at - created,
        "bare_load_index_busiest_s": bare,
        "querynodes_direct_s": direct,
        "overhead_s": apply_to_loaded - bare,
        "ratio": apply_to_loaded / bare,
        "busiest_node": busiest,
        "segments_per_node": {n: len(v) for n, v in placement.items()},
        "bytes_per_node": share_bytes,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", default="large", choices=["tiny", "small", "medium", "large"])
    p.add_argument("--nodes", type=int, default=2, help="querynodes (2-3)")
    p.add_argument("--rounds", type=int, default=3)
    add_common_args(p)
    args = p.parse_args()

    root = prepared_sample(args.size, args.cache_dir)
    rounds: list[dict[str, Any]] = []
    with operator_bench("vectorload-bench-apply-", "bench-apply", root, args) as bench:
        for i in range(args.nodes):
            bench.pool.add_node(f"qn-{i}", memory_limit="8Gi")
        bench.operator.start()
        with Watcher(bench.cluster, bench.ns) as watcher:
            for r in range(args.rounds):
                row = one_round(bench, watcher)
                rounds.append({"round": r + 1, **row})
                print(
                    f"round {r + 1}: apply→Loaded {row['apply_to_loaded_s']:.3f}s "
                    f"(kubectl {row['kubectl_apply_s']:.3f}s), bare load_index of the busiest share "
                    f"{row['bare_load_index_busiest_s']:.3f}s, querynodes direct "
                    f"{row['querynodes_direct_s']:.3f}s, overhead {row['overhead_s']:+.3f}s"
                )

    med = {k: median([row[k] for row in rounds]) for k in (
        "apply_to_loaded_s", "kubectl_apply_s", "created_to_loaded_s", "bare_load_index_busiest_s",
        "querynodes_direct_s", "overhead_s")}  # fmt: skip
    best_overhead = min(row["overhead_s"] for row in rounds)
    result = {
        "nodes": args.nodes,
        "rounds": rounds,
        "median": med,
        "overhead_s_median": med["overhead_s"],
        "overhead_s_best": best_overhead,
        "ratio_median": med["apply_to_loaded_s"] / med["bare_load_index_busiest_s"],
        "operator_over_direct_s_median": med["apply_to_loaded_s"] - med["querynodes_direct_s"],
        "goal_overhead_s": 0.5,
        "note": "bare = hnswlib load_index of the busiest node's index files in one fresh process "
        "(page cache warm); the querynodes also verify sha256 and load scalar columns and $meta",
    }
    path = write_result("operator_apply", args.size, args, bench, result)
    print(
        f"\nsample {args.size}, {args.nodes} querynodes, {args.rounds} rounds (median); "
        f"loadavg {result['loadavg_before'][0]:.1f} → {result['loadavg_after'][0]:.1f}"
    )
    print(f"apply → Loaded:                       {med['apply_to_loaded_s']:.3f} s")
    print(f"  of which kubectl apply:             {med['kubectl_apply_s']:.3f} s")
    print(f"bare load_index, busiest node share:  {med['bare_load_index_busiest_s']:.3f} s")
    print(f"querynodes alone (same placement):    {med['querynodes_direct_s']:.3f} s")
    print(
        f"overhead vs bare: {med['overhead_s']:+.3f} s (best {best_overhead:+.3f} s), "
        f"ratio {result['ratio_median']:.2f}   (goal overhead <= 0.5 s)"
    )
    print(f"operator on top of the querynodes alone: {result['operator_over_direct_s_median']:+.3f} s")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
