"""Shared benchmark plumbing: sample data cache, querynode processes, results files."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vectorload.storage.api import CollectionSchema, SegmentManifest, StorageError
from vectorload.storage.hnsw import space_for
from vectorload.storage.reader import FilesystemReader, segment_file_rel_path
from vectorload.storage.sample import COLLECTION, SAMPLE_SIZES, SampleSpec, write_sample
from vectorload_dev.testing.querynode_harness import QuerynodeProcess
from vectorload_querynode.memory import total_ram

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CACHE = Path(
    os.environ.get("VECTORLOAD_BENCH_CACHE", Path.home() / ".cache" / "vectorload" / "bench-data")
)
TOKEN = "bench-token"
DATA_TOKEN = "bench-data-token"  # the querynode's data API is closed by default


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--size", default="large", choices=["tiny", "small", "medium", "large"], help="sample size"
    )
    p.add_argument(
        "--dim",
        type=int,
        default=DEFAULT_DIM,
        help=f"dimension of book_intro: {DEFAULT_DIM} is the sample as tests use it; another value "
        "builds a bench-only variant with about the same total bytes (fewer, wider rows), "
        "e.g. 768 for production-like embeddings",
    )
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where samples are built once")
    p.add_argument("--host", default="127.0.0.9", help="loopback address for the querynode")
    return p


DEFAULT_DIM = SAMPLE_SIZES["tiny"].intro_dim  # 64: what `vectorload sample` and the tests use
WIDE_EF_CONSTRUCTION = 48  # wide variants only: building 768-d graphs with 100 takes far longer


def _row_bytes(spec: SampleSpec) -> int:
    """About how many bytes of segment files one row takes: both vectors, each index's level-0
    links (2M ids + count), label and level, plus ~90 bytes of scalars, pk and $meta."""
    return 4 * (spec.intro_dim + spec.cover_dim) + 2 * (4 * 2 * spec.M + 4 + 8 + 8) + 90


def bench_spec(size: str, dim: int) -> SampleSpec:
    """The sample preset `size`, or a bench-only variant with `book_intro` of `dim` dimensions and
    about the same total bytes: about the preset's rows per segment (segments sized like the
    sample's, so hnswlib's fixed 2.6 MB per index weighs the same), fewer segments."""
    base = SAMPLE_SIZES[size]
    if dim == base.intro_dim:
        return base
    if dim < 1:
        raise SystemExit(f"--dim must be positive, got {dim}")
    wide = SampleSpec(segments=base.segments, rows_per_segment=1, intro_dim=dim, cover_dim=base.cover_dim)
    rows = base.segments * base.rows_per_segment * _row_bytes(base) / _row_bytes(wide)  # per partition
    segments = max(1, round(rows / base.rows_per_segment))
    return SampleSpec(
        segments=segments,
        rows_per_segment=max(1, round(rows / segments)),
        intro_dim=dim,
        cover_dim=base.cover_dim,
        clusters=base.clusters,
        M=base.M,
        ef_construction=min(base.ef_construction, WIDE_EF_CONSTRUCTION),
    )


def sample_label(size: str, dim: int) -> str:
    """Names the cache directory and the results file: `large`, or `large-d768` for a variant."""
    return size if dim == DEFAULT_DIM else f"{size}-d{dim}"


def ensure_sample(size: str, cache: Path, dim: int = DEFAULT_DIM) -> Path:
    """The sample `book` of this size (and intro dim) under the cache (built on first use)."""
    label = sample_label(size, dim)
    root = cache / label
    started = time.monotonic()
    spec = bench_spec(size, dim)
    wanted = None if dim == DEFAULT_DIM else spec
    try:
        info = write_sample(root, size=size, seed=0, progress=True, spec=wanted)
    except StorageError as exc:
        if exc.reason != "SampleMismatch":
            raise
        # the cache holds this sample as an earlier generator or segment layout wrote it: it is
        # the benchmarks' own cache, so it is rebuilt rather than reused or refused
        print(f"rebuilding the cached sample {label}: {exc.message}")
        shutil.rmtree(root)
        info = write_sample(root, size=size, seed=0, progress=True, spec=wanted)
    if info.written_segments:
        print(
            f"built sample {label} ({spec.describe()}) in {time.monotonic() - started:.0f}s: "
            f"{info.bytes / 1e6:.0f} MB in {root}"
        )
    return root


def vector_fields(root: Path) -> dict[str, tuple[str, int]]:
    """hnswlib space and dim of each vector field of `book`, from its schema."""
    schema: CollectionSchema = FilesystemReader(root).schema(COLLECTION)
    return {f.name: (space_for(f), f.dim or 0) for f in schema.vector_fields}


@dataclass(frozen=True)
class SegmentFiles:
    manifest: SegmentManifest
    paths: dict[str, Path]  # field -> absolute path


def segments(root: Path) -> list[SegmentFiles]:
    reader = FilesystemReader(root)
    out = []
    for partition in reader.partitions(COLLECTION):
        for manifest in reader.segments(COLLECTION, partition):
            paths = {name: root / segment_file_rel_path(manifest, name) for name in manifest.files}
            out.append(SegmentFiles(manifest, paths))
    return out


def warm_page_cache(files: list[Path]) -> None:
    """Read every file once so baseline and querynode both read from the page cache."""
    for path in files:
        with path.open("rb") as fh:
            while fh.read(8 << 20):
                pass


def start_querynode(root: Path, host: str, extra: list[str] | None = None) -> QuerynodeProcess:
    return QuerynodeProcess(
        root,
        host=host,
        token=TOKEN,
        memory_limit=str(total_ram()),
        extra_args=extra or [],
        env={"VECTORLOAD_DATA_TOKEN": DATA_TOKEN},
    ).start()


def load_collection(
    qn: QuerynodeProcess, fields: list[str] | None = None, skip_dynamic: bool = False
) -> float:
    """Load every segment of `book` through the API; seconds until all are loaded."""
    reader = FilesystemReader(qn.root)
    started = time.monotonic()
    expected = 0
    for partition in reader.partitions(COLLECTION):
        ids = [m.segment_id for m in reader.segments(COLLECTION, partition)]
        expected += len(ids)
        status, answer = qn.request(
            "POST",
            "/v1/segments/load",
            {"collection": COLLECTION, "partition": partition, "segments": ids, "fields": fields,
             "skipDynamicField": skip_dynamic},
        )  # fmt: skip
        if status != 200 or any(r["state"] == "refused" for r in answer["results"]):
            raise RuntimeError(f"load refused: {answer}")
    while True:
        _, dist = qn.request("GET", "/v1/distribution")
        states = [s["state"] for s in dist["segments"]]
        if "failed" in states:
            raise RuntimeError(f"a segment failed: {dist}")
        if states.count("loaded") == expected:
            return time.monotonic() - started
        time.sleep(0.02)


def release_collection(qn: QuerynodeProcess) -> None:
    qn.request("POST", "/v1/segments/release", {"collection": COLLECTION, "segments": None})


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def write_result(name: str, size: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{size}.json"
    payload = {
        "benchmark": name,
        "size": size,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "ram_bytes": total_ram(), "python": platform.python_version()},
        **data,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def proc_status(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (the querynode's sha256 helper)."""
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def tree_status(pid: int, key: str) -> int:
    """`proc_status` summed over the process and its children (for VmHWM an upper bound: the
    children's peaks need not coincide with the parent's)."""
    total = proc_status(pid, key)
    for child in child_pids(pid):
        with contextlib.suppress(OSError, KeyError):
            total += proc_status(child, key)
    return total
