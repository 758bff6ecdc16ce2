"""gRPC and REST v2 on one port, as Milvus serves both on 19530 (it uses cmux).

Each accepted connection is classified by its first bytes, read with MSG_PEEK so nothing is
consumed: the HTTP/2 client preface (`PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`, what every gRPC
client sends first) goes to the grpc.aio server, anything else is HTTP/1 and is handed to aiohttp
as an accepted socket (`loop.connect_accepted_socket` with aiohttp's protocol factory), which then
reads the request from the first byte.

grpc.aio cannot adopt an accepted socket, so it listens on a private unix socket (in a 0700
directory) and the gRPC connections are pumped to it: two asyncio protocols that write what one
side receives to the other, with backpressure both ways (a side whose write buffer fills pauses
reading on the other, `pause_writing`/`resume_writing`), half-close forwarded (`write_eof`), and
either side's close closing the other after its buffer drained. `bench/bench_proxy.py` measures
what the pump adds.

A connection that sends nothing (or only part of the preface) within `sniff_timeout` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SNIFF_TIMEOUT = 10.0
HIGH_WATER = 4 << 20  # bytes buffered towards one side before the other side stops being read
LOW_WATER = 1 << 20


class _Pump(asyncio.Protocol):
    """One direction-pair end: what arrives here is written to `peer`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.peer: _Pump | None = None
        self._pending: list[bytes] = []  # arrived before the peer was connected
        self._eof_pending = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)

    def attach(self, peer: _Pump) -> None:
        self.peer = peer
        for chunk in self._pending:
            self._forward(chunk)
        self._pending.clear()
        if self._eof_pending:
            self._forward_eof()

    def _forward(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.write(data)

    def _forward_eof(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            if peer.transport.can_write_eof():
                peer.transport.write_eof()
            else:
                peer.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self._pending.append(data)
        else:
            self._forward(data)

    def eof_received(self) -> bool:
        if self.peer is None:
            self._eof_pending = True
        else:
            self._forward_eof()
        return True  # keep our writing side open until the peer closes

    # our write buffer filled: stop reading from the peer until it drains
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.close()  # after what is buffered towards it has been written
        if not self.closed.done():
            self.closed.set_result(None)


class PortMux:
    """Accepts on one TCP port and dispatches each connection (see the module docstring)."""

    def __init__(
        self,
        grpc_unix_path: str,
        http_factory: Callable[[], asyncio.Protocol],
        on_connection: Callable[[str], None] | None = None,
        sniff_timeout: float = SNIFF_TIMEOUT,
    ) -> None:
        self.grpc_unix_path = grpc_unix_path
        self.http_factory = http_factory
        self.on_connection = on_connection
        self.sniff_timeout = sniff_timeout
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pumps: set[_Pump] = set()

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
        self._sock = sock
        self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def close(self) -> None:
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
        if self._sock is not None:
            self._sock.close()
        for task in list(self._tasks):
            task.cancel()
        for pump in list(self._pumps):
            if pump.transport is not None:
                pump.transport.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except (ConnectionAbortedError, BlockingIOError, InterruptedError):
                continue
            except OSError as exc:  # out of file descriptors and the like: do not spin
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._dispatch(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _peek(self, conn: socket.socket) -> bytes:
        """The first bytes of the connection, without consuming them: enough to tell HTTP/2's
        preface from anything else ('' when the peer closed first)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sniff_timeout
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(conn.fileno(), _set_done, ready)
            try:
                await asyncio.wait_for(ready, max(deadline - loop.time(), 0.001))
            finally:
                loop.remove_reader(conn.fileno())
            data = conn.recv(len(HTTP2_PREFACE), socket.MSG_PEEK)
            if not data:
                return b""
            if len(data) >= len(HTTP2_PREFACE) or not HTTP2_PREFACE.startswith(data):
                return data
            await asyncio.sleep(0.002)  # a partial preface: wait for the rest (rare)
            if loop.time() > deadline:
                raise TimeoutError

    async def _dispatch(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            head = await self._peek(conn)
        except (TimeoutError, OSError):
            conn.close()
            return
        if not head:
            conn.close()
            return
        if head.startswith(HTTP2_PREFACE):
            if self.on_connection:
                self.on_connection("grpc")
            await self._pump(conn)
            return
        if self.on_connection:
            self.on_connection("http")
        try:
            await loop.connect_accepted_socket(self.http_factory, conn)
        except OSError:
            conn.close()

    async def _pump(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, client = await loop.connect_accepted_socket(lambda: _Pump("client"), conn)
        except OSError:
            conn.close()
            return
        try:
            _, upstream = await loop.create_unix_connection(lambda: _Pump("grpc"), self.grpc_unix_path)
        except OSError as exc:
            log.warning("the gRPC server cannot be reached on %s: %s", self.grpc_unix_path, exc)
            if client.transport is not None:
                client.transport.close()
            return
        self._pumps.update((client, upstream))
        upstream.attach(client)
        client.attach(upstream)
        await asyncio.gather(client.closed, upstream.closed)
        self._pumps.difference_update((client, upstream))


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def protocol_factory(server: Any) -> Callable[[], asyncio.Protocol]:
    """aiohttp's protocol factory (`AppRunner.server`, a `web.Server`) as a plain callable."""
    return lambda: server()
