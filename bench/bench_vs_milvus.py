"""vectorload vs a real Milvus 2.3.5 on the same rows and queries: load, release, RSS, recall vs q/s.

Measured: load and release wall time, RSS added by loading, and recall@10 vs q/s (ef sweep) at
batch 1 and 100, at equal recall.

Systems, measured one after the other in one run, in interleaved rounds (the machine is shared:
noise only ever slows a system down, so each figure is the best of its rounds):

* `milvus`: Milvus standalone from PyPI `milvus==2.3.5`, driven through pymilvus 2.3.5 from a venv
  of its own (`bench/milvus_env.py`, `bench/milvus_driver.py`), in a private network namespace.
  It gets the sample's rows (pk + `book_intro`, read back from the written collection), the same
  partitions, HNSW with the sample's M / efConstruction and metric.
* `vectorload`: a real querynode process (`QuerynodeProcess`) loading every segment (pk +
  `book_intro`, no `$meta`) and searching through its HTTP API.
* `bare`: hnswlib in this process on the querynode's very index files, searched segment by
  segment with a numpy top-k merge -- what the querynode could do at most with the same indexes.

* `vectorload-proxy`: vectorload's Milvus front door -- a local control plane, the operator, one
  querynode pod and `vectorload proxy` -- driven by the same driver code (`milvus_driver.py`) as
  Milvus, in `connect` mode with this venv's pymilvus (2.4+ is needed to send `load_fields`: the
  sample's collection has more fields than the two Milvus got, and loads the same two here).
  `load` is `load_collection` through pymilvus until `load_state` says Loaded (the operator does
  the work), `release` returns when the CollectionLoad is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import hnswlib
import numpy as np
import numpy.typing as npt
import pymilvus

from bench import vs_milvus_report as report
from bench.common import (
    DEFAULT_CACHE,
    TOKEN,
    SegmentFiles,
    bench_spec,
    ensure_sample,
    load_collection,
    parser,
    release_collection,
    sample_label,
    segments,
    start_querynode,
    warm_page_cache,
    write_result,
)
from bench.milvus_env import (
    DEFAULT_MILVUS_CACHE,
    MILVUS_VERSION,
    PymilvusDriver,
    ensure_venv,
    isolation_report,
    tree_rss,
)
from bench.operator_common import TOKEN as OPERATOR_TOKEN  # the querynode pods' token
from bench.operator_common import operator_bench, prepared_sample
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.sample import COLLECTION, sample_queries
from vectorload.wire import querynode as wire
from vectorload.wire.hits import HitColumns
from vectorload_dev.testing.proxy_harness import ROOT_TOKEN, ProxyProcess
from vectorload_querynode.cpus import available_cpus

FIELD = "book_intro"
QUERY_SEED = 42
BATCHES = (1, 100)
TARGET_RECALL = {"medium": 0.95, "large": 0.75}
EF_VECTORLOAD = (10, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128)
EF_MILVUS = (16, 32, 64, 128, 192, 256, 320, 384, 448, 512)
EF_CAP = 8192
MILVUS_METRIC = {"l2": "L2", "ip": "IP", "cosine": "COSINE"}


@dataclass(frozen=True)
class SearchRun:
    """Full passes over the queries for at least the asked time. The figure is the fastest pass
    (this machine is shared: other work only ever slows a pass down); the mean is kept too."""

    qps: float  # queries / seconds of the fastest pass
    mean_qps: float  # all queries / all seconds
    passes: int
    ids: list[list[int]]  # primary keys of the first pass, per query

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> SearchRun:
        return cls(float(answer["qps"]), float(answer["mean_qps"]), int(answer["passes"]), answer["ids"])


def timed_passes(one_pass: Callable[[], list[list[int]]], queries: int, seconds: float) -> SearchRun:
    """Run `one_pass` (every query once, answering their primary keys) until `seconds` have gone by
    (at least once). `milvus_driver.Client.search` does the same on the Milvus side."""
    first: list[list[int]] | None = None
    times: list[float] = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        ids = one_pass()
        times.append(time.perf_counter() - t0)
        if first is None:
            if len(ids) != queries:
                raise RuntimeError(f"a pass answered {len(ids)} queries, expected {queries}")
            first = ids
        if time.perf_counter() - started >= seconds:
            return SearchRun(queries / min(times), queries * len(times) / sum(times), len(times), first)


class System(Protocol):
    name: str
    label: str
    has_release: bool  # False: release() exists but is no figure (bare hnswlib drops references)

    def load(self) -> float: ...
    def release(self) -> float: ...
    def rss(self) -> int | None: ...
    def search(self, ef: int, batch: int, seconds: float, count: int | None = None) -> SearchRun: ...


@dataclass(frozen=True)
class Dataset:
    """The rows both systems get, the queries and their exact top-k."""

    partitions: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]  # name -> (pks, vectors)
    queries: npt.NDArray[np.float32]
    truth: npt.NDArray[np.int64]  # (queries, k) primary keys
    pk_field: str
    metric: str  # the sample's: l2 | ip | cosine
    dim: int
    M: int
    ef_construction: int

    @property
    def rows(self) -> int:
        return sum(len(pks) for pks, _ in self.partitions.values())


@contextlib.contextmanager
def proxy_and_milvus(
    bench: Any, storage: Path, work: Path, milvus_cache: Path
) -> Iterator[tuple[PymilvusDriver, PymilvusDriver]]:
    """The write benchmarks' two clients, running the same pymilvus 2.3.5 code: one against a
    proxy (`--no-auth --no-compaction`) on `storage` in `bench`'s control plane, one against a
    fresh Milvus 2.3.5 standalone in its own network namespace; all stopped at the end."""
    from vectorload_dev.testing.proxy_harness import ProxyProcess

    python = ensure_venv(milvus_cache)
    proxy = ProxyProcess(
        bench.cluster.plane, bench.workdir, bench.ns, storage, data_token=None, no_auth=True,
        extra_args=["--no-compaction"],
    ).start()  # fmt: skip
    try:
        ours = PymilvusDriver.connect(python, proxy.host, proxy.port, work / "driver-vectorload.log")
        try:
            (work / "milvus").mkdir()
            milvus = PymilvusDriver.serve(python, work / "milvus", milvus_cache, work / "driver-milvus.log")
            try:
                yield ours, milvus
            finally:
                milvus.close()
        finally:
            ours.close()
    finally:
        proxy.stop()


def write_bench_args(doc: str, rounds_help: str) -> argparse.Namespace:
    """The command line of the write benchmarks (`bench_insert`, `bench_import`): the sample's
    size, interleaved rounds per system, caches, operator flags, a result label."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="medium", choices=["tiny", "small", "medium", "large"])
    p.add_argument("--rounds", type=int, default=1, help=rounds_help)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--milvus-cache", type=Path, default=DEFAULT_MILVUS_CACHE)
    p.add_argument("--operator-arg", action="append", default=[])
    p.add_argument("--label", default="")
    p.add_argument("--keep", action="store_true")
    return p.parse_args()


def sample_rows(args: argparse.Namespace) -> tuple[dict[str, Any], str, str, int, int, int, int]:
    """`read_rows` of the prepared sample of `args.size`, and the row count (printed)."""
    sample = prepared_sample(args.size, args.cache_dir)
    partitions, pk_field, metric, dim, m, efc = read_rows(sample, segments(sample))
    rows = sum(len(k) for k, _ in partitions.values())
    print(f"sample {args.size}: {rows:,} rows, {dim}-d {metric}, HNSW M={m} efConstruction={efc}", flush=True)
    return partitions, pk_field, metric, dim, m, efc, rows


def read_rows(root: Path, segs: list[SegmentFiles]) -> tuple[dict[str, Any], str, str, int, int, int]:
    """Every row's pk and `book_intro` vector, read back from the written collection (vectors with
    `get_items` from each segment's index: label = row position), grouped by partition."""
    schema = FilesystemReader(root).schema(COLLECTION)
    field = schema.field(FIELD)
    if field is None or field.dim is None or field.metric is None:
        raise SystemExit(f"the sample has no vector field {FIELD!r}")
    pk_field = schema.primary_key.name
    params = {json.dumps(seg.manifest.index_params[FIELD], sort_keys=True) for seg in segs}
    if len(params) != 1:
        raise SystemExit(f"segments of {FIELD} were built with different index parameters: {params}")
    index_params = json.loads(params.pop())
    parts: dict[str, tuple[list[Any], list[Any]]] = {}
    for seg in segs:
        pks = np.load(seg.paths[pk_field], allow_pickle=False)
        index = hnswlib.Index(space=field.metric, dim=field.dim)
        index.load_index(str(seg.paths[FIELD]))
        vectors = np.asarray(index.get_items(np.arange(seg.manifest.rows)), dtype=np.float32)
        del index
        keys, vecs = parts.setdefault(seg.manifest.partition, ([], []))
        keys.append(pks)
        vecs.append(vectors)
    partitions = {
        p: (np.concatenate(ks), np.ascontiguousarray(np.concatenate(vs))) for p, (ks, vs) in parts.items()
    }
    return partitions, pk_field, field.metric, field.dim, index_params["M"], index_params["ef_construction"]


def exact_top_k(
    vectors: npt.NDArray[np.float32], pks: npt.NDArray[np.int64], queries: npt.NDArray[np.float32], k: int,
    metric: str,
) -> npt.NDArray[np.int64]:  # fmt: skip
    """Brute force in float64 over chunks of rows: the true top-k primary keys of every query."""
    q = queries.astype(np.float64)
    if metric == "cosine":
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    best_d = np.full((len(q), 0), np.inf)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    step = 50_000
    for start in range(0, len(vectors), step):
        x = vectors[start : start + step].astype(np.float64)
        if metric == "l2":
            d = (q * q).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2.0 * q @ x.T
        elif metric == "ip":
            d = 1.0 - q @ x.T
        else:
            d = 1.0 - q @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
        take = min(k, d.shape[1])
        part = np.argpartition(d, take - 1, axis=1)[:, :take]
        best_d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + start], axis=1)
        keep = np.argsort(best_d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(best_d, keep, 1), np.take_along_axis(best_i, keep, 1)
    truth: npt.NDArray[np.int64] = pks[best_i]
    return truth


# --- the systems --------------------------------------------------------------------------------


class QuerynodeSystem:
    """A real querynode process; loads through `/v1/segments/load`, searches through `/v1/search`
    (one keep-alive HTTP connection, one request at a time, bodies built before timing). JSON
    bodies, or with `binary` the MessagePack search (`PackedSearchRequest` / `PackedSearchAnswer`:
    vectors, ids and distances as raw arrays), the one `QuerynodeClient.search` sends."""

    has_release = True

    def __init__(
        self, root: Path, host: str, pk_field: str, queries: npt.NDArray[np.float32], top_k: int,
        binary: bool = False, extra: list[str] | None = None,
    ) -> None:  # fmt: skip
        self.qn = start_querynode(root, host, extra)
        self.fields = [pk_field, FIELD]
        self.queries, self.top_k, self.binary = queries, top_k, binary
        self.name = "vectorload-msgpack" if binary else "vectorload"
        self.label = (
            "vectorload querynode (HTTP API, MessagePack)" if binary else "vectorload querynode (HTTP API)"
        )

    def load(self) -> float:
        return load_collection(self.qn, self.fields, skip_dynamic=True)

    def release(self) -> float:
        started = time.perf_counter()
        release_collection(self.qn)
        return time.perf_counter() - started

    def rss(self) -> int:
        return tree_rss(self.qn.pid)  # the querynode and its sha256 helper

    def _bodies(self, queries: npt.NDArray[np.float32], ef: int, batch: int) -> list[bytes]:
        chunks = [queries[s : s + batch] for s in range(0, len(queries), batch)]
        if self.binary:
            return [
                wire.encode_msgpack(
                    wire.PackedSearchRequest(
                        collection=COLLECTION, dim=c.shape[1], vectors=c.astype("<f4").tobytes(),
                        anns_field=FIELD, top_k=self.top_k, ef=ef,
                    )
                )
                for c in chunks
            ]  # fmt: skip
        return [
            json.dumps(
                {
                    "collection": COLLECTION,
                    "annsField": FIELD,
                    "vectors": c.tolist(),
                    "topK": self.top_k,
                    "ef": ef,
                }
            ).encode()
            for c in chunks
        ]

    def _ids(self, payload: bytes) -> list[list[int]]:
        if self.binary:
            columns = HitColumns.unpack(wire.decode_msgpack(payload, wire.PackedSearchAnswer))
            ids = columns.ids.tolist()
            bounds = np.concatenate(([0], np.cumsum(columns.counts))).tolist()
            return [ids[a:b] for a, b in itertools.pairwise(bounds)]
        return [[hit["id"] for hit in hits] for hits in json.loads(payload)["results"]]

    def search(self, ef: int, batch: int, seconds: float, count: int | None = None) -> SearchRun:
        bodies = self._bodies(self.queries[:count], ef, batch)
        media = wire.SEARCH_MSGPACK if self.binary else "application/json"
        headers = {"Content-Type": media, "Accept": media, "Authorization": f"Bearer {TOKEN}"}
        conn = http.client.HTTPConnection(self.qn.host, int(self.qn.port or 0), timeout=120)

        def one_pass() -> list[list[int]]:
            ids: list[list[int]] = []
            for body in bodies:
                conn.request("POST", "/v1/search", body, headers)
                resp = conn.getresponse()
                payload = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"search answered {resp.status}: {payload[:300]!r}")
                ids += self._ids(payload)
            return ids

        try:
            return timed_passes(one_pass, len(self.queries[:count]), seconds)
        finally:
            conn.close()

    def close(self) -> None:
        self.qn.stop()


class BareHnswlib:
    """hnswlib in this process on the querynode's index files: `knn_query` per segment with
    `threads` threads, top-k over the segments' answers merged in numpy. With more than one
    thread, a batch smaller than `threads` (batch 1) searches the segments side by side in a
    thread pool instead (hnswlib releases the GIL): what the querynode does with as many threads,
    without HTTP."""

    has_release = False

    def __init__(
        self, segs: list[SegmentFiles], pk_field: str, space: str, dim: int,
        queries: npt.NDArray[np.float32], top_k: int, threads: int,
    ) -> None:  # fmt: skip
        self.segs, self.pk_field, self.space, self.dim = segs, pk_field, space, dim
        self.queries, self.top_k, self.threads = queries, top_k, threads
        self.indexes: list[Any] = []
        self.pks: list[npt.NDArray[np.int64]] = []
        self.name = "bare" if threads == 1 else f"bare-t{threads}"
        self.label = "bare hnswlib (same index files)" + ("" if threads == 1 else f", {threads} threads")
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def load(self) -> float:
        """`load_index` of every index file and `np.load` of every pk column, sequentially."""
        started = time.perf_counter()
        for seg in self.segs:
            index = hnswlib.Index(space=self.space, dim=self.dim)
            index.load_index(str(seg.paths[FIELD]))
            self.indexes.append(index)
            self.pks.append(np.load(seg.paths[self.pk_field], allow_pickle=False))
        return time.perf_counter() - started

    def release(self) -> float:
        started = time.perf_counter()
        self.indexes, self.pks = [], []
        gc.collect()
        return time.perf_counter() - started

    def rss(self) -> None:
        return None  # in the benchmark's own process, which holds the rows and much else

    def search(self, ef: int, batch: int, seconds: float, count: int | None = None) -> SearchRun:
        queries = self.queries[:count]
        k = self.top_k
        for index in self.indexes:
            index.set_ef(ef)
        chunks = [queries[s : s + batch] for s in range(0, len(queries), batch)]

        def segment(index: Any, chunk: npt.NDArray[np.float32], threads: int) -> tuple[Any, Any]:
            answer: tuple[Any, Any] = index.knn_query(chunk, k=k, num_threads=threads)
            return answer

        def one_pass() -> list[list[int]]:
            ids: list[list[int]] = []
            for chunk in chunks:
                labels, dists = [], []
                if self.pool is not None and len(chunk) < self.threads:
                    answers = list(
                        self.pool.map(
                            segment, self.indexes, [chunk] * len(self.indexes), [1] * len(self.indexes)
                        )
                    )
                else:
                    answers = [segment(index, chunk, self.threads) for index in self.indexes]
                for (lab, dist), pks in zip(answers, self.pks, strict=True):
                    labels.append(pks[lab.astype(np.int64)])
                    dists.append(dist)
                all_d, all_pk = np.hstack(dists), np.hstack(labels)
                top = np.argpartition(all_d, k - 1, axis=1)[:, :k]
                order = np.argsort(np.take_along_axis(all_d, top, 1), axis=1, kind="stable")
                ids += np.take_along_axis(all_pk, np.take_along_axis(top, order, 1), 1).tolist()
            return ids

        return timed_passes(one_pass, len(queries), seconds)

    def close(self) -> None:
        self.release()
        if self.pool is not None:
            self.pool.shutdown()


class PymilvusSystem:
    """Anything reached through pymilvus (`milvus_driver.py`): the same client calls whatever is
    behind the endpoint -- Milvus now, vectorload's proxy once it exists."""

    has_release = True

    def __init__(
        self, name: str, label: str, driver: PymilvusDriver, queries_path: Path, metric: str, top_k: int
    ) -> None:
        self.name, self.label, self.driver = name, label, driver
        self.queries_path, self.metric, self.top_k = queries_path, metric, top_k

    def load(self) -> float:
        return float(self.driver.request("load", collection=COLLECTION)["seconds"])

    def release(self) -> float:
        return float(self.driver.request("release", collection=COLLECTION)["seconds"])

    def rss(self) -> int | None:
        return None

    def search(self, ef: int, batch: int, seconds: float, count: int | None = None) -> SearchRun:
        answer = self.driver.request(
            "search", collection=COLLECTION, field=FIELD, queries=str(self.queries_path), batch=batch,
            ef=ef, top_k=self.top_k, seconds=seconds, metric=self.metric, count=count,
        )  # fmt: skip
        return SearchRun.from_answer(answer)

    def segments(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.driver.request("segments", collection=COLLECTION)["segments"]
        return found

    def close(self) -> None:
        self.driver.close()


class MilvusSystem(PymilvusSystem):
    """Milvus standalone started by the driver; RSS is its whole process tree."""

    def __init__(self, driver: PymilvusDriver, queries_path: Path, metric: str, top_k: int) -> None:
        super().__init__("milvus", f"Milvus {MILVUS_VERSION} (pymilvus)", driver, queries_path, metric, top_k)
        self.pid = int(driver.hello["pid"])

    def restart(self) -> float:
        answer = self.driver.request("restart")
        self.pid = int(answer["pid"])
        return float(answer["start_seconds"])

    def rss(self) -> int:
        return tree_rss(self.pid)


class ProxySystem(PymilvusSystem):
    """vectorload through its Milvus front door: a fresh local control plane, the operator, one
    querynode pod (`--search-threads auto`, as the `vectorload` system) and `vectorload proxy`;
    the driver (this venv's pymilvus) loads, searches and releases through the proxy.
    RSS is the querynode's process tree, as for `vectorload`."""

    def __init__(
        self, root: Path, pk_field: str, queries_path: Path, metric: str, top_k: int, work: Path, host: str
    ) -> None:
        self._stack = contextlib.ExitStack()
        try:
            bench = self._stack.enter_context(
                operator_bench(
                    "vectorload-vs-milvus-proxy-", "bench-vs-milvus", root,
                    argparse.Namespace(operator_arg=[], keep=False),
                )
            )  # fmt: skip
            self.qn = bench.pool.add_node("qn-0", memory_limit="16Gi")
            bench.operator.start()
            proxy = ProxyProcess(
                bench.cluster.plane, bench.workdir, bench.ns, root, data_token=OPERATOR_TOKEN, host=host
            ).start()
            self._stack.callback(proxy.stop)
            driver = PymilvusDriver.connect(
                Path(sys.executable), proxy.host, proxy.port, work / "proxy-driver.log", token=ROOT_TOKEN
            )
        except BaseException:
            self._stack.close()
            raise
        super().__init__(
            "vectorload-proxy",
            f"vectorload proxy (pymilvus {pymilvus.__version__})",
            driver, queries_path, metric, top_k,
        )  # fmt: skip
        self.load_fields = [pk_field, FIELD]

    def load(self) -> float:
        answer = self.driver.request("load", collection=COLLECTION, load_fields=self.load_fields)
        return float(answer["seconds"])

    def rss(self) -> int:
        return tree_rss(self.qn.pid)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._stack.close()


# --- the run ------------------------------------------------------------------------------------


def ef_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"an ef list is comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"ef values must be positive integers, got {text!r}")
    return values


class Sweeps:
    """Every (system, batch, ef) point over the rounds: q/s per round, recall of each round."""

    def __init__(self, truth: npt.NDArray[np.int64]) -> None:
        self.truth = truth
        self.points: dict[str, dict[int, dict[int, dict[str, Any]]]] = {}
        self.first_ids: dict[tuple[str, int, int], list[list[int]]] = {}

    def record(self, system: str, batch: int, ef: int, run: SearchRun) -> float:
        recall = report.recall_at_k(run.ids, self.truth)
        point = self.points.setdefault(system, {}).setdefault(batch, {}).setdefault(ef, {"ef": ef})
        for key, value in (
            ("qps_rounds", run.qps),
            ("mean_qps_rounds", run.mean_qps),
            ("passes_rounds", run.passes),
        ):
            point.setdefault(key, []).append(value)
        point.setdefault("recall_rounds", []).append(recall)
        self.first_ids.setdefault((system, batch, ef), run.ids)
        return recall

    def as_json(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for system, batches in self.points.items():
            out[system] = {}
            for batch, efs in batches.items():
                out[system][str(batch)] = [
                    {**p, "recall": float(np.median(p["recall_rounds"]))} for _, p in sorted(efs.items())
                ]
        return out


def sweep(
    system: System, batch: int, efs: list[int], sweeps: Sweeps, seconds: float, extend_to: float | None
) -> list[int]:
    """Measure each ef in ascending order, right after a load. Milvus 2.3.5's answers at one ef
    depend on the largest ef searched since its load (ef 64 on `medium`: recall 0.73 fresh, 0.85
    after one ef-512 search, at ef-64 speed or less), so every sweep starts from a fresh load and
    only ever goes up: each point is what a Milvus that never searched with a larger ef answers.
    With `extend_to`, larger ef values (x1.5) are added until that recall is reached. Returns
    the ef list used."""
    system.search(efs[0], batch, 0.0, count=min(20, len(sweeps.truth)))  # warm up, at the lowest ef
    recalls = {ef: sweeps.record(system.name, batch, ef, system.search(ef, batch, seconds)) for ef in efs}
    if extend_to is not None:
        while max(recalls.values()) < extend_to and max(recalls) < EF_CAP:
            ef = min(EF_CAP, math.ceil(max(recalls) * 1.5))
            recalls[ef] = sweeps.record(system.name, batch, ef, system.search(ef, batch, seconds))
    return sorted(recalls)


def rotate(systems: list[Any], shift: int) -> list[Any]:
    shift %= len(systems)
    return systems[shift:] + systems[:shift]


def settled(fn: Callable[[], int | None], settle: float) -> int | None:
    time.sleep(settle)
    return fn()


def run(args: Any) -> dict[str, Any]:
    label = sample_label(args.size, args.dim)
    target = args.target_recall or TARGET_RECALL.get(args.size, 0.95)
    root = ensure_sample(args.size, args.cache_dir, args.dim)
    spec = bench_spec(args.size, args.dim)
    segs = segments(root)
    started = time.monotonic()
    partitions, pk_field, metric, dim, m, efc = read_rows(root, segs)
    queries = sample_queries(QUERY_SEED, args.queries, FIELD, spec)
    all_pks = np.concatenate([p for p, _ in partitions.values()])
    all_vecs = np.concatenate([v for _, v in partitions.values()])
    truth = exact_top_k(all_vecs, all_pks, queries, args.top_k, metric)
    del all_vecs
    data = Dataset(partitions, queries, truth, pk_field, metric, dim, m, efc)
    print(
        f"sample {label}: {data.rows:,} rows in {len(segs)} segments, {dim}-d {metric}, HNSW M={m} "
        f"efConstruction={efc}; {len(queries)} queries, exact top-{args.top_k} in "
        f"{time.monotonic() - started:.0f}s",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="vectorload-vs-milvus-"))
    systems: list[Any] = []
    result: dict[str, Any] = {}
    try:
        queries_path = work / "queries.npy"
        np.save(queries_path, queries)
        part_files = []
        for name, (pks, vecs) in partitions.items():
            np.save(work / f"{name}-pk.npy", pks)
            np.save(work / f"{name}-vectors.npy", vecs)
            part_files.append(
                {"name": name, "pk": f"{work}/{name}-pk.npy", "vectors": f"{work}/{name}-vectors.npy"}
            )
        python = ensure_venv(args.milvus_cache)
        (work / "milvus").mkdir()
        driver = PymilvusDriver.serve(python, work / "milvus", args.milvus_cache, work / "milvus-driver.log")
        milvus = MilvusSystem(driver, queries_path, MILVUS_METRIC[metric], args.top_k)
        systems.append(milvus)
        hello = driver.hello
        print(f"Milvus {MILVUS_VERSION} up in {hello['start_seconds']:.1f}s ({hello['namespace']})")
        ingest = driver.request(
            "ingest", collection=COLLECTION, pk=pk_field, field=FIELD, dim=dim, metric=MILVUS_METRIC[metric],
            M=m, efConstruction=efc, partitions=part_files, shards=args.milvus_shards,
        )  # fmt: skip
        print(
            f"Milvus ingest: insert {ingest['insert_seconds']:.1f}s, flush {ingest['flush_seconds']:.1f}s, "
            f"index {ingest['index_seconds']:.1f}s ({ingest['entities']:,} entities)",
            flush=True,
        )
        milvus.restart()  # a fresh process: RSS added by the first load is the load's alone
        isolation = isolation_report(milvus.pid)
        print(
            f"Milvus listeners: {len(isolation['listeners_in_milvus_netns'])} in its own network namespace "
            f"(interfaces {isolation['interfaces_in_milvus_netns']}), "
            f"{len(isolation['milvus_listeners_in_bench_netns'])} in this machine's",
            flush=True,
        )
        vectorload = QuerynodeSystem(root, args.host, pk_field, queries, args.top_k)
        systems.append(vectorload)
        if args.binary:
            host = args.host.rsplit(".", 1)[0] + "." + str(int(args.host.rsplit(".", 1)[1]) + 1)
            systems.append(QuerynodeSystem(root, host, pk_field, queries, args.top_k, binary=True))
        proxy: ProxySystem | None = None
        if args.proxy:
            host = args.host.rsplit(".", 1)[0] + "." + str(int(args.host.rsplit(".", 1)[1]) + 2)
            proxy = ProxySystem(root, pk_field, queries_path, MILVUS_METRIC[metric], args.top_k, work, host)
            systems.append(proxy)
        bares = [BareHnswlib(segs, pk_field, metric, dim, queries, args.top_k, t) for t in args.bare_threads]
        systems += bares
        warm_page_cache([seg.paths[f] for seg in segs for f in (pk_field, FIELD)])

        efs: dict[str, list[int]] = {
            s.name: list(args.ef_milvus if s is milvus else args.ef_vectorload) for s in systems
        }
        load: dict[str, dict[str, Any]] = {
            s.name: {"load_seconds": [], "release_seconds": [], "rss_rounds": []} for s in systems
        }
        for s in systems:
            load[s.name]["rss_fresh"] = settled(s.rss, args.settle)
        sweeps = Sweeps(truth)
        load_average = [os.getloadavg()]
        milvus_segments_first: list[dict[str, Any]] = []
        loaded = False
        for rnd in range(args.rounds):
            order = rotate(systems, rnd)
            for batch in BATCHES:
                for s in order:
                    entry = load[s.name]
                    if loaded:
                        released = s.release()
                        if s.has_release:
                            entry["release_seconds"].append(released)
                    before = settled(s.rss, args.settle)
                    entry["load_seconds"].append(s.load())
                    entry["rss_rounds"].append(
                        {"before_load": before, "after_load": settled(s.rss, args.settle)}
                    )
                    if not milvus_segments_first and s is milvus:
                        milvus_segments_first = milvus.segments()
                    extend = target if rnd == 0 and batch == BATCHES[0] else None
                    efs[s.name] = sweep(s, batch, efs[s.name], sweeps, args.seconds, extend)
                    entry["rss_rounds"][-1]["after_searches"] = s.rss()
                    points = [
                        (ef, p["recall_rounds"][-1], p["qps_rounds"][-1])
                        for ef, p in sorted(sweeps.points[s.name][batch].items())
                    ]
                    print(
                        f"round {rnd + 1}/{args.rounds} batch {batch:>3} {s.name:<10} "
                        f"load {entry['load_seconds'][-1]:.2f}s  "
                        + "  ".join(f"ef{ef}:{r:.3f}/{q:,.0f}" for ef, r, q in points),
                        flush=True,
                    )
                loaded = True
            load_average.append(os.getloadavg())
        milvus_segments_last = milvus.segments()  # compaction may rewrite segments meanwhile
        for s in systems:
            released = s.release()
            if s.has_release:
                load[s.name]["release_seconds"].append(released)
            load[s.name]["rss_after_final_release"] = settled(s.rss, args.settle)
        first = bares[0].name  # the answers of every querynode system against bare hnswlib's

        def same_answers(name: str, ef: int) -> float:
            pairs = zip(sweeps.first_ids[(name, 1, ef)], sweeps.first_ids[(first, 1, ef)], strict=True)
            return sum(a == b for a, b in pairs) / len(queries)

        identical = {
            vl.name: {
                ef: same_answers(vl.name, ef)
                for ef in efs[vl.name]
                if (first, 1, ef) in sweeps.first_ids and (vl.name, 1, ef) in sweeps.first_ids
            }
            for vl in systems
            if isinstance(vl, QuerynodeSystem)
        }
        result = {
            "size": label,
            "milvus_version": MILVUS_VERSION,
            "rows": data.rows,
            "dim": dim,
            "metric": metric,
            "hnsw": {"M": m, "efConstruction": efc},
            "queries": len(queries),
            "query_seed": QUERY_SEED,
            "top_k": args.top_k,
            "target_recall": target,
            "rounds": args.rounds,
            "seconds_per_point": args.seconds,
            "batches": list(BATCHES),
            "systems": {
                "milvus": {
                    "label": milvus.label,
                    "short": f"Milvus {MILVUS_VERSION}\n(pymilvus)",
                    "segments": len(milvus_segments_first),
                    "segment_rows": [s["rows"] for s in milvus_segments_first],
                    "segments_unchanged_during_run": sorted(s["segment_id"] for s in milvus_segments_first)
                    == sorted(s["segment_id"] for s in milvus_segments_last),
                    "shards": ingest["shards"],
                    "ingest": {k: v for k, v in ingest.items() if k.endswith("seconds")},
                    "rss_includes": "the milvus standalone process (and any children): every coordinator "
                    "and node in one process, embedded etcd, Go heap and segcore (C++) memory",
                    "isolation": isolation,
                    "client": "pymilvus 2.3.5 ORM Collection.search, consistency_level Eventually, one call "
                    "at a time from one thread of the driver process (in Milvus' network namespace)",
                },
                **{
                    vl.name: {
                        "label": vl.label,
                        "short": "vectorload querynode\n(HTTP API" + (", MessagePack)" if vl.binary else ")"),
                        "segments": len(segs),
                        "fields_loaded": vl.fields,
                        "search_threads": available_cpus(),  # --search-threads auto, same machine
                        "rss_includes": "the querynode process and its sha256 helper (VmRSS of both)",
                        "client": "http.client keep-alive, "
                        + ("MessagePack" if vl.binary else "JSON")
                        + " bodies prepared before timing, one request at a time",
                        "recall_identical_to_bare_batch1": identical[vl.name],
                    }
                    for vl in systems
                    if isinstance(vl, QuerynodeSystem)
                },
                **(
                    {}
                    if proxy is None
                    else {
                        proxy.name: {
                            "label": proxy.label,
                            "short": "vectorload proxy\n(pymilvus)",
                            "segments": len(segs),
                            "fields_loaded": proxy.load_fields,
                            "search_threads": available_cpus(),
                            "rss_includes": "the querynode process and its sha256 helper (VmRSS of both); "
                            "the proxy, operator and control plane are not counted",
                            "client": f"pymilvus {pymilvus.__version__} ORM Collection.search through "
                            "vectorload proxy (gRPC), the same driver code as Milvus', one call at a time",
                        }
                    }
                ),
                **{
                    b.name: {
                        "label": b.label,
                        "short": "bare hnswlib\n(same index files"
                        + ("" if b.threads == 1 else f", {b.threads} thr.")
                        + ")",
                        "segments": len(segs),
                        "threads": b.threads,
                        "rss_includes": "not measured (runs inside the benchmark process)",
                    }
                    for b in bares
                },
            },
            "ef": efs,
            "load": load,
            "sweeps": sweeps.as_json(),
            "load_average": load_average,
        }
        result["summary"] = report.summarise(result)
    finally:
        for s in reversed(systems):
            s.close()
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    p = parser(__doc__ or "")
    p.set_defaults(size="medium", host="127.0.0.31")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best of each figure)")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum measuring time per sweep point")
    p.add_argument("--queries", type=int, default=400)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--target-recall", type=float, default=None, help="default 0.95 (medium), 0.75 (large)")
    p.add_argument("--ef-vectorload", type=ef_list, default=EF_VECTORLOAD, help="ef values, comma-separated")
    p.add_argument("--ef-milvus", type=ef_list, default=EF_MILVUS, help="ef values, comma-separated")
    p.add_argument(
        "--bare-threads",
        type=ef_list,
        default=(1, 2),
        help="threads of bare hnswlib, comma-separated: one bare system each (more than one: the "
        "querynode's plan -- segments side by side below that batch size, num_threads above)",
    )
    p.add_argument(
        "--no-binary",
        dest="binary",
        action="store_false",
        help="measure the querynode through JSON only (not also through its MessagePack search)",
    )
    p.add_argument(
        "--no-proxy",
        dest="proxy",
        action="store_false",
        help="leave out vectorload's proxy (pymilvus -> proxy -> querynode pod on a local control plane)",
    )
    p.add_argument("--milvus-shards", type=int, default=None, help="shards of the Milvus collection")
    p.add_argument("--milvus-cache", type=Path, default=DEFAULT_MILVUS_CACHE, help="Milvus venv + binaries")
    p.add_argument("--settle", type=float, default=1.0, help="seconds before each RSS reading")
    args = p.parse_args()
    if args.rounds < 1 or args.seconds < 0 or args.queries < 1 or args.top_k < 1:
        raise SystemExit("--rounds, --queries and --top-k must be positive, --seconds not negative")
    if args.target_recall is not None and not 0 < args.target_recall <= 1:
        raise SystemExit(f"--target-recall must be in (0, 1], got {args.target_recall}")
    if args.settle < 0:
        raise SystemExit("--settle must not be negative")
    if min(args.ef_milvus) < args.top_k:
        raise SystemExit(f"Milvus needs ef >= top-k ({args.top_k}): got {args.ef_milvus}")
    result = run(args)
    label = sample_label(args.size, args.dim)
    path = write_result("vs_milvus", label, result)
    print()
    print(report.table(result))
    print()
    for key, value in sorted(result["summary"]["ratios"].items()):
        print(f"{key}: {value:.2f}")
    for plot in report.plot(result):
        print(f"plot: {plot}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
