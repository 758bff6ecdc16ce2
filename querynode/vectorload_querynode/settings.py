"""Command-line settings of a querynode."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .memory import auto_memory_limit, parse_bytes

TOKEN_ENV = "VECTORLOAD_TOKEN"  # noqa: S105 (a variable name)
DATA_TOKEN_ENV = "VECTORLOAD_DATA_TOKEN"  # noqa: S105
DEFAULT_PORT = 19530
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


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
    data_token: str | None
    load_concurrency: int
    search_workers: int
    max_request_bytes: int
    default_ef: int
    load_step_delay: float  # fault injection for tests: seconds to wait before each file
    verify_in_process: bool = False  # hash files in the loading thread, not in the sha256 helper


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
        help=f"data API bearer token file (else ${DATA_TOKEN_ENV}; unset = open)",
    )
    p.add_argument("--insecure-no-auth", action="store_true", help="run the control API without a token")
    p.add_argument("--load-concurrency", type=int, default=2, help="segments loaded at the same time")
    p.add_argument("--search-workers", type=int, default=2, help="threads answering data requests")
    p.add_argument("--max-request-bytes", default=str(DEFAULT_MAX_REQUEST_BYTES), help="largest request body")
    p.add_argument("--default-ef", type=int, default=64, help="hnswlib ef when a search gives none")
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
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    if not 0.0 < args.threshold <= 1.0:
        raise SettingsError(f"--threshold must be in (0, 1], got {args.threshold}")
    if not 0 <= args.port <= 65535:
        raise SettingsError(f"--port must be a TCP port, got {args.port}")
    for flag, value in (
        ("--load-concurrency", args.load_concurrency),
        ("--search-workers", args.search_workers),
    ):
        if value < 1:
            raise SettingsError(f"{flag} must be at least 1")
    token = _read_token(args.token_file, TOKEN_ENV, "token")
    if token is None and not args.insecure_no_auth:
        raise SettingsError(
            f"no control API token: pass --token-file or set ${TOKEN_ENV} (or --insecure-no-auth to run open)"
        )
    return Settings(
        root=Path(args.root),
        host=args.host,
        port=args.port,
        node_name=args.node_name or os.environ.get("POD_NAME") or socket.gethostname(),
        memory_limit=memory_limit,
        threshold=args.threshold,
        token=token,
        data_token=_read_token(args.data_token_file, DATA_TOKEN_ENV, "data token"),
        load_concurrency=args.load_concurrency,
        search_workers=args.search_workers,
        max_request_bytes=max_request,
        default_ef=args.default_ef,
        load_step_delay=max(0.0, args.load_step_delay),
        verify_in_process=args.verify_in_process,
    )
