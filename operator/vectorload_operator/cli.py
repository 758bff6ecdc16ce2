"""`vectorload operator`: run the operator (kopf, in-process, standalone)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from vectorload_operator.core.model import NewDataSettings
from vectorload_operator.selectors import LabelSelector
from vectorload_operator.settings import (
    DEFAULT_MAX_TASKS_PER_NODE,
    DEFAULT_QUERYNODE_SELECTOR,
    TOKEN_ENV,
    OperatorConfig,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vectorload operator",
        description="Keep CollectionLoads resident on querynode pods (kopf operator).",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    p.add_argument(
        "--querynode-selector",
        default=DEFAULT_QUERYNODE_SELECTOR,
        metavar="LABELSEL",
        help=f"label selector of querynode pods (default {DEFAULT_QUERYNODE_SELECTOR})",
    )
    p.add_argument(
        "--token-file", type=Path, default=None, help=f"querynode control token file (else env {TOKEN_ENV})"
    )
    p.add_argument("--metrics-port", type=int, default=8080, help="Prometheus metrics port (default 8080)")
    p.add_argument(
        "--health-port", type=int, default=8081, help="liveness endpoint port, /healthz (default 8081)"
    )
    p.add_argument(
        "--bind-address",
        default="0.0.0.0",
        help="address of the metrics and health servers (default 0.0.0.0)",
    )
    p.add_argument(
        "--max-tasks-per-node",
        type=int,
        default=DEFAULT_MAX_TASKS_PER_NODE,
        help="loads queued or in progress per querynode; the querynode runs its own --load-concurrency "
        f"of them at once and reserves memory at admission (default {DEFAULT_MAX_TASKS_PER_NODE})",
    )
    p.add_argument(
        "--dist-pull-interval",
        type=float,
        default=0.5,
        help="seconds between distribution pulls (default 0.5)",
    )
    p.add_argument(
        "--status-interval",
        type=float,
        default=0.4,
        help="minimum seconds between status patches (default 0.4)",
    )
    p.add_argument(
        "--catalog-interval",
        type=float,
        default=0.2,
        help="seconds between catalog polls (default 0.2; an unchanged catalog costs a 304)",
    )
    p.add_argument(
        "--new-data-share",
        type=float,
        default=0.1,
        help="segments published after a load make a Loaded collection Loading again only when "
        "they exceed this share of its bytes and --new-data-bytes (default 0.1)",
    )
    p.add_argument(
        "--new-data-bytes",
        type=int,
        default=64 << 20,
        help="... and this many bytes (default 67108864 = 64 MiB)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=2.0,
        help="querynode request timeout in seconds (default 2.0)",
    )
    p.add_argument("--standalone", action="store_true", help="accepted for compatibility: always standalone")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return p


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    namespaces = tuple(dict.fromkeys(args.namespace))
    all_namespaces = bool(args.all_namespaces) or not namespaces
    if args.max_tasks_per_node < 1:
        raise ValueError("--max-tasks-per-node must be at least 1")
    if args.dist_pull_interval <= 0:
        raise ValueError("--dist-pull-interval must be positive")
    if args.catalog_interval <= 0:
        raise ValueError("--catalog-interval must be positive")
    if not 0 <= args.new_data_share <= 1 or args.new_data_bytes < 0:
        raise ValueError("--new-data-share must be in 0..1 and --new-data-bytes >= 0")
    return OperatorConfig(
        namespaces=() if all_namespaces else namespaces,
        all_namespaces=all_namespaces,
        querynode_selector=LabelSelector.parse(args.querynode_selector),
        token_file=args.token_file,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        bind_address=args.bind_address,
        max_tasks_per_node=args.max_tasks_per_node,
        dist_pull_interval=args.dist_pull_interval,
        status_interval=args.status_interval,
        catalog_interval=args.catalog_interval,
        request_timeout=args.request_timeout,
        new_data=NewDataSettings(max_share=args.new_data_share, max_bytes=args.new_data_bytes),
    )


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    if config.token_file is None and not os.environ.get(TOKEN_ENV):
        logging.getLogger(__name__).warning(
            "no querynode token (--token-file or %s): calls are unauthenticated", TOKEN_ENV
        )

    import kopf

    from vectorload_operator.handlers import register
    from vectorload_operator.runtime import Runtime

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    register(Runtime(config))
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=config.all_namespaces,
            namespaces=list(config.namespaces),
            liveness_endpoint=f"http://{config.bind_address}:{config.health_port}/healthz",
        )
    )
    return 0
