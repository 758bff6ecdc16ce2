"""Load time: a querynode loading the whole `book` collection through the API (verify sha256 of
every file, hnswlib indexes, scalar columns, $meta) vs bare `hnswlib.Index.load_index` of the same
index files in one process. Goal: ratio <= 1.15."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import (
    ensure_sample,
    load_collection,
    parser,
    release_collection,
    segments,
    start_querynode,
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
    args = p.parse_args()
    root = ensure_sample(args.size, args.cache_dir)
    segs = segments(root)
    schema_fields = {"book_intro": ("l2", 64), "cover": ("cosine", 16)}
    specs = [
        f"{schema_fields[field][0]}|{schema_fields[field][1]}|{seg.paths[field]}"
        for seg in segs
        for field in schema_fields
    ]
    index_bytes = sum(seg.manifest.files[f].bytes for seg in segs for f in schema_fields)
    all_bytes = sum(seg.manifest.total_bytes for seg in segs)
    warm_page_cache([p for seg in segs for p in seg.paths.values()])
    rounds = args.rounds
    qn = start_querynode(root, args.host, ["--load-concurrency", str(args.load_concurrency)])
    try:
        # interleaved rounds, best of each: the machine is shared, so noise only ever adds time
        full, vectors_only, bare, bare_verified = [], [], [], []
        for _ in range(rounds):
            bare.append(bare_load_seconds(specs))
            bare_verified.append(bare_load_seconds(specs, verify=True))
            full.append(load_collection(qn))
            release_collection(qn)
            vectors_only.append(load_collection(qn, ["book_id", "book_intro", "cover"], skip_dynamic=True))
            release_collection(qn)
            time.sleep(0.2)
    finally:
        qn.stop()
    best_full, best_vec, baseline, verified = min(full), min(vectors_only), min(bare), min(bare_verified)
    result = {
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
        "rounds": rounds,
        "load_concurrency": args.load_concurrency,
        "note": "best of interleaved rounds; the querynode verifies sha256 of every file before reading it",
    }
    path = write_result("querynode_load", args.size, result)
    print(
        f"sample {args.size}: {len(segs)} segments, {index_bytes / 1e6:.0f} MB of indexes, "
        f"{all_bytes / 1e6:.0f} MB of files"
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
    print(f"results: {path}")


if __name__ == "__main__":
    main()
