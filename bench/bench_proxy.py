"""The Milvus front door: pymilvus search q/s and latency through `vectorload proxy` vs the
querynode's own API vs bare `knn_query` (same client threads, batch 1 and 100), what the one-port
mux adds (gRPC straight to grpc.aio vs through the pump), and `load_collection` wall time through
pymilvus vs `kubectl apply` + wait for Loaded.

Goals (issue 10): the proxy adds <= 1 ms p50 at batch 1 over the querynode's own API; batch-100
q/s through the proxy >= 0.8x bare knn_query with the same number of threads.

Setup: a fresh local control plane, the operator, one querynode (so the proxy's fan-out is one
node and the querynode's own API is the same work; `--search-threads auto`, i.e. this machine's
CPUs), the sample with `book_id` + `book_intro` loaded, top-10, ef 64. Bare hnswlib runs on one
thread and on the querynode's number of threads (the goal's baseline). Every system is measured
in each of `--search-rounds` interleaved rounds (so all see the same load); a figure is the
median of its rounds. Results: bench/results/proxy-<size>.json and docs/bench-proxy-<size>.svg.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import hnswlib
import numpy as np
import numpy.typing as npt
from prometheus_client.parser import text_string_to_metric_families
from pymilvus import MilvusClient
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from bench.common import DEFAULT_CACHE, bench_spec, segments
from bench.operator_common import TOKEN as BENCH_TOKEN  # the querynodes' token (the data API takes it)
from bench.operator_common import Bench, Watcher, operator_bench, prepared_sample, write_result
from vectorload.client import QuerynodeClient
from vectorload.client.transport import Http1Pool
from vectorload.storage.sample import COLLECTION, sample_queries
from vectorload_dev.loopback import free_port, loopback_hosts
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import collection_load, is_loaded
from vectorload_dev.testing.proxy_harness import ROOT_TOKEN, ProxyProcess
from vectorload_querynode.cpus import available_cpus

TOP_K = 10
EF = 64
FIELDS = ["book_id", "book_intro"]

DOCS = Path(__file__).resolve().parents[1] / "docs"
PROXY_SEARCH = ("vectorload_proxy_request_duration_seconds", {"protocol": "grpc", "method": "Search"})
QUERYNODE_SEARCH = ("vectorload_querynode_search_duration_seconds", {"operation": "search"})
SYSTEMS = (  # in this order within a round: the systems each goal compares stand side by side
    "bare_threads",
    "proxy",
    "stub",
    "querynode",
    "querynode_packed",
    "stub_direct",
    "direct_grpc",
    "rpc",
    "rpc_direct",
    "bare",
)
BATCH1_ONLY = frozenset({"rpc", "rpc_direct"})  # a call without vectors: its figure is per call


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def histogram_totals(url: str, name: str, labels: dict[str, str]) -> tuple[float, float]:
    """(sum, count) of one Prometheus histogram series at `url` (a /metrics endpoint)."""
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 (a loopback bench process)
        text = r.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (f"{name}_sum", f"{name}_count") and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                values[sample.name.rsplit("_", 1)[1]] = sample.value
    return values.get("sum", 0.0), values.get("count", 0.0)


class Run:
    """Calls of one system from `threads` client threads for `seconds`: q/s and call latencies."""

    def __init__(self) -> None:
        self.queries = 0
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    def figures(self, elapsed: float) -> dict[str, float]:
        lat = sorted(self.latencies)
        return {
            "qps": self.queries / elapsed,
            "p50_ms": 1000 * lat[len(lat) // 2],
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "calls": len(lat),
        }


def measure(
    make_call: Callable[[], Callable[[npt.NDArray[np.float32]], None]],
    queries: npt.NDArray[np.float32],
    batch: int,
    threads: int,
    seconds: float,
) -> dict[str, float]:
    run = Run()
    chunks = [queries[s : s + batch] for s in range(0, len(queries) - batch + 1, batch)]
    start = threading.Barrier(threads + 1)

    def worker(offset: int) -> None:
        call = make_call()
        call(chunks[0])  # warm: connections, caches
        start.wait()
        i = offset
        local: list[float] = []
        done = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            call(chunks[i % len(chunks)])
            local.append(time.perf_counter() - t0)
            done += batch
            i += 1
        with run.lock:
            run.latencies += local
            run.queries += done

    deadline = float("inf")
    workers = [threading.Thread(target=worker, args=(t * 7,)) for t in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    deadline = began + seconds
    for w in workers:
        w.join()
    return run.figures(time.perf_counter() - began)


# ------------------------------------------------------------------------------------ systems


def bare_call(indexes: list[Any], threads: int) -> Callable[[], Callable[[npt.NDArray[np.float32]], None]]:
    """knn_query on every segment index in this process, top-k over the segments' answers merged
    in numpy. With more than one thread, what the querynode does with as many: a batch smaller
    than `threads` searches the segments side by side in a thread pool (hnswlib releases the GIL),
    a larger one gives each segment's knn_query `num_threads=threads`."""

    def make() -> Callable[[npt.NDArray[np.float32]], None]:
        pool = ThreadPoolExecutor(threads) if threads > 1 else None

        def segment(index: Any, chunk: npt.NDArray[np.float32], n: int) -> tuple[Any, Any]:
            answer: tuple[Any, Any] = index.knn_query(chunk, k=TOP_K, num_threads=n)
            return answer

        def call(chunk: npt.NDArray[np.float32]) -> None:
            if pool is not None and len(chunk) < threads:
                answers = list(pool.map(segment, indexes, [chunk] * len(indexes), [1] * len(indexes)))
            else:
                answers = [segment(index, chunk, threads) for index in indexes]
            all_d = np.hstack([d for _, d in answers])
            all_ids = np.hstack([lab.astype(np.int64) for lab, _ in answers])
            top = np.argpartition(all_d, TOP_K - 1, axis=1)[:, :TOP_K]
            order = np.argsort(np.take_along_axis(all_d, top, 1), axis=1, kind="stable")
            np.take_along_axis(all_ids, np.take_along_axis(top, order, 1), 1)

        return call

    return make


def querynode_call(host: str, port: int) -> Callable[[], Callable[[npt.NDArray[np.float32]], None]]:
    """The querynode's own HTTP API, one keep-alive connection per thread (what a client of it does)."""

    def make() -> Callable[[npt.NDArray[np.float32]], None]:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_TOKEN}"}

        def call(chunk: npt.NDArray[np.float32]) -> None:
            body = json.dumps(
                {
                    "collection": COLLECTION,
                    "annsField": "book_intro",
                    "vectors": chunk.tolist(),
                    "topK": TOP_K,
                    "ef": EF,
                }
            )
            conn.request("POST", "/v1/search", body, headers)
            resp = conn.getresponse()
            payload = resp.read()
            if resp.status != 200:
                raise RuntimeError(payload[:300])

        return call

    return make


def pymilvus_call(uri: str) -> Callable[[], Callable[[npt.NDArray[np.float32]], None]]:
    """pymilvus MilvusClient.search (the client code an application runs), one client per thread."""

    def make() -> Callable[[npt.NDArray[np.float32]], None]:
        client = MilvusClient(uri=uri, token=ROOT_TOKEN)
        params = {"params": {"ef": EF}}

        def call(chunk: npt.NDArray[np.float32]) -> None:
            hits = client.search(
                COLLECTION, list(chunk), anns_field="book_intro", limit=TOP_K, search_params=params
            )
            if len(hits) != len(chunk) or len(hits[0]) != TOP_K:
                raise RuntimeError(f"short answer: {len(hits)} x {len(hits[0]) if hits else 0}")

        return call

    return make


def stub_call(address: str) -> Callable[[], Callable[[npt.NDArray[np.float32]], None]]:
    """The bare gRPC stub with requests encoded by pymilvus' own Prepare beforehand and answers
    not parsed: what the proxy itself adds, without pymilvus' client-side work."""

    def make() -> Callable[[npt.NDArray[np.float32]], None]:
        channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)])
        stub = milvus_pb2_grpc.MilvusServiceStub(channel)
        metadata = [("authorization", base64.b64encode(ROOT_TOKEN.encode()).decode())]
        cache: dict[int, Any] = {}

        def call(chunk: npt.NDArray[np.float32]) -> None:
            key = id(chunk)
            request = cache.get(key)
            if request is None:
                request = cache[key] = Prepare.search_requests_with_expr(
                    COLLECTION, "book_intro", {"params": {"ef": EF}}, TOP_K, data=list(chunk)
                )
            answer = stub.Search(request, metadata=metadata, timeout=60)
            if answer.status.code != 0 or answer.results.num_queries != len(chunk):
                raise RuntimeError(f"search failed: {answer.status.reason}")

        return call

    return make


def querynode_packed_call(url: str) -> Callable[[], Callable[[npt.NDArray[np.float32]], None]]:
    """The querynode as the proxy calls it: `QuerynodeClient.search_columns` (MessagePack over
    `Http1Pool`) on an event loop of the client thread (what one proxy->querynode leg costs)."""

    def make() -> Callable[[npt.NDArray[np.float32]], None]:
        loop = asyncio.new_event_loop()
        client = QuerynodeClient(url, data_token=BENCH_TOKEN, pool=Http1Pool())

        def call(chunk: npt.NDArray[np.float32]) -> None:
            answer = loop.run_until_complete(
                client.search_columns(COLLECTION, chunk, TOP_K, anns_field="book_intro", ef=EF)
            )
            if answer.nq != len(chunk):
                raise RuntimeError(f"short answer: {answer.nq} for {len(chunk)}")

        return call

    return make


def rpc_call(address: str) -> Callable[[], Callable[[npt.NDArray[np.float32]], None]]:
    """A call without search work through the same gRPC path (GetLoadState, answered from the
    proxy's cache): gRPC in and out, the mux, authentication, metrics."""

    def make() -> Callable[[npt.NDArray[np.float32]], None]:
        channel = grpc.insecure_channel(address)
        stub = milvus_pb2_grpc.MilvusServiceStub(channel)
        metadata = [("authorization", base64.b64encode(ROOT_TOKEN.encode()).decode())]
        request = milvus_pb2.GetLoadStateRequest(collection_name=COLLECTION)

        def call(chunk: npt.NDArray[np.float32]) -> None:
            answer = stub.GetLoadState(request, metadata=metadata, timeout=60)
            if answer.status.code != 0:
                raise RuntimeError(f"GetLoadState failed: {answer.status.reason}")

        return call

    return make


# -------------------------------------------------------------------------------------- loads


def load_rounds(bench: Bench, proxy: ProxyProcess, rounds: int) -> dict[str, Any]:
    """load_collection through pymilvus (create + wait for 100 %) vs `kubectl apply` + a watch
    seeing Loaded; each round starts from nothing loaded (released and gone)."""
    client = MilvusClient(uri=proxy.uri, token=ROOT_TOKEN)
    pool = bench.pool
    via_pymilvus: list[float] = []
    via_kubectl: list[float] = []
    with Watcher(bench.cluster, bench.ns) as watcher:
        for _ in range(rounds):
            t0 = time.perf_counter()
            client.load_collection(COLLECTION, load_fields=FIELDS, skip_load_dynamic_field=True)
            via_pymilvus.append(time.perf_counter() - t0)
            client.release_collection(COLLECTION)
            t0 = time.perf_counter()
            after = time.monotonic()
            spec = {"collection": COLLECTION, "loadFields": FIELDS, "skipLoadDynamicField": True}
            pool.kubectl_apply([collection_load("book-by-kubectl", spec)])
            watcher.wait(
                lambda o: o["metadata"]["name"] == "book-by-kubectl" and is_loaded(o), after, 300, "Loaded"
            )
            via_kubectl.append(time.perf_counter() - t0)
            pool.delete("book-by-kubectl")
            wait_for("book-by-kubectl gone", lambda: not pool.exists("book-by-kubectl"), timeout=120)
    client.close()
    return {
        "load_pymilvus_s": statistics.median(via_pymilvus),
        "load_kubectl_s": statistics.median(via_kubectl),
        "load_pymilvus_rounds_s": via_pymilvus,
        "load_kubectl_rounds_s": via_kubectl,
    }


# --------------------------------------------------------------------------------------- plot


def svg_plot(figures: dict[str, Any], title: str) -> str:
    """Grouped bars of q/s per system at batch 1 and 100 (a dependency-free SVG)."""
    systems = [
        ("bare", "bare knn_query", "#888"),
        ("bare_threads", "bare, querynode's threads", "#bbb"),
        ("querynode", "querynode API", "#4c78a8"),
        ("stub", "gRPC stub → proxy", "#e45756"),
        ("proxy", "pymilvus → proxy", "#f58518"),
        ("direct_grpc", "pymilvus → grpc (no mux)", "#54a24b"),
    ]
    width, height, left, top, bottom = 900, 360, 40, 40, 60
    panels = [1, 100]
    panel_w = (width - left - 20) / len(panels)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
    ]
    for p, batch in enumerate(panels):
        values = [float(figures.get(f"{key}_batch{batch}", {}).get("qps", 0)) for key, _, _ in systems]
        top_value = max(values) * 1.15 or 1
        x0 = left + p * panel_w
        plot_h = height - top - bottom
        parts.append(
            f'<text x="{x0 + panel_w / 2}" y="{height - 15}" text-anchor="middle">batch {batch} (q/s)</text>'
        )
        bar_w = panel_w / (len(systems) + 1)
        for i, ((_, label, color), value) in enumerate(zip(systems, values, strict=True)):
            h = plot_h * value / top_value
            x = x0 + bar_w * (i + 0.5)
            y = top + plot_h - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.8:.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{label}</title></rect>'
            )
            parts.append(
                f'<text x="{x + bar_w * 0.4:.1f}" y="{y - 4:.1f}" text-anchor="middle">{value:.0f}</text>'
            )
    for i, (_, label, color) in enumerate(systems):
        parts.append(f'<rect x="{left + i * 140}" y="{height - 45}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{left + i * 140 + 14}" y="{height - 36}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="medium", choices=["tiny", "small", "medium", "large"])
    p.add_argument("--seconds", type=float, default=4.0, help="measuring time per figure and round")
    p.add_argument(
        "--search-rounds",
        type=int,
        default=3,
        help="interleaved rounds of every system (figures: the medians of the rounds)",
    )
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset to measure (a subset prints its figures and writes no result)",
    )
    p.add_argument("--batches", default="1,100", help="batch sizes (other than 1,100: no result is written)")
    p.add_argument("--threads", type=int, default=1, help="client threads (the same for every system)")
    p.add_argument("--rounds", type=int, default=3, help="load rounds per way of loading (0: none)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--operator-arg", action="append", default=[])
    p.add_argument("--label", default="")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    root = prepared_sample(args.size, args.cache_dir)
    spec = bench_spec(args.size, 64)
    queries = sample_queries(42, 400, "book_intro", spec)
    segs = segments(root)
    figures: dict[str, Any] = {}
    indexes = []
    for seg in segs:
        index = hnswlib.Index(space="l2", dim=spec.intro_dim)
        index.load_index(str(seg.paths["book_intro"]))
        index.set_ef(EF)
        indexes.append(index)

    search_threads = available_cpus()  # the querynode's --search-threads auto, same machine
    hosts = loopback_hosts(1, 250, 250)
    with operator_bench("vectorload-bench-proxy-", "bench-proxy", root, args) as bench:
        bench.pool.add_node("qn-0", memory_limit="8Gi")
        bench.operator.start()
        proxy_host = next(hosts)
        direct_port = free_port(proxy_host)
        proxy = ProxyProcess(
            bench.cluster.plane,
            bench.workdir,
            bench.ns,
            root,
            data_token=BENCH_TOKEN,
            host=proxy_host,
            extra_args=["--grpc-direct-port", str(direct_port)],
        ).start()
        try:
            if args.rounds:
                figures.update(load_rounds(bench, proxy, args.rounds))
            client = MilvusClient(uri=proxy.uri, token=ROOT_TOKEN)
            client.load_collection(COLLECTION, load_fields=FIELDS, skip_load_dynamic_field=True)
            client.close()
            qn = bench.pool.nodes["qn-0"]
            makers = {
                "bare": bare_call(indexes, 1),
                "bare_threads": bare_call(indexes, search_threads),
                "querynode": querynode_call(qn.host, int(qn.port or 0)),
                "stub": stub_call(proxy.address),
                "stub_direct": stub_call(f"{proxy_host}:{direct_port}"),
                "querynode_packed": querynode_packed_call(qn.url),
                "rpc": rpc_call(proxy.address),
                "rpc_direct": rpc_call(f"{proxy_host}:{direct_port}"),
                "proxy": pymilvus_call(proxy.uri),
                "direct_grpc": pymilvus_call(f"http://{proxy_host}:{direct_port}"),
            }
            chosen = [k for k in SYSTEMS if k in set(args.systems.split(","))]
            batches = [int(b) for b in args.batches.split(",")]
            runs: dict[str, list[dict[str, float]]] = {}
            for round_ in range(args.search_rounds):  # interleaved: every system sees the same load
                for batch in batches:
                    # every other round in reverse, so that a load trend favours no side of a pair
                    for key in chosen if round_ % 2 == 0 else chosen[::-1]:
                        if batch != 1 and key in BATCH1_ONLY:
                            continue
                        series = (
                            (f"{proxy.http_url}/metrics", PROXY_SEARCH),
                            (f"{qn.url}/metrics", QUERYNODE_SEARCH),
                        )
                        before = [histogram_totals(url, *what) for url, what in series]
                        cpu_before = [cpu_seconds(pid) for pid in (proxy.pid, qn.pid)]
                        run = measure(makers[key], queries, batch, args.threads, args.seconds)
                        cpu_after = [cpu_seconds(pid) for pid in (proxy.pid, qn.pid)]
                        for side, c0, c1 in zip(("proxy", "querynode"), cpu_before, cpu_after, strict=True):
                            run[f"{side}_cpu_ms_per_call"] = 1000 * (c1 - c0) / max(run["calls"], 1)
                        if key == "stub":  # where the time goes: each side's own mean time per call
                            after = [histogram_totals(url, *what) for url, what in series]
                            sides = ("proxy_handler", "querynode_handler")
                            for side, h0, h1 in zip(sides, before, after, strict=True):
                                run[f"{side}_mean_ms"] = 1000 * (h1[0] - h0[0]) / max(h1[1] - h0[1], 1)
                        runs.setdefault(f"{key}_batch{batch}", []).append(run)
            for name, rounds in runs.items():
                metrics = [m for m in rounds[0] if m != "calls"]
                figures[name] = {
                    **{m: statistics.median(r[m] for r in rounds) for m in metrics},
                    "calls": sum(r["calls"] for r in rounds),
                    "rounds": rounds,
                }
        finally:
            proxy.stop()
        del indexes
        if set(chosen) != set(SYSTEMS) or batches != [1, 100]:
            for name, f in figures.items():
                if isinstance(f, dict) and "qps" in f:
                    extra = "".join(
                        f", {m} {v:.3f}" for m, v in f.items() if m.endswith(("_mean_ms", "_per_call"))
                    )
                    qps, p50, p99 = f["qps"], f["p50_ms"], f["p99_ms"]
                    print(f"{name}: {qps:.1f} q/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms{extra}")
            return
        b1 = {k: figures[f"{k}_batch1"]["p50_ms"] for k in SYSTEMS}

        def paired(a: str, b: str, batch: int, metric: str, op: str) -> list[float]:
            ra, rb = figures[f"{a}_batch{batch}"]["rounds"], figures[f"{b}_batch{batch}"]["rounds"]
            return [
                x[metric] - y[metric] if op == "-" else x[metric] / y[metric]
                for x, y in zip(ra, rb, strict=True)
            ]

        figures.update(
            proxy_added_p50_ms=b1["stub"] - b1["querynode"],
            # the same, paired within each interleaved round (robust to the load drifting between
            # rounds): the median over rounds of (stub p50 - querynode p50), and per round
            proxy_added_p50_ms_paired=statistics.median(paired("stub", "querynode", 1, "p50_ms", "-")),
            proxy_added_p50_ms_rounds=paired("stub", "querynode", 1, "p50_ms", "-"),
            ratio_proxy_to_bare_threads_batch100_paired=statistics.median(
                paired("proxy", "bare_threads", 100, "qps", "/")
            ),
            ratio_proxy_to_bare_threads_batch100_rounds=paired("proxy", "bare_threads", 100, "qps", "/"),
            ratio_stub_to_bare_threads_batch100_paired=statistics.median(
                paired("stub", "bare_threads", 100, "qps", "/")
            ),
            pymilvus_added_p50_ms=b1["proxy"] - b1["stub"],
            mux_added_p50_ms=b1["proxy"] - b1["direct_grpc"],
            mux_added_stub_p50_ms=b1["stub"] - b1["stub_direct"],
            # where the proxy's batch-1 time goes (medians of the same run's figures): one gRPC call
            # without search work, one proxy->querynode leg as the proxy makes it, and the rest
            breakdown_batch1_ms={
                "grpc_call_direct": b1["rpc_direct"],
                "mux": b1["rpc"] - b1["rpc_direct"],
                "querynode_leg": b1["querynode_packed"],
                "search_in_proxy_rest": b1["stub_direct"] - b1["rpc_direct"] - b1["querynode_packed"],
            },
            ratio_proxy_to_bare_batch100=figures["proxy_batch100"]["qps"] / figures["bare_batch100"]["qps"],
            ratio_stub_to_bare_batch100=figures["stub_batch100"]["qps"] / figures["bare_batch100"]["qps"],
            # the goal's baseline: bare hnswlib with the querynode's number of search threads
            ratio_proxy_to_bare_threads_batch100=figures["proxy_batch100"]["qps"]
            / figures["bare_threads_batch100"]["qps"],
            ratio_stub_to_bare_threads_batch100=figures["stub_batch100"]["qps"]
            / figures["bare_threads_batch100"]["qps"],
            search_threads=search_threads,
            ratio_proxy_to_querynode_batch100=figures["proxy_batch100"]["qps"]
            / figures["querynode_batch100"]["qps"],
            ratio_querynode_to_bare_batch100=figures["querynode_batch100"]["qps"]
            / figures["bare_batch100"]["qps"],
            segments=len(segs),
            top_k=TOP_K,
            ef=EF,
            threads=args.threads,
            fields=FIELDS,
        )
        path = write_result(
            "proxy", args.size + (f"-t{args.threads}" if args.threads != 1 else ""), args, bench, figures
        )
    label = f"{args.size}" + (f"-t{args.threads}" if args.threads != 1 else "")
    svg = DOCS / f"bench-proxy-{label}.svg"
    svg.write_text(
        svg_plot(
            figures, f"search q/s, sample {args.size}, top-{TOP_K}, ef {EF}, {args.threads} client thread(s)"
        )
    )
    print(
        f"sample {args.size}: {len(segs)} segments on one querynode, top-{TOP_K}, ef {EF}, "
        f"{args.threads} thread(s)"
    )
    for batch in (1, 100):
        for k in SYSTEMS:
            f = figures.get(f"{k}_batch{batch}")
            if f is not None:
                print(
                    f"batch {batch:>3} {k:<17} {f['qps']:8.1f} q/s  p50 {f['p50_ms']:6.2f} ms  "
                    f"p99 {f['p99_ms']:6.2f} ms"
                )
    parts = ", ".join(f"{k} {v:.2f}" for k, v in figures["breakdown_batch1_ms"].items())
    print(f"batch-1 breakdown (ms): {parts}")
    print(
        f"paired within rounds: proxy adds {figures['proxy_added_p50_ms_paired']:.2f} ms p50 at batch 1 "
        f"(rounds {[round(x, 2) for x in figures['proxy_added_p50_ms_rounds']]}); batch 100 through the "
        f"proxy {figures['ratio_proxy_to_bare_threads_batch100_paired']:.2f}x bare with the querynode's "
        f"threads (rounds {[round(x, 2) for x in figures['ratio_proxy_to_bare_threads_batch100_rounds']]}; "
        f"bare stub {figures['ratio_stub_to_bare_threads_batch100_paired']:.2f}x)"
    )
    print(
        f"proxy adds {figures['proxy_added_p50_ms']:.2f} ms p50 at batch 1 over the querynode's API "
        f"(goal <= 1 ms; bare stub), pymilvus' client {figures['pymilvus_added_p50_ms']:.2f} ms more, mux "
        f"{figures['mux_added_p50_ms']:.2f} ms; batch 100 through the proxy = "
        f"{figures['ratio_proxy_to_bare_threads_batch100']:.2f}x bare with {search_threads} threads, as the "
        f"querynode (goal >= 0.8; bare stub {figures['ratio_stub_to_bare_threads_batch100']:.2f}x); "
        f"{figures['ratio_proxy_to_bare_batch100']:.2f}x bare on one thread"
    )
    if args.rounds:
        print(
            f"load_collection via pymilvus {figures['load_pymilvus_s']:.2f} s, kubectl apply + wait "
            f"{figures['load_kubectl_s']:.2f} s (median of {args.rounds})"
        )
    print(f"results: {path}; plot: {svg}")


if __name__ == "__main__":
    main()
