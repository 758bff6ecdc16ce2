"""Load time: a querynode loading the whole `book` collection through the API (verify sha256 of
every file, hnswlib indexes, scalar columns, $meta) vs bare `hnswlib.Index.load_index` of the same
index files in one process, and vs bare sha256 + `load_index` of them. Goal: ratio <= 1.15.

The querynode hashes in its sha256 helper process (another core) while it loads; a second
querynode started with `--verify-in-process` (hashing in the loading thread, as before the helper
existed) is measured in the same interleaved rounds for comparison."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.common import (
    ensure_sample,
    load_collection,
    parser,
    release_collection,
    sample_label,
    segments,
    start_querynode,
    vector_fields,
    warm_page_cache,
    write_result,
)

BASELINE = """
import hashlib, sys, time, hnswlib
verify = sys.argv[1] == "verify"
specs = [a.split("|") for a in sys.argv[2:]]
started = time.perf_counter()
indexes = []
for space, dim, path in specs:
    if verify:
        with open(path, "rb") as fh:
            hashlib.file_digest(fh, "sha256")
    index = hnswlib.Index(space=space, dim=int(dim))
    index.load_index(path)
    indexes.append(index)
print(time.perf_counter() - started)
"""


def bare_load_seconds(specs: list[str], verify: bool = False) -> float:
    """load_index of every index file (after sha256 of it with `verify`), sequentially, in a fresh
    process (import time not counted)."""
    mode = "verify" if verify else "plain"
    out = subprocess.run(
        [sys.executable, "-c", BASELINE, mode, *specs], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--load-concurrency", type=int, default=2)
    p.add_argument("--in-process-host", default="127.0.0.10", help="address of the --verify-in-process node")
    args = p.parse_args()
    label = sample_label(args.size, args.dim)
    root = ensure_sample(args.size, args.cache_dir, args.dim)
    segs = segments(root)
    schema_fields = vector_fields(root)
    specs = [
        f"{schema_fields[field][0]}|{schema_fields[field][1]}|{seg.paths[field]}"
        for seg in segs
        for field in schema_fields
    ]
    index_bytes = sum(seg.manifest.files[f].bytes for seg in segs for f in schema_fields)
    all_bytes = sum(seg.manifest.total_bytes for seg in segs)
    warm_page_cache([p for seg in segs for p in seg.paths.values()])
    load_before = os.getloadavg()
    rounds = args.rounds
    concurrency = ["--load-concurrency", str(args.load_concurrency)]
    qn = start_querynode(root, args.host, concurrency)
    in_process = start_querynode(root, args.in_process_host, [*concurrency, "--verify-in-process"])
    vec_fields = ["book_id", *schema_fields]
    try:
        # interleaved rounds, best of each: the machine is shared, so noise only ever adds time
        full, vectors_only, bare, bare_verified, ip_full, ip_vec = [], [], [], [], [], []
        for _ in range(rounds):
            bare.append(bare_load_seconds(specs))
            bare_verified.append(bare_load_seconds(specs, verify=True))
            full.append(load_collection(qn))
            release_collection(qn)
            vectors_only.append(load_collection(qn, vec_fields, skip_dynamic=True))
            release_collection(qn)
            ip_full.append(load_collection(in_process))
            release_collection(in_process)
            ip_vec.append(load_collection(in_process, vec_fields, skip_dynamic=True))
            release_collection(in_process)
            time.sleep(0.2)
    finally:
        qn.stop()
        in_process.stop()
    best_full, best_vec, baseline, verified = min(full), min(vectors_only), min(bare), min(bare_verified)
    best_ip_full, best_ip_vec = min(ip_full), min(ip_vec)
    result = {
        "dims": {name: dim for name, (_, dim) in schema_fields.items()},
        "segments": len(segs),
        "index_bytes": index_bytes,
        "all_file_bytes": all_bytes,
        "baseline_load_index_seconds": baseline,
        "querynode_full_load_seconds": best_full,
        "querynode_vectors_only_load_seconds": best_vec,
        "baseline_sha256_then_load_index_seconds": verified,
        "ratio_full": best_full / baseline,
        "ratio_vectors_only": best_vec / baseline,
        "ratio_vectors_only_to_verified_baseline": best_vec / verified,
        "ratio_full_to_verified_baseline": best_full / verified,
        "verify_in_process_full_load_seconds": best_ip_full,
        "verify_in_process_vectors_only_load_seconds": best_ip_vec,
        "all_rounds_seconds": {
            "baseline_load_index": bare,
            "baseline_sha256_then_load_index": bare_verified,
            "querynode_full": full,
            "querynode_vectors_only": vectors_only,
            "verify_in_process_full": ip_full,
            "verify_in_process_vectors_only": ip_vec,
        },
        "rounds": rounds,
        "load_concurrency": args.load_concurrency,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "note": "best of interleaved rounds; the querynode verifies sha256 of every file before "
        "parsing it, in its helper process (2 cores) while the baselines run in one process",
    }
    path = write_result("querynode_load", label, result)
    print(
        f"sample {label}: {len(segs)} segments, {index_bytes / 1e6:.0f} MB of indexes, "
        f"{all_bytes / 1e6:.0f} MB of files, dims {result['dims']}, load average {load_before}"
    )
    print(f"bare hnswlib load_index (indexes only):        {baseline:.3f} s")
    print(f"bare sha256 + load_index (indexes only):       {verified:.3f} s")
    print(
        f"querynode, all fields + $meta (API):           {best_full:.3f} s   ratio {best_full / baseline:.2f}"
    )
    print(
        f"querynode, pk + vector fields (API):           {best_vec:.3f} s   ratio {best_vec / baseline:.2f}"
    )
    print(f"  vs bare sha256 + load_index:                 ratio {best_vec / verified:.2f}   (goal <= 1.15)")
    print(
        f"--verify-in-process, all fields / pk+vectors: {best_ip_full:.3f} s / {best_ip_vec:.3f} s   "
        f"ratios {best_ip_full / baseline:.2f} / {best_ip_vec / baseline:.2f}"
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
