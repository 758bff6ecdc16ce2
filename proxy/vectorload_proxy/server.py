"""Wiring: the watch cache, the catalog, the domain layer, gRPC + REST v2 on `--port`, REST v1 and
`/metrics` `/healthz` `/readyz` on `--http-port`; runs until SIGTERM/SIGINT.

Shutdown is graceful: the listeners stop accepting, in-flight gRPC calls get `GRACE` seconds, the
HTTP servers close their connections, the querynode connection pool and the watches stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from aiohttp import web
from pymilvus.grpc_gen import milvus_pb2_grpc

from .api import MilvusApi, Settings
from .auth import Authenticator
from .catalog import Catalog
from .grpc_service import AuthInterceptor, MilvusService, RequestGuard, server_options
from .kube import DEFAULT_RESYNC, KubeCache, KubeWriter
from .listener import PortMux, protocol_factory
from .metrics import ProxyMetrics
from .names import Databases
from .rest import build_http_app, build_v2_app
from .search import Querynodes
from .writes import WriteApi, WriteSettings

log = logging.getLogger(__name__)

GRACE = 5.0
DEFAULT_SELECTOR = "app.kubernetes.io/component=querynode"


@dataclass(frozen=True)
class ProxyConfig:
    namespace: str
    storage_root: Path
    port: int = 19530
    http_port: int = 9091
    bind_address: str = "0.0.0.0"
    watch_namespaces: tuple[str, ...] = ()
    querynode_selector: str = DEFAULT_SELECTOR
    credentials_file: Path | None = None
    no_auth: bool = False
    data_token_file: Path | None = None
    data_token_env: str | None = None
    request_timeout: float = 30.0
    max_send_bytes: int = 512 << 20
    resync: float = DEFAULT_RESYNC
    grpc_direct_port: int | None = None  # --grpc-direct-port: gRPC without the one-port mux
    settings: Settings = field(default_factory=Settings)
    writes: WriteSettings | None = field(default_factory=WriteSettings)  # None: --read-only


class DataToken:
    """The querynodes' data token: re-read from the mounted Secret file when it changes."""

    def __init__(self, path: Path | None, env: str | None) -> None:
        self.path = path
        self.env = env
        self._stamp: int | None = None
        self._value: str | None = env or None

    def __call__(self) -> str | None:
        if self.path is None:
            return self._value
        try:
            stamp = self.path.stat().st_mtime_ns
            if stamp != self._stamp:
                self._value = self.path.read_text(encoding="utf-8").strip() or None
                self._stamp = stamp
        except OSError:
            pass
        return self._value


SOCKET_NAME = "grpc.sock"
# sun_path holds 108 bytes with its terminating NUL; gRPC refuses longer paths at bind time
MAX_SOCKET_PATH = 107


# mkdtemp makes a fresh 0700 directory with a random name: no shared, predictable path in /tmp
SOCKET_BASES: tuple[str | None, ...] = (None, "/tmp", "/dev/shm")  # noqa: S108


def socket_dir(candidates: tuple[str | None, ...] = SOCKET_BASES) -> Path:
    """A private (0700) directory for the internal gRPC socket, short enough for a Unix socket path.

    The default temporary directory comes first; a pod's TMPDIR can be deep (the process kubelet
    puts it under the pod's directory), so /tmp and /dev/shm follow when the path would not fit.
    """
    tried: list[str] = []
    for base in candidates:
        try:
            made = Path(tempfile.mkdtemp(prefix="vlproxy-", dir=base))
        except OSError as exc:
            tried.append(f"{base or tempfile.gettempdir()}: {exc.strerror}")
            continue
        if len(os.fsencode(made / SOCKET_NAME)) <= MAX_SOCKET_PATH:
            os.chmod(made, 0o700)
            return made
        made.rmdir()
        tried.append(f"{made.parent}: too deep for a Unix socket path")
    raise RuntimeError("no directory for the internal gRPC socket: " + "; ".join(tried))


class Proxy:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.metrics = ProxyMetrics()
        self.auth = Authenticator(config.credentials_file, enabled=not config.no_auth)
        served = (config.namespace, *config.watch_namespaces)
        self.databases = Databases(config.namespace, tuple(served))
        self.kube = KubeCache(self.databases.served, config.querynode_selector, resync=config.resync)
        self.catalog = Catalog(config.storage_root)
        self.nodes = Querynodes(
            DataToken(config.data_token_file, config.data_token_env), config.request_timeout
        )
        self.api = MilvusApi(
            self.databases, self.kube, KubeWriter(), self.catalog, self.nodes, self.metrics, config.settings
        )
        self.writes = (
            WriteApi(config.storage_root, self.api, config.writes) if config.writes is not None else None
        )
        self.api.writes = self.writes
        self._tmp = socket_dir()
        self.grpc_path = str(self._tmp / SOCKET_NAME)
        self.grpc_server: grpc.aio.Server | None = None
        self.mux: PortMux | None = None
        self.v2_runner: web.AppRunner | None = None
        self.http_runner: web.AppRunner | None = None
        self.grpc_port = 0
        self.http_port = 0

    def ready(self) -> bool:
        synced = self.kube.synced
        self.metrics.cache_synced.set(1 if synced else 0)
        return synced and self.grpc_server is not None

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.kube.start(loop)
        if self.writes is not None:
            await asyncio.to_thread(self.writes.start)  # adopts the logs of proxies that are gone
        limits = cfg.settings.limits
        server = grpc.aio.server(
            interceptors=[AuthInterceptor(self.auth, self.metrics), RequestGuard(self.metrics)],
            options=server_options(limits.max_request_bytes, cfg.max_send_bytes),
        )
        milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusService(self.api, self.metrics), server)
        server.add_insecure_port(f"unix:{self.grpc_path}")
        if cfg.grpc_direct_port is not None:
            host = f"[{cfg.bind_address}]" if ":" in cfg.bind_address else cfg.bind_address
            server.add_insecure_port(f"{host}:{cfg.grpc_direct_port}")
        await server.start()
        self.grpc_server = server

        self.v2_runner = web.AppRunner(
            build_v2_app(self.api, self.auth, self.metrics, limits), access_log=None, handle_signals=False
        )
        await self.v2_runner.setup()
        assert self.v2_runner.server is not None
        self.mux = PortMux(
            self.grpc_path,
            protocol_factory(self.v2_runner.server),
            on_connection=lambda kind: self.metrics.connections.labels(kind).inc(),
        )
        await self.mux.start(cfg.bind_address, cfg.port)
        self.grpc_port = self.mux.port

        self.http_runner = web.AppRunner(
            build_http_app(self.api, self.auth, self.metrics, limits, self.ready),
            access_log=None,
            handle_signals=False,
        )
        await self.http_runner.setup()
        site = web.TCPSite(self.http_runner, cfg.bind_address, cfg.http_port)
        await site.start()
        sockets = self.http_runner.addresses
        self.http_port = int(sockets[0][1]) if sockets else cfg.http_port
        log.info(
            "vectorload proxy serving gRPC + REST v2 on %s:%d, REST v1 + metrics on %s:%d; databases %s",
            cfg.bind_address, self.grpc_port, cfg.bind_address, self.http_port,
            ", ".join(f"{d}={self.databases.namespace(d)}" for d in self.databases.names()),
        )  # fmt: skip
        if cfg.no_auth:
            log.warning("AUTHENTICATION IS OFF (--no-auth): every request is accepted. Development only.")

    async def stop(self) -> None:
        if self.mux is not None:
            await self.mux.close()
        if self.grpc_server is not None:
            await self.grpc_server.stop(GRACE)
        for runner in (self.v2_runner, self.http_runner):
            if runner is not None:
                await runner.cleanup()
        if self.writes is not None:
            await (
                self.writes.imports.close()
            )  # running import jobs stop (Failed; their acknowledged rows stay)
            await asyncio.to_thread(self.writes.close)  # one last seal
        await self.nodes.close()
        self.kube.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


async def serve(config: ProxyConfig) -> int:
    try:
        proxy = Proxy(config)
    except Exception as exc:  # no directory for the internal socket, an unreadable credentials file
        log.error("cannot start the proxy: %s: %s", type(exc).__name__, exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await proxy.start()
    except Exception as exc:  # a port in use, no Kubernetes configuration, ...
        log.error("cannot start the proxy: %s: %s", type(exc).__name__, exc)
        await proxy.stop()
        return 1
    # what start-up made (modules, protobuf descriptors, the Kubernetes client's classes: some
    # 120,000 objects) lives as long as the process: frozen out of the collector, a full
    # collection no longer walks it (it took 0.3-0.8 s on the event loop, and /healthz waited)
    gc.collect()
    gc.freeze()
    await stop.wait()
    log.info("stopping")
    await proxy.stop()
    return 0
