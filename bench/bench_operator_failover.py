"""Failover: kill -9 the querynode holding the most of `book`; time until the CollectionLoad is
Loaded again on the survivors (Ready=True, the victim out of its replica, every segment loaded,
seen on a watch), minus the reload time of the moved segments measured separately as bare
`hnswlib.Index.load_index` of their index files in one process. Goal: <= 5 s (Milvus' session
TTL alone is 30 s).

Two ways the failure shows, alternated over the trials:
- unreachable: the Pod object stays Running/Ready; the operator finds out by its distribution pull
- notready: the Pod is patched NotReady right after the kill (what a kubelet's probe would do)
After each trial the victim's Pod is deleted and a fresh querynode is added, so every trial
starts with the same number of nodes."""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

from bench.bench_querynode_load import bare_load_seconds
from bench.operator_common import (
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
from vectorload_dev.testing.operator_harness import (
    QuerynodePool,
    collection_load,
    condition,
    is_loaded,
    loaded_segments,
)

MODES = ("unreachable", "notready")


def recovered_without(victim: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        replicas = (obj.get("status") or {}).get("replicas") or []
        return (
            is_loaded(obj)
            and condition(obj, "Ready").get("status") == "True"
            and bool(replicas)
            and all(victim not in r.get("nodes", []) for r in replicas)
            and all(r.get("loadedSegments") == r.get("totalSegments") for r in replicas)
        )

    return check


def noticed(obj: dict[str, Any]) -> bool:
    return (
        condition(obj, "Ready").get("status") == "False" or condition(obj, "Degraded").get("status") == "True"
    )


def settled(pool: QuerynodePool, watcher: Watcher) -> bool:
    """Loaded and Ready, and no querynode is loading anything."""
    if not watcher.events:
        return False
    obj = watcher.events[-1].obj
    if not (is_loaded(obj) and condition(obj, "Ready").get("status") == "True"):
        return False
    return all(s["state"] == "loaded" for n in pool.nodes for s in pool.distribution(n)["segments"])


def trial(pool: QuerynodePool, watcher: Watcher, mode: str) -> dict[str, Any]:
    wait_for("settled", lambda: settled(pool, watcher), timeout=120, interval=0.1)
    time.sleep(1.0)
    held = {n: loaded_segments(pool.distribution(n)) for n in pool.nodes}
    victim = max(held, key=lambda n: (len(held[n]), n))
    moved = [(part, seg) for part, seg, _ in held[victim]]
    killed = time.monotonic()
    pool.nodes[victim].kill()
    if mode == "notready":
        pool.set_ready(victim, False)
    seen = watcher.wait(recovered_without(victim), after=killed, timeout=120, what="Loaded again")
    recovered = seen.at - killed
    detections = [e.at - killed for e in watcher.events if killed <= e.at <= seen.at and noticed(e.obj)]
    reload = bare_load_seconds(index_specs(pool.root, moved))
    pool.remove_node(victim)
    return {
        "mode": mode,
        "victim": victim,
        "moved_segments": len(moved),
        "moved_bytes": sum(b for *_, b in held[victim]),
        "recovered_s": recovered,
        "first_status_change_s": detections[0] if detections else None,
        "bare_reload_s": reload,
        "net_s": recovered - reload,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", default="medium", choices=["tiny", "small", "medium", "large"])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--trials", type=int, default=3, help="trials per mode")
    add_common_args(p)
    args = p.parse_args()

    root = prepared_sample(args.size, args.cache_dir)
    trials: list[dict[str, Any]] = []
    with operator_bench("vectorload-bench-failover-", "bench-failover", root, args) as bench:
        pool = bench.pool
        names = (f"qn-{i}" for i in itertools.count())
        for _ in range(args.nodes):
            pool.add_node(next(names), memory_limit="8Gi")
        bench.operator.start()
        with Watcher(bench.cluster, bench.ns) as watcher:
            pool.kubectl_apply([collection_load("book", {"collection": COLLECTION})])
            for i, mode in enumerate(m for _ in range(args.trials) for m in MODES):
                row = trial(pool, watcher, mode)
                trials.append({"trial": i + 1, **row})
                first = row["first_status_change_s"]
                print(
                    f"trial {i + 1} ({mode}): {row['moved_segments']} segments of {row['victim']} moved, "
                    f"Loaded again after {row['recovered_s']:.2f}s "
                    f"(first status change {'-' if first is None else f'{first:.2f}s'}), "
                    f"bare reload {row['bare_reload_s']:.3f}s, net {row['net_s']:.2f}s"
                )
                pool.add_node(next(names), memory_limit="8Gi")

    summary: dict[str, Any] = {}
    for mode in MODES:
        rows = [t for t in trials if t["mode"] == mode]
        summary[mode] = {
            "recovered_s_median": median([t["recovered_s"] for t in rows]),
            "recovered_s_max": max(t["recovered_s"] for t in rows),
            "bare_reload_s_median": median([t["bare_reload_s"] for t in rows]),
            "net_s_median": median([t["net_s"] for t in rows]),
            "net_s_max": max(t["net_s"] for t in rows),
        }
    result = {
        "nodes": args.nodes,
        "trials": trials,
        "summary": summary,
        "goal_net_s": 5.0,
        "milvus_session_ttl_s": 30.0,
        "note": "net = (kill → Loaded again on the survivors) − bare load_index of the moved segments' "
        "index files, sequential in one process; the survivors reload them in parallel",
    }
    path = write_result("operator_failover", args.size, args, bench, result)
    print(
        f"\nsample {args.size}, {args.nodes} querynodes, {args.trials} trials per mode; "
        f"loadavg {result['loadavg_before'][0]:.1f} → {result['loadavg_after'][0]:.1f}"
    )
    for mode, s in summary.items():
        print(
            f"{mode:12s} kill → Loaded again: median {s['recovered_s_median']:.2f}s, "
            f"max {s['recovered_s_max']:.2f}s; "
            f"minus bare reload ({s['bare_reload_s_median']:.3f}s): median {s['net_s_median']:.2f}s, "
            f"max {s['net_s_max']:.2f}s   (goal <= 5 s; Milvus session TTL 30 s)"
        )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
