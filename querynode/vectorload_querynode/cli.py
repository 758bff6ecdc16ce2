"""`vectorload querynode`: parse settings and serve until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from .app import build_app
from .node import QueryNode
from .segment import META_KEY_CACHE
from .settings import SettingsError, parse_settings

# The event loop shares the GIL with the data workers' Python code (hit lists, row fields). With
# the default 5 ms switch interval a /healthz request waits several 5 ms slices behind busy
# workers; 1 ms keeps it prompt (measured on the shared 2-core machine: /healthz p50 18 → 5 ms
# under a saturating search load) at a small cost to the workers, whose heavy parts (hnswlib,
# numpy) release the GIL anyway.
SWITCH_INTERVAL = 0.001


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = parse_settings(argv)
    except SettingsError as exc:
        print(f"vectorload querynode: {exc}", file=sys.stderr)
        return 2
    if settings.token is None:
        logging.getLogger("vectorload.querynode").warning("control API runs WITHOUT authentication")
    if settings.open_data_api:
        logging.getLogger("vectorload.querynode").warning("data API runs WITHOUT authentication")
    sys.setswitchinterval(SWITCH_INTERVAL)
    META_KEY_CACHE.resize(settings.meta_cache)  # --meta-cache-bytes, --meta-cache-entries
    node = QueryNode(settings)
    logging.getLogger("vectorload.querynode").info(
        "querynode %s (boot %s) serving %s on %s:%d, memory limit %d bytes × %.2f",
        settings.node_name,
        node.boot_id,
        settings.root,
        settings.host,
        settings.port,
        settings.memory_limit,
        settings.threshold,
    )
    web.run_app(build_app(node), host=settings.host, port=settings.port, print=None, access_log=None)
    return 0
