"""Scale: N CollectionLoads (default 200) × 8 tiny segments each on 6 querynodes, one namespace.

Measures the time from the first create to every resource Loaded (a LIST every 0.5 s), the
operator's peak RSS (VmHWM, and VmRSS sampled every 0.2 s) and CPU seconds (/proc/PID/stat), and
the API-server requests per second the operator causes: kube-apiserver's `apiserver_request_total`
(scraped with the admin token) before and after, minus the benchmark's own requests (counted),
minus the background rate of the same cluster measured first without the operator (the
controller-manager's leases and the like). Done for the loading phase and for a quiet window once
everything is Loaded. The baseline of the loading time is the same segments loaded straight
through the querynodes' API (one request per collection and node, all nodes at once)."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import proc_status
from bench.operator_common import (
    RssSampler,
    add_common_args,
    cpu_seconds,
    operator_bench,
    request_delta,
    write_result,
)
from vectorload.storage.api import DEFAULT_PARTITION, CollectionSchema, FieldSchema
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import QuerynodePool, is_loaded
from vectorload_operator.settings import CRD_GROUP, CRD_PLURAL

Requests = dict[tuple[str, str, str, str], float]


def collection_name(i: int) -> str:
    return f"c{i:04d}"


def ensure_storage(root: Path, collections: int, segments: int, rows: int, dim: int) -> float:
    """Write the collections that are missing (tiny segments, small dims); seconds spent."""
    started = time.monotonic()
    writer = CollectionWriter(root)
    reader = FilesystemReader(root)
    rng = np.random.default_rng(0)
    for i in range(collections):
        name = collection_name(i)
        schema = CollectionSchema(
            name=name,
            fields=(FieldSchema("id", "int64", is_primary=True), FieldSchema("v", "float_vector", dim=dim,
                    metric="l2")),
            dynamic_field=False,
        )  # fmt: skip
        writer.create_collection(schema)
        have = {m.segment_id for m in reader.segments(name, DEFAULT_PARTITION)}
        for j in range(segments):
            sid = f"s{j}"
            if sid in have:
                continue
            first = (i * segments + j) * rows
            writer.write_segment(
                name,
                DEFAULT_PARTITION,
                sid,
                {"v": rng.normal(size=(rows, dim)).astype(np.float32)},
                np.arange(first, first + rows, dtype=np.int64),
                {},
                M=8,
                ef_construction=20,
                num_threads=1,
            )
    return time.monotonic() - started


def direct_load_seconds(pool: QuerynodePool, collections: int, segments: int) -> float:
    """Every segment through the querynodes' API without the operator: collection i on node
    i mod nodes, one load request per collection, nodes in parallel; seconds until all loaded."""
    names = sorted(pool.nodes)
    started = time.monotonic()

    def one(k: int, name: str) -> None:
        qn = pool.nodes[name]
        mine = [collection_name(i) for i in range(collections) if i % len(names) == k]
        for c in mine:
            ids = [f"s{j}" for j in range(segments)]
            body = {"collection": c, "partition": DEFAULT_PARTITION, "segments": ids, "fields": None}
            status, answer = qn.request("POST", "/v1/segments/load", body, timeout=30)
            if status != 200 or any(r["state"] == "refused" for r in answer["results"]):
                raise RuntimeError(f"{name}: {answer}")
        want = len(mine) * segments
        wait_for(
            f"{name} loaded",
            lambda: sum(s["state"] == "loaded" for s in pool.distribution(name)["segments"]) == want,
            timeout=300,
            interval=0.05,
        )

    threads = [threading.Thread(target=one, args=(k, n)) for k, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    for qn in pool.nodes.values():
        for i in range(collections):
            qn.request("POST", "/v1/segments/release", {"collection": collection_name(i), "segments": None})
    return elapsed


def attributed(
    delta: Requests, idle_rate: Requests, seconds: float, own: Requests
) -> tuple[float, dict[str, float]]:
    """Requests in `delta` minus the background (idle rate × seconds) and our own; total and top keys."""
    out: dict[str, float] = {}
    for key in set(delta) | set(idle_rate) | set(own):
        n = delta.get(key, 0.0) - idle_rate.get(key, 0.0) * seconds - own.get(key, 0.0)
        if abs(n) >= 0.5:
            verb, group, resource, sub = key
            if resource:
                label = f"{verb} {resource}{'/' + sub if sub else ''}" + (f" [{group}]" if group else "")
            else:
                label = f"{verb} {sub or '(non-resource)'}"
            out[label] = round(n, 1)
    return sum(out.values()), dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--resources", type=int, default=200, help="CollectionLoads (= collections)")
    p.add_argument("--segments", type=int, default=8, help="segments per collection")
    p.add_argument("--nodes", type=int, default=6)
    p.add_argument("--rows", type=int, default=20, help="rows per segment")
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--idle-window", type=float, default=15.0, help="seconds of background measurement")
    p.add_argument("--quiet-window", type=float, default=15.0, help="seconds measured once all are Loaded")
    add_common_args(p)
    args = p.parse_args()
    n, segs = args.resources, args.segments

    root = args.cache_dir / f"operator-scale-s{segs}-r{args.rows}-d{args.dim}"
    wrote = ensure_storage(root, n, segs, args.rows, args.dim)
    print(f"storage: {n} collections × {segs} segments in {root} ({wrote:.1f}s to write what was missing)")
    with operator_bench("vectorload-bench-scale-", "bench-scale", root, args) as bench:
        cluster, pool, operator = bench.cluster, bench.pool, bench.operator
        for i in range(args.nodes):
            pool.add_node(f"qn-{i}", memory_limit="2Gi")  # each tiny index accounts ~2.6 MB
        direct = direct_load_seconds(pool, n, segs)
        print(f"querynodes alone: {n * segs} segments loaded in {direct:.2f}s")

        # background: the cluster without the operator
        time.sleep(2.0)
        a = cluster.apiserver_requests()
        time.sleep(args.idle_window)
        b = cluster.apiserver_requests()
        # (kube-apiserver does not count GET /metrics in apiserver_request_total)
        idle_rate = {k: v / args.idle_window for k, v in request_delta(a, b).items()}

        before = cluster.apiserver_requests()
        t_start = time.monotonic()
        operator.start()
        cpu_start_up = cpu_seconds(operator.pid)
        with RssSampler(operator.pid) as rss:
            t_apply = time.monotonic()
            for i in range(n):
                pool.apply(collection_name(i), {"collection": collection_name(i)})
            created = time.monotonic() - t_apply
            polls = 0
            loaded = 0
            while True:
                items = pool.collection_loads()
                polls += 1
                loaded = sum(1 for obj in items if is_loaded(obj))
                if loaded == n:
                    break
                if time.monotonic() - t_apply > 900:
                    raise TimeoutError(f"only {loaded}/{n} Loaded after 900s")
                time.sleep(0.5)
            all_loaded = time.monotonic() - t_apply
            cpu_loaded = cpu_seconds(operator.pid)
            t_loaded = time.monotonic()
            after_load = cluster.apiserver_requests()
            time.sleep(args.quiet_window)
            after_quiet = cluster.apiserver_requests()
            cpu_quiet = cpu_seconds(operator.pid)
        peak_rss = proc_status(operator.pid, "VmHWM")
        rss_end = proc_status(operator.pid, "VmRSS")
        load_seconds = t_loaded - t_start
        own_load: Requests = {
            ("POST", CRD_GROUP, CRD_PLURAL, ""): float(n),
            ("LIST", CRD_GROUP, CRD_PLURAL, ""): float(polls),
        }
        load_total, load_by = attributed(request_delta(before, after_load), idle_rate, load_seconds, own_load)
        quiet_total, quiet_by = attributed(
            request_delta(after_load, after_quiet), idle_rate, args.quiet_window, {}
        )

    result: dict[str, Any] = {
        "resources": n,
        "segments_per_resource": segs,
        "querynodes": args.nodes,
        "rows_per_segment": args.rows,
        "dim": args.dim,
        "create_seconds": created,
        "all_loaded_seconds": all_loaded,
        "querynodes_direct_seconds": direct,
        "ratio_to_direct": all_loaded / direct,
        "operator_cpu_seconds_loading": cpu_loaded - cpu_start_up,
        "operator_cpu_seconds_startup": cpu_start_up,
        "operator_cpu_fraction_loading": (cpu_loaded - cpu_start_up) / all_loaded,
        "operator_cpu_fraction_quiet": (cpu_quiet - cpu_loaded) / args.quiet_window,
        "operator_peak_rss_bytes": peak_rss,
        "operator_max_sampled_rss_bytes": rss.max_rss,
        "operator_rss_end_bytes": rss_end,
        "apiserver_requests_loading": round(load_total, 1),
        "apiserver_rps_loading": load_total / load_seconds,
        "apiserver_requests_loading_by_kind": load_by,
        "apiserver_rps_quiet": quiet_total / args.quiet_window,
        "apiserver_requests_quiet_by_kind": quiet_by,
        "background_rps_without_operator": sum(idle_rate.values()),
        "note": "requests = apiserver_request_total delta − background rate × window − the benchmark's own "
        "(creates, LIST polls); watches count when they end; GET /metrics is not counted by the API server",
    }
    path = write_result("operator_scale", f"{n}x{segs}", args, bench, result)
    print(
        f"\n{n} CollectionLoads × {segs} segments on {args.nodes} querynodes; "
        f"loadavg {result['loadavg_before'][0]:.1f} → {result['loadavg_after'][0]:.1f}"
    )
    print(f"create {n} objects: {created:.1f}s; all Loaded after {all_loaded:.1f}s from the first create")
    print(f"querynodes alone, same segments: {direct:.2f}s  (ratio {all_loaded / direct:.1f})")
    print(
        f"operator CPU: {result['operator_cpu_seconds_loading']:.1f}s while loading "
        f"({result['operator_cpu_fraction_loading']:.0%} of a core), "
        f"{result['operator_cpu_fraction_quiet']:.0%} of a core once Loaded; startup {cpu_start_up:.1f}s"
    )
    print(f"operator RSS: peak (VmHWM) {peak_rss / 2**20:.0f} MiB, at the end {rss_end / 2**20:.0f} MiB")
    print(
        f"API-server requests by the operator: {result['apiserver_rps_loading']:.1f}/s while loading "
        f"({load_total:.0f} in {load_seconds:.0f}s), {result['apiserver_rps_quiet']:.2f}/s once Loaded; "
        f"background without the operator {result['background_rps_without_operator']:.2f}/s"
    )
    for label, count in list(load_by.items())[:8]:
        print(f"  loading: {count:8.1f}  {label}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
