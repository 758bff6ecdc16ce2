"""`vectorload ingest`, `vectorload sample` and `vectorload compact`. Bad input exits 2 with a
one-line message."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from vectorload.storage.api import DEFAULT_PARTITION, StorageError
from vectorload.storage.ingest import ingest
from vectorload.storage.sample import SAMPLE_SIZES, write_sample
from vectorload.storage.schema_json import load_schema_file


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2


def _run(prog: str, action: Callable[[], None]) -> int:
    try:
        action()
    except StorageError as exc:
        print(f"{prog}: error: {exc.reason}: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30}


def _byte_size(value: str) -> int:
    """`--segment-bytes`: an integer with an optional unit (`64Mi`, `500M`, `1Gi`, `1048576`)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]i?)?[bB]?\s*", value)
    if match is None or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive byte size such as 64Mi or 500M, got {value!r}")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _segment_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--segment-rows",
        type=_positive,
        help="at most this many rows per segment (default: large enough that hnswlib's fixed "
        "per-index cost stays under 5%% of an index's memory; see docs/storage-format.md)",
    )
    parser.add_argument(
        "--segment-bytes",
        type=_byte_size,
        help="about this many bytes of segment files per segment (e.g. 256Mi); with --segment-rows "
        "the smaller wins",
    )


def _vector_args(values: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise StorageError("InvalidArgument", f"--vector {value!r}: expected FIELD=path.npy")
        if name in out:
            raise StorageError("InvalidArgument", f"--vector: field {name!r} given twice")
        out[name] = Path(path)
    return out


def ingest_main(argv: list[str]) -> int:
    prog = "vectorload ingest"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Ingest .npy vectors + JSONL rows, or Parquet files, as sealed segments.",
    )
    parser.add_argument("--root", type=Path, required=True, help="storage root directory")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--partition", default=DEFAULT_PARTITION)
    parser.add_argument(
        "--vector",
        action="append",
        default=[],
        metavar="FIELD=PATH",
        help="vectors of one field (.npy, rows x dim)",
    )
    parser.add_argument(
        "--rows", type=Path, help="JSONL: primary key, scalar fields and dynamic keys per row"
    )
    parser.add_argument(
        "--parquet",
        action="append",
        type=Path,
        metavar="PATH",
        help="a Parquet file with one column per field (vectors as lists of float); repeatable; "
        "instead of --vector/--rows",
    )
    parser.add_argument(
        "--schema", type=Path, help="schema JSON (creates the collection if it does not exist)"
    )
    _segment_args(parser)
    parser.add_argument("--M", type=int, default=16, help="hnswlib M")
    parser.add_argument("--ef-construction", type=int, default=200, help="hnswlib ef_construction")
    parser.add_argument("--threads", type=int, default=-1, help="index build threads (-1 = all cores)")
    parser.add_argument("--no-progress", action="store_true")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args

    def action() -> None:
        schema = None if args.schema is None else load_schema_file(args.schema, args.collection)
        manifests = ingest(
            args.root,
            args.collection,
            args.partition,
            _vector_args(args.vector),
            args.rows,
            segment_rows=args.segment_rows,
            segment_bytes=args.segment_bytes,
            parquet=args.parquet,
            M=args.M,
            ef_construction=args.ef_construction,
            progress=not args.no_progress,
            schema=schema,
            num_threads=args.threads,
        )
        rows = sum(m.rows for m in manifests)
        size = sum(m.total_bytes for m in manifests)
        print(
            f"ingested {rows} rows into {args.collection}/{args.partition}: "
            f"{len(manifests)} segments, {_mib(size)}"
        )

    return _run(prog, action)


def sample_main(argv: list[str]) -> int:
    prog = "vectorload sample"
    parser = argparse.ArgumentParser(
        prog=prog, description="Write the deterministic sample collection `book`."
    )
    parser.add_argument("--root", type=Path, required=True, help="storage root directory")
    parser.add_argument("--size", choices=list(SAMPLE_SIZES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=-1, help="index build threads (-1 = all cores)")
    _segment_args(parser)
    parser.add_argument("--no-progress", action="store_true")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args

    def action() -> None:
        info = write_sample(
            args.root,
            args.size,
            args.seed,
            progress=not args.no_progress,
            num_threads=args.threads,
            segment_rows=args.segment_rows,
            segment_bytes=args.segment_bytes,
        )
        state = "written" if info.written_segments else "already present"
        print(f"sample {info.collection!r} (size={info.size}, seed={info.seed}) {state} in {info.root}")
        for name, p in info.partitions.items():
            print(f"  {name:<10} {p.rows:>9} rows  {p.segments:>3} segments  {_mib(p.bytes):>12}")
        print(f"  {'total':<10} {info.rows:>9} rows  {info.segments:>3} segments  {_mib(info.bytes):>12}")

    return _run(prog, action)


def compact_main(argv: list[str]) -> int:
    prog = "vectorload compact"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Merge sealed segments of one partition (applying deletes), then optionally "
        "remove retired segments older than a grace period.",
    )
    parser.add_argument("--root", type=Path, required=True, help="storage root directory")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--partition", default=DEFAULT_PARTITION)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--segments", nargs="+", metavar="ID", help="the segments to merge into one")
    which.add_argument(
        "--small-rows",
        type=_positive,
        help="merge every group of segments under this many rows (see --target-rows)",
    )
    parser.add_argument("--target-rows", type=_positive, default=200_000, help="rows per merged segment")
    parser.add_argument("--threads", type=int, default=-1, help="index build threads (-1 = all cores)")
    parser.add_argument("--gc", action="store_true", help="then remove retired segments past --grace")
    parser.add_argument("--grace", type=float, default=600.0, help="seconds a retired segment stays")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args

    def action() -> None:
        from vectorload.storage.compaction import collect_garbage, compact, pick_small_segments
        from vectorload.storage.reader import FilesystemReader

        if args.segments:
            groups = [tuple(args.segments)]
        elif args.small_rows:
            live = FilesystemReader(args.root).segments(args.collection, args.partition)
            groups = pick_small_segments(live, small_rows=args.small_rows, target_rows=args.target_rows)
        else:
            groups = []
        for group in groups:
            result = compact(args.root, args.collection, args.partition, group, num_threads=args.threads)
            into = result.segment.segment_id if result.segment is not None else "(every row deleted)"
            print(
                f"compacted {len(result.sources)} segments of {args.collection}/{args.partition} into "
                f"{into}: {result.rows_out} rows ({result.deleted_rows} deleted, "
                f"{result.duplicate_rows} older duplicates dropped)"
            )
        if args.gc:
            gone = collect_garbage(args.root, args.collection, grace_s=args.grace)
            print(f"removed {len(gone.segments)} retired segments")
        elif not groups:
            print("nothing to compact")

    return _run(prog, action)
