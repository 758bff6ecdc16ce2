"""One port for gRPC and HTTP: the MSG_PEEK sniffer, the pump to a grpc.aio server on a unix
socket (large messages both ways, many calls at once, a slow preface), aiohttp on the same port."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from aiohttp import web

from vectorload_dev.testing import free_port, run_slot
from vectorload_proxy.listener import HTTP2_PREFACE, PortMux, protocol_factory


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request[::-1]


@pytest.fixture
async def mux() -> AsyncIterator[tuple[list[str], str]]:
    directory = Path(tempfile.mkdtemp(prefix="vlmux-"))
    path = str(directory / "grpc.sock")
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    )
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": (await request.read()).decode() or "world"})

    app.router.add_route("*", "/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None
    seen: list[str] = []
    m = PortMux(path, protocol_factory(runner.server), on_connection=seen.append, sniff_timeout=0.5)
    host = run_slot().host
    await m.start(host, free_port(host))
    yield seen, f"{host}:{m.port}"
    await m.close()
    await runner.cleanup()
    await server.stop(0)


async def test_grpc_and_http_share_the_port(mux: tuple[list[str], str]) -> None:
    seen, address = mux
    async with grpc.aio.insecure_channel(
        address,
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    ) as channel:
        echo = channel.unary_unary("/test.Echo/Echo")
        assert await echo(b"abc") == b"cba"
        big = bytes(range(256)) * (32 << 12)  # 8 MiB each way: the pump's backpressure at work
        assert await echo(big) == big[::-1]
        answers = await asyncio.gather(*(echo(str(i).encode()) for i in range(50)))
        assert answers == [str(i).encode()[::-1] for i in range(50)]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{address}/hello") as r:
            assert r.status == 200 and await r.json() == {"hello": "world"}
        async with session.post(f"http://{address}/hello", data=b"x" * 100000) as r:
            assert (await r.json())["hello"] == "x" * 100000
    assert "grpc" in seen and "http" in seen


async def test_a_preface_in_pieces_and_silent_connections(mux: tuple[list[str], str]) -> None:
    _, address = mux
    host, port = address.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(HTTP2_PREFACE[:5])
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(HTTP2_PREFACE[5:] + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # the rest + an empty SETTINGS
    await writer.drain()
    frame = await asyncio.wait_for(reader.read(9), 5)  # the gRPC server's own SETTINGS frame
    assert len(frame) == 9 and frame[3] == 0x04
    writer.close()
    silent = socket.create_connection((host, int(port)))
    silent.settimeout(5)
    started = loop.time()
    assert await loop.run_in_executor(None, silent.recv, 1) == b""  # closed after sniff_timeout
    assert loop.time() - started < 3
    silent.close()
    garbage = socket.create_connection((host, int(port)))
    garbage.sendall(b"\x16\x03\x01 not http\r\n\r\n")  # e.g. TLS: handed to HTTP, which refuses it
    garbage.settimeout(5)
    assert (await loop.run_in_executor(None, garbage.recv, 100)).startswith(b"HTTP/1.")
    garbage.close()
