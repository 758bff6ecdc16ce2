"""Peak memory: a querynode's peak RSS while loading the whole `book` collection vs the sum of the
loaded files' sizes (goal <= 1.3x), vs what bare hnswlib needs for the same index files, and RSS
after release vs before load.

RSS figures are of the querynode *and* its sha256 helper process (both count against a pod's
memory limit); the helper's peak is added to the querynode's, an upper bound."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import (
    ensure_sample,
    load_collection,
    parser,
    proc_status,
    release_collection,
    sample_label,
    segments,
    start_querynode,
    tree_status,
    vector_fields,
    write_result,
)

BARE = """
import sys, hnswlib
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
before = rss()
indexes = []
for spec in sys.argv[1:]:
    space, dim, path = spec.split("|")
    index = hnswlib.Index(space=space, dim=int(dim))
    index.load_index(path)
    indexes.append(index)
print(rss() - before)
"""


def bare_hnswlib_rss_increase(specs: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c", BARE, *specs], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    label = sample_label(args.size, args.dim)
    root = ensure_sample(args.size, args.cache_dir, args.dim)
    segs = segments(root)
    file_bytes = sum(seg.manifest.total_bytes for seg in segs)
    fields = vector_fields(root)
    index_bytes = sum(seg.manifest.files[f].bytes for seg in segs for f in fields)
    bare = bare_hnswlib_rss_increase(
        [f"{sp}|{dim}|{seg.paths[f]}" for seg in segs for f, (sp, dim) in fields.items()]
    )
    qn = start_querynode(root, args.host)
    try:
        qn.request("GET", "/v1/distribution")
        baseline = tree_status(qn.pid, "VmRSS")
        helper = baseline - proc_status(qn.pid, "VmRSS")
        seconds = load_collection(qn)
        peak = tree_status(qn.pid, "VmHWM")  # the kernel's high-water marks of RSS
        _, dist = qn.request("GET", "/v1/distribution")
        accounted = sum(s["bytes"] for s in dist["segments"])
        loaded = tree_status(qn.pid, "VmRSS")
        release_collection(qn)
        time.sleep(1.0)
        released = tree_status(qn.pid, "VmRSS")
    finally:
        qn.stop()
    result = {
        "dims": {name: dim for name, (_, dim) in fields.items()},
        "helper_rss_bytes": helper,
        "file_bytes": file_bytes,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "loaded_rss_bytes": loaded,
        "released_rss_bytes": released,
        "load_seconds": seconds,
        "ratio_peak_to_files": peak / file_bytes,
        "ratio_peak_increase_to_files": (peak - baseline) / file_bytes,
        "ratio_released_to_baseline": released / baseline,
        "index_file_bytes": index_bytes,
        "bare_hnswlib_rss_increase_bytes": bare,
        "bare_hnswlib_ratio_to_index_files": bare / index_bytes,
        "same_data_floor_bytes": bare + file_bytes - index_bytes,
        "ratio_peak_increase_to_floor": (peak - baseline) / (bare + file_bytes - index_bytes),
        "accounted_bytes": accounted,
        "ratio_peak_increase_to_accounted": (peak - baseline) / accounted,
    }
    path = write_result("querynode_memory", label, result)
    mb = 1e6
    print(
        f"sample {label}: {file_bytes / mb:.0f} MB of segment files (all fields + $meta), dims "
        f"{result['dims']}; sha256 helper {helper / mb:.0f} MB RSS (included below)"
    )
    print(
        f"RSS before load {baseline / mb:.0f} MB, peak {peak / mb:.0f} MB, loaded {loaded / mb:.0f} MB, "
        f"after release {released / mb:.0f} MB"
    )
    print(f"peak RSS / file bytes:              {peak / file_bytes:.2f}  (goal <= 1.3)")
    print(f"(peak RSS - baseline) / file bytes: {(peak - baseline) / file_bytes:.2f}")
    print(
        f"bare hnswlib, same index files: +{bare / mb:.0f} MB RSS for {index_bytes / mb:.0f} MB of files "
        f"({bare / index_bytes:.2f}x: 65536 mutexes = 2.6 MB per index)"
    )
    floor = bare + file_bytes - index_bytes
    print(f"(peak - baseline) / (bare hnswlib + other files): {(peak - baseline) / floor:.2f}")
    print(f"(peak - baseline) / admission-accounted bytes:   {(peak - baseline) / accounted:.2f}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
