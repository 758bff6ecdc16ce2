"""`vectorload proxy`: the Milvus front door (gRPC MilvusService + REST v2 on one port, REST v1).

Exit codes: 0 after SIGTERM/SIGINT, 1 when it cannot start (a port in use, an unreadable
credentials file, no Kubernetes configuration), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .api import Settings
from .requests import Limits
from .server import DEFAULT_SELECTOR, ProxyConfig, serve
from .writes import WriteSettings

DATA_TOKEN_ENV = "VECTORLOAD_DATA_TOKEN"  # noqa: S105 (the variable's name)


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    return parse


def _bytes(text: str) -> int:
    units = {"": 1, "k": 1000, "ki": 1024, "m": 1000**2, "mi": 1024**2, "g": 1000**3, "gi": 1024**3}
    number = text.rstrip("KkMmGgIi")
    unit = text[len(number) :].lower()
    if unit not in units or not number.isdecimal():
        raise argparse.ArgumentTypeError(f"{text!r} is not a byte size (e.g. 64Mi)")
    value = int(number) * units[unit]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = Limits()
    s = Settings()
    p = argparse.ArgumentParser(
        prog="vectorload proxy",
        description="The Milvus front door: MilvusService (gRPC) and REST v2 on --port, REST v1, /metrics, "
        "/healthz and /readyz on --http-port; Milvus load calls become CollectionLoads.",
    )
    p.add_argument("--port", type=int, default=19530, help="gRPC MilvusService and REST v2 (default 19530)")
    p.add_argument(
        "--http-port", type=int, default=9091, help="REST v1, /metrics, /healthz, /readyz (default 9091)"
    )
    p.add_argument("--bind-address", default="0.0.0.0", help="address of both ports (default 0.0.0.0)")
    p.add_argument(
        "--namespace",
        default=None,
        help="the proxy's own namespace, Milvus database `default` (default $POD_NAMESPACE, else default)",
    )
    p.add_argument(
        "--watch-namespaces",
        default="",
        metavar="A,B",
        help="more namespaces served as databases of their own name (default: its own only)",
    )
    p.add_argument(
        "--storage-root",
        type=Path,
        required=True,
        help="the collection storage (written by the write path unless --read-only)",
    )
    p.add_argument(
        "--querynode-selector",
        default=DEFAULT_SELECTOR,
        help=f"label selector of querynode pods (default {DEFAULT_SELECTOR})",
    )
    auth = p.add_mutually_exclusive_group()
    auth.add_argument(
        "--credentials-file",
        type=Path,
        default=None,
        help="one `user:password` per line, or an API key (a line without ':'); re-read when it changes",
    )
    auth.add_argument("--no-auth", action="store_true", help="development only: accept every request")
    p.add_argument(
        "--data-token-file",
        type=Path,
        default=None,
        help=f"the querynodes' data token (else ${DATA_TOKEN_ENV})",
    )
    p.add_argument(
        "--request-timeout",
        type=_positive(float),
        default=30.0,
        help="seconds a querynode may take to answer one search or query (default 30)",
    )
    p.add_argument(
        "--observe-timeout",
        type=_positive(float),
        default=s.observe_timeout,
        help=f"seconds a load call waits for the operator to act on it (default {s.observe_timeout:g})",
    )
    p.add_argument(
        "--release-timeout",
        type=_positive(float),
        default=s.release_timeout,
        help=f"seconds a release waits for the memory to be released (default {s.release_timeout:g})",
    )
    p.add_argument(
        "--failure-grace",
        type=float,
        default=s.failure_grace,
        help="seconds a load failure reported by the operator must persist before the call fails "
        f"(default {s.failure_grace:g})",
    )
    p.add_argument(
        "--rest-load-wait",
        type=float,
        default=s.rest_load_wait,
        help="seconds a REST load call waits for Loaded before answering (0: at once, as Milvus; "
        f"default {s.rest_load_wait:g})",
    )
    p.add_argument(
        "--grpc-direct-port",
        type=int,
        default=None,
        help="also serve gRPC straight from grpc.aio on this port, without the one-port mux "
        "(to measure what the mux adds; off by default)",
    )
    writes = p.add_argument_group("the write path (insert, upsert, delete; docs/proxy.md)")
    writes.add_argument(
        "--read-only",
        action="store_true",
        help="serve no writes: collection management, insert, upsert, delete and flush answer "
        "service unavailable (storage may then be mounted read-only)",
    )
    writes.add_argument(
        "--seal-interval",
        type=float,
        default=0.25,
        help="seconds between two seals of the logged writes into segments and deltas (default 0.25)",
    )
    writes.add_argument(
        "--no-compaction", action="store_true", help="no background compaction of small segments"
    )
    writes.add_argument(
        "--compaction-interval",
        type=float,
        default=5.0,
        help="seconds between two passes of the background compactor (default 5)",
    )
    writes.add_argument(
        "--compaction-small-rows",
        type=int,
        default=4096,
        help="segments with fewer rows are merged (default 4096; bounds what one pass re-indexes)",
    )
    writes.add_argument(
        "--gc-grace",
        type=float,
        default=60.0,
        help="seconds a compacted (retired) segment stays in storage before it is removed (default 60)",
    )
    writes.add_argument(
        "--import-root",
        type=Path,
        default=None,
        help="where bulk import (`do_bulk_insert`, REST jobs/import) finds its files: their paths are "
        "relative to it (default <storage root>/.import)",
    )
    writes.add_argument(
        "--import-stale-after",
        type=float,
        default=60.0,
        help="seconds an import job's state may go unwritten before its proxy counts as gone: the job "
        "is then Failed and any segments it had started to publish are retired (default 60; give "
        "every replica the same value)",
    )
    limits = p.add_argument_group("limits (each refusal names the flag and its value)")
    limits.add_argument(
        "--max-request-bytes",
        type=_bytes,
        default=d.max_request_bytes,
        help="gRPC message and REST body size (default 64Mi)",
    )
    limits.add_argument(
        "--max-nq",
        type=_positive(int),
        default=d.max_nq,
        help=f"query vectors per search (default {d.max_nq})",
    )
    limits.add_argument(
        "--max-top-k",
        type=_positive(int),
        default=d.max_top_k,
        help=f"topk of a search (default {d.max_top_k})",
    )
    limits.add_argument(
        "--max-search-results",
        type=_positive(int),
        default=d.max_search_results,
        help=f"nq x (topk + offset) of a search (default {d.max_search_results})",
    )
    limits.add_argument(
        "--max-query-limit",
        type=_positive(int),
        default=d.max_query_limit,
        help=f"rows of one query, and the rows of a query without a limit (default {d.max_query_limit})",
    )
    limits.add_argument(
        "--max-output-fields",
        type=_positive(int),
        default=d.max_output_fields,
        help=f"output fields per request (default {d.max_output_fields})",
    )
    limits.add_argument(
        "--max-partitions",
        type=_positive(int),
        default=d.max_partitions,
        help=f"partition names per request (default {d.max_partitions})",
    )
    limits.add_argument(
        "--max-filter-chars",
        type=_positive(int),
        default=d.max_filter_chars,
        help=f"characters of a filter (default {d.max_filter_chars})",
    )
    limits.add_argument(
        "--max-json-depth",
        type=_positive(int),
        default=d.max_json_depth,
        help=f"nesting of a REST body (default {d.max_json_depth})",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return p


def config_from_args(args: argparse.Namespace) -> ProxyConfig:
    namespace = args.namespace or os.environ.get("POD_NAMESPACE") or "default"
    watch = tuple(n.strip() for n in args.watch_namespaces.split(",") if n.strip())
    limits = Limits(
        max_nq=args.max_nq,
        max_top_k=args.max_top_k,
        max_search_results=args.max_search_results,
        max_query_limit=args.max_query_limit,
        max_output_fields=args.max_output_fields,
        max_partitions=args.max_partitions,
        max_filter_chars=args.max_filter_chars,
        max_request_bytes=args.max_request_bytes,
        max_json_depth=args.max_json_depth,
    )
    settings = Settings(
        limits=limits,
        observe_timeout=args.observe_timeout,
        release_timeout=args.release_timeout,
        failure_grace=max(args.failure_grace, 0.0),
        query_default_limit=args.max_query_limit,
        rest_load_wait=max(args.rest_load_wait, 0.0),
    )
    return ProxyConfig(
        namespace=namespace,
        storage_root=args.storage_root,
        port=args.port,
        http_port=args.http_port,
        bind_address=args.bind_address,
        watch_namespaces=watch,
        querynode_selector=args.querynode_selector,
        credentials_file=args.credentials_file,
        no_auth=args.no_auth,
        data_token_file=args.data_token_file,
        data_token_env=os.environ.get(DATA_TOKEN_ENV),
        request_timeout=args.request_timeout,
        grpc_direct_port=args.grpc_direct_port,
        settings=settings,
        writes=None
        if args.read_only
        else WriteSettings(
            seal_interval=max(args.seal_interval, 0.01),
            compaction=not args.no_compaction,
            compaction_interval=max(args.compaction_interval, 0.1),
            small_rows=max(args.compaction_small_rows, 1),
            gc_grace=max(args.gc_grace, 0.0),
            import_root=args.import_root,
            import_stale_after=max(args.import_stale_after, 1.0),
        ),
    )


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.no_auth and args.credentials_file is None:
        parser.error("--credentials-file is required (or --no-auth, for development only)")
    for port in (args.port, args.http_port):
        if not 0 <= port < 65536:
            parser.error(f"port {port} is not a TCP port")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = config_from_args(args)
    if not config.storage_root.is_dir():
        print(f"vectorload proxy: --storage-root {config.storage_root} is not a directory", file=sys.stderr)
        return 1
    if config.data_token_file is None and not config.data_token_env:
        logging.getLogger(__name__).warning(
            "no querynode data token (--data-token-file or $%s): searches are sent unauthenticated",
            DATA_TOKEN_ENV,
        )
    try:
        return asyncio.run(serve(config))
    except ValueError as exc:  # the credentials file
        print(f"vectorload proxy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
