"""Shared benchmark plumbing: sample data cache, querynode processes, results files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vectorload.storage.api import SegmentManifest
from vectorload.storage.reader import FilesystemReader, segment_file_rel_path
from vectorload.storage.sample import COLLECTION, write_sample
from vectorload_querynode.memory import total_ram
from vectorload_querynode.testing import QuerynodeProcess

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CACHE = Path(
    os.environ.get("VECTORLOAD_BENCH_CACHE", Path.home() / ".cache" / "vectorload" / "bench-data")
)
TOKEN = "bench-token"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--size", default="large", choices=["tiny", "small", "medium", "large"], help="sample size"
    )
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where samples are built once")
    p.add_argument("--host", default="127.0.0.9", help="loopback address for the querynode")
    return p


def ensure_sample(size: str, cache: Path) -> Path:
    """The sample `book` of this size under the cache (built on first use, reused after)."""
    root = cache / size
    started = time.monotonic()
    info = write_sample(root, size=size, seed=0, progress=True)
    if info.written_segments:
        print(
            f"built sample {size} in {time.monotonic() - started:.0f}s: {info.bytes / 1e6:.0f} MB in {root}"
        )
    return root


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
        root, host=host, token=TOKEN, memory_limit=str(total_ram()), extra_args=extra or []
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
