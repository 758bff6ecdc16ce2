"""Command-line settings of a querynode."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .cpus import available_cpus
from .filter_expr import DEPTH_CEILING, FilterLimits
from .memory import auto_memory_limit, parse_bytes
from .requests import DEFAULT_LIMITS, Limits
from .segment import MetaCacheLimits

TOKEN_ENV = "VECTORLOAD_TOKEN"  # noqa: S105 (a variable name)
DATA_TOKEN_ENV = "VECTORLOAD_DATA_TOKEN"  # noqa: S105
DEFAULT_PORT = 19530
DEFAULT_MAX_REQUEST_BYTES = DEFAULT_LIMITS.max_request_bytes
DEFAULT_FILTER_LIMITS = DEFAULT_LIMITS.filter
DEFAULT_META_CACHE = MetaCacheLimits()


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    root: Path
    host: str
    port: int
    node_name: str
    memory_limit: int
    threshold: float
    token: str | None  # None only with --insecure-no-auth
    data_token: str | None  # the data API also accepts `token`; both None only with --open-data-api
    load_concurrency: int
    search_workers: int
    default_ef: int
    load_step_delay: float  # fault injection for tests: seconds to wait before each file
    verify_in_process: bool = False  # hash files in the loading thread, not in the sha256 helper
    open_data_api: bool = False  # --open-data-api: search/query/get without a token
    limits: Limits = field(default_factory=Limits)  # bounded work per request (see requests.Limits)
    meta_cache: MetaCacheLimits = field(default_factory=MetaCacheLimits)  # --meta-cache-*
    # --search-threads: threads one search may use (segments in parallel, hnswlib num_threads)
    search_threads: int = 1
    # --delta-interval: seconds between two polls of the held collections' generations (deletes
    # and upserts published as deltas become invisible within about this)
    delta_interval: float = 0.1

    def data_tokens(self) -> tuple[str, ...]:
        """Tokens the data API accepts: the data token and the control token (which may do more)."""
        return tuple(t for t in (self.data_token, self.token) if t is not None)


def _read_token(path: str | None, env: str, what: str) -> str | None:
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"cannot read {what} file {path}: {exc}") from exc
        if not token:
            raise SettingsError(f"{what} file {path} is empty")
        return token
    token = os.environ.get(env, "").strip()
    return token or None


def _search_threads(text: str) -> int:
    if text == "auto":
        return available_cpus()
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"--search-threads must be a positive integer or auto, got {text!r}") from None
    if value < 1:
        raise SettingsError(f"--search-threads must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vectorload querynode", description="Serve loaded segments (hnswlib) over HTTP."
    )
    p.add_argument("--root", required=True, help="storage root directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--node-name", default=None, help="node name (default: $POD_NAME or the hostname)")
    p.add_argument(
        "--memory-limit",
        default="auto",
        help="bytes (512Mi, 2G, ...) or auto: the smaller of cgroup memory.max and "
        "$VECTORLOAD_MEMORY_LIMIT, else total RAM",
    )
    p.add_argument("--threshold", type=float, default=0.9, help="fraction of the memory limit loads may fill")
    p.add_argument("--token-file", default=None, help=f"control API bearer token file (else ${TOKEN_ENV})")
    p.add_argument(
        "--data-token-file",
        default=None,
        help=f"data API bearer token file (else ${DATA_TOKEN_ENV}); the data API also accepts the "
        "control token, and no other unless --open-data-api",
    )
    p.add_argument("--insecure-no-auth", action="store_true", help="run the control API without a token")
    p.add_argument(
        "--open-data-api",
        action="store_true",
        help="serve search/query/get without any token (closed by default)",
    )
    p.add_argument("--load-concurrency", type=int, default=2, help="segments loaded at the same time")
    p.add_argument("--search-workers", type=int, default=2, help="threads answering data requests")
    limits = p.add_argument_group("limits (bounded work per request; a refusal names the limit)")
    limits.add_argument(
        "--max-request-bytes",
        default=str(DEFAULT_MAX_REQUEST_BYTES),
        help="largest request body, after decompression (413 beyond it; default 64Mi)",
    )
    limits.add_argument(
        "--max-json-depth",
        type=int,
        default=DEFAULT_LIMITS.max_json_depth,
        help=f"deepest nesting of arrays/objects in a body (default {DEFAULT_LIMITS.max_json_depth})",
    )
    limits.add_argument(
        "--max-search-results",
        type=int,
        default=DEFAULT_LIMITS.max_search_results,
        help=f"largest nq × topK of one search (default {DEFAULT_LIMITS.max_search_results})",
    )
    limits.add_argument(
        "--max-ids",
        type=int,
        default=DEFAULT_LIMITS.max_ids,
        help=f"primary keys per get request (default {DEFAULT_LIMITS.max_ids})",
    )
    limits.add_argument(
        "--max-output-fields",
        type=int,
        default=DEFAULT_LIMITS.max_output_fields,
        help=f"outputFields names per request (default {DEFAULT_LIMITS.max_output_fields})",
    )
    limits.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_LIMITS.request_timeout,
        help="seconds of work a data request may take before it stops with 408 "
        f"(default {DEFAULT_LIMITS.request_timeout:g})",
    )
    limits.add_argument(
        "--filter-max-chars",
        type=int,
        default=DEFAULT_FILTER_LIMITS.max_chars,
        help=f"longest filter expression, in characters (default {DEFAULT_FILTER_LIMITS.max_chars})",
    )
    limits.add_argument(
        "--filter-max-depth",
        type=int,
        default=DEFAULT_FILTER_LIMITS.max_depth,
        help="deepest nesting of parentheses and 'not' in a filter "
        f"(default {DEFAULT_FILTER_LIMITS.max_depth}, at most {DEPTH_CEILING})",
    )
    limits.add_argument(
        "--filter-max-list-items",
        type=int,
        default=DEFAULT_FILTER_LIMITS.max_list_items,
        help=f"items of one 'in [...]' list in a filter (default {DEFAULT_FILTER_LIMITS.max_list_items})",
    )
    cache = p.add_argument_group("$meta key cache (one LRU per node, not counted by memory admission)")
    cache.add_argument(
        "--meta-cache-bytes",
        default=str(DEFAULT_META_CACHE.max_bytes),
        help="bytes of extracted $meta key columns kept, all segments together (default 64Mi; 0 keeps none)",
    )
    cache.add_argument(
        "--meta-cache-entries",
        type=int,
        default=DEFAULT_META_CACHE.max_entries,
        help=f"$meta key columns kept (default {DEFAULT_META_CACHE.max_entries}; 0 keeps none)",
    )
    p.add_argument("--default-ef", type=int, default=64, help="hnswlib ef when a search gives none")
    p.add_argument(
        "--delta-interval",
        type=float,
        default=0.1,
        help="seconds between two polls of the held collections' deltas (default 0.1): a delete "
        "or an upsert published in storage hides the old rows within about this",
    )
    p.add_argument(
        "--search-threads",
        default="auto",
        help="threads one search may use: its segments are searched in parallel and batches get "
        "hnswlib num_threads (auto: the CPUs this process may use, its affinity capped by the "
        "cgroup cpu.max quota)",
    )
    p.add_argument(
        "--verify-in-process",
        action="store_true",
        help="hash segment files in the loading thread instead of the sha256 helper process "
        "(which hashes the next files on another core while this process loads)",
    )
    p.add_argument("--load-step-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    return p


def parse_settings(argv: list[str]) -> Settings:
    args = build_parser().parse_args(argv)
    try:
        memory_limit = auto_memory_limit() if args.memory_limit == "auto" else parse_bytes(args.memory_limit)
        max_request = parse_bytes(args.max_request_bytes)
        meta_cache_bytes = 0 if args.meta_cache_bytes.strip() == "0" else parse_bytes(args.meta_cache_bytes)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    if not 0.0 < args.threshold <= 1.0:
        raise SettingsError(f"--threshold must be in (0, 1], got {args.threshold}")
    if not 0 <= args.port <= 65535:
        raise SettingsError(f"--port must be a TCP port, got {args.port}")
    for flag, value in (
        ("--load-concurrency", args.load_concurrency),
        ("--search-workers", args.search_workers),
        ("--max-json-depth", args.max_json_depth),
        ("--max-search-results", args.max_search_results),
        ("--max-ids", args.max_ids),
        ("--max-output-fields", args.max_output_fields),
        ("--filter-max-chars", args.filter_max_chars),
        ("--filter-max-depth", args.filter_max_depth),
        ("--filter-max-list-items", args.filter_max_list_items),
    ):
        if value < 1:
            raise SettingsError(f"{flag} must be at least 1")
    if args.filter_max_depth > DEPTH_CEILING:
        raise SettingsError(
            f"--filter-max-depth must be at most {DEPTH_CEILING}, got {args.filter_max_depth}"
        )
    if args.meta_cache_entries < 0:
        raise SettingsError(f"--meta-cache-entries must not be negative, got {args.meta_cache_entries}")
    search_threads = _search_threads(args.search_threads)
    if not 0 < args.delta_interval <= 60:
        raise SettingsError(f"--delta-interval must be in (0, 60] seconds, got {args.delta_interval}")
    if not args.request_timeout > 0:
        raise SettingsError(f"--request-timeout must be positive seconds, got {args.request_timeout}")
    token = _read_token(args.token_file, TOKEN_ENV, "token")
    if token is None and not args.insecure_no_auth:
        raise SettingsError(
            f"no control API token: pass --token-file or set ${TOKEN_ENV} (or --insecure-no-auth to run open)"
        )
    data_token = _read_token(args.data_token_file, DATA_TOKEN_ENV, "data token")
    if token is None and data_token is None and not args.open_data_api:
        raise SettingsError(
            f"the data API would accept no token: pass --data-token-file or set ${DATA_TOKEN_ENV} "
            "(or --open-data-api to serve search/query/get without a token)"
        )
    return Settings(
        root=Path(args.root),
        host=args.host,
        port=args.port,
        node_name=args.node_name or os.environ.get("POD_NAME") or socket.gethostname(),
        memory_limit=memory_limit,
        threshold=args.threshold,
        token=token,
        data_token=data_token,
        load_concurrency=args.load_concurrency,
        search_workers=args.search_workers,
        default_ef=args.default_ef,
        load_step_delay=max(0.0, args.load_step_delay),
        verify_in_process=args.verify_in_process,
        open_data_api=args.open_data_api,
        search_threads=search_threads,
        delta_interval=args.delta_interval,
        limits=Limits(
            max_request_bytes=max_request,
            max_json_depth=args.max_json_depth,
            max_search_results=args.max_search_results,
            max_ids=args.max_ids,
            max_output_fields=args.max_output_fields,
            request_timeout=args.request_timeout,
            filter=FilterLimits(
                max_chars=args.filter_max_chars,
                max_depth=args.filter_max_depth,
                max_list_items=args.filter_max_list_items,
            ),
        ),
        meta_cache=MetaCacheLimits(
            max_bytes=meta_cache_bytes,
            max_entries=args.meta_cache_entries,
            max_indexed_keys=DEFAULT_META_CACHE.max_indexed_keys,
        ),
    )
