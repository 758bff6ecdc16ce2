"""`vectorload.client.transport.Http1Pool` against real servers on loopback: an aiohttp server
(what a querynode is) for keep-alive reuse, chunked answers, `Connection: close` and errors; a
raw asyncio server for what aiohttp would never send (a server closing an idle connection, a
malformed answer, no answer at all)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aiohttp import web

from vectorload.client import QuerynodeClient, QuerynodeError
from vectorload.client.transport import Http1Pool, TransportError, _Parser
from vectorload_dev.testing import free_port, run_slot

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


@pytest.fixture
async def app_server() -> AsyncIterator[tuple[str, int, list[str]]]:
    """An aiohttp server; `peers` records each request's client port (which connection)."""
    peers: list[str] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        peers.append(str(request.transport.get_extra_info("peername")[1]) if request.transport else "")
        body = await request.read()
        if request.query.get("chunked"):
            resp = web.StreamResponse(status=201, headers={"X-Kind": "chunked"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(0, len(body), 3):
                await resp.write(body[i : i + 3])
            await resp.write_eof()
            return resp
        headers = {"Connection": "close"} if request.query.get("close") else {}
        auth = request.headers.get("Authorization", "")
        return web.Response(
            body=body + auth.encode(), status=int(request.query.get("status", "200")), headers=headers
        )

    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    host = run_slot().host
    port = free_port(host)
    site = web.TCPSite(runner, host, port)
    await site.start()
    yield host, port, peers
    await runner.cleanup()


async def raw_server(handler: Handler) -> tuple[asyncio.Server, str, int]:
    host = run_slot().host
    server = await asyncio.start_server(handler, host, 0)
    return server, host, int(server.sockets[0].getsockname()[1])


async def test_keep_alive_reuses_one_connection(app_server: tuple[str, int, list[str]]) -> None:
    host, port, peers = app_server
    pool = Http1Pool()
    for i in range(5):
        answer = await pool.request(
            host, port, "POST", "/echo", [("Authorization", "Bearer t")], b"x%d" % i, 5
        )
        assert (answer.status, answer.body) == (200, b"x%dBearer t" % i)
    assert len(set(peers)) == 1  # one connection for all five
    await pool.close()


async def test_concurrent_requests_get_their_own_answers(app_server: tuple[str, int, list[str]]) -> None:
    host, port, _ = app_server
    pool = Http1Pool()
    bodies = [b"body-%d" % i * (i + 1) for i in range(20)]
    answers = await asyncio.gather(*(pool.request(host, port, "POST", "/echo", [], b, 5) for b in bodies))
    assert [a.body for a in answers] == bodies
    await pool.close()


async def test_chunked_close_and_error_answers(app_server: tuple[str, int, list[str]]) -> None:
    host, port, peers = app_server
    pool = Http1Pool()
    big = bytes(range(256)) * 40
    chunked = await pool.request(host, port, "POST", "/echo?chunked=1", [], big, 5)
    assert (chunked.status, chunked.body, chunked.headers["x-kind"]) == (201, big, "chunked")
    closing = await pool.request(host, port, "POST", "/echo?close=1", [], b"a", 5)
    assert closing.close and closing.body == b"a"
    after = await pool.request(host, port, "POST", "/echo", [], b"b", 5)
    assert after.body == b"b" and peers[-1] != peers[-2]  # a fresh connection after the close
    error = await pool.request(host, port, "POST", "/echo?status=503", [], b"c", 5)
    assert error.status == 503
    missing = await pool.request(host, port, "POST", "/nowhere", [], b"", 5)
    assert missing.status == 404
    await pool.close()


async def test_an_idle_connection_the_server_closed_is_retried_once() -> None:
    connections: list[int] = []

    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # the server drops the keep-alive connection while it sits idle

    server, host, port = await raw_server(one_answer_then_close)
    pool = Http1Pool()
    assert (await pool.request(host, port, "POST", "/", [], b"hi", 5)).body == b"ok"
    await asyncio.sleep(0.2)
    assert (await pool.request(host, port, "POST", "/", [], b"hi", 5)).body == b"ok"
    assert len(connections) == 2
    await pool.close()
    server.close()


async def test_refused_timeout_and_malformed_are_transport_errors() -> None:
    pool = Http1Pool()
    host = run_slot().host
    with pytest.raises(TransportError, match="cannot connect"):
        await pool.request(host, free_port(host), "POST", "/", [], b"", 5)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
        await writer.drain()
        writer.close()

    for handler, message in (
        (silent, "within 0.3 s"),
        (garbage, "not an HTTP/1.1 status line"),
        (hang_up, "closed"),
    ):
        server, h, port = await raw_server(handler)
        with pytest.raises(TransportError, match=message):
            await pool.request(h, port, "POST", "/", [], b"", 0.3)
        server.close()
    await pool.close()
    with pytest.raises(TransportError, match="closed"):
        await pool.request(host, 1, "POST", "/", [], b"", 1)


def test_the_parser_in_pieces() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
    )
    for cut in range(1, len(answer)):
        parser = _Parser()
        parser.feed(answer[:cut])
        assert not parser.done or cut == len(answer)
        parser.feed(answer[cut:])
        assert parser.done and parser.response().body == b"abcde"
    with pytest.raises(ValueError, match="Content-Length"):
        _Parser().feed(b"HTTP/1.1 200 OK\r\n\r\n")
    with pytest.raises(ValueError, match="Content-Length"):
        _Parser().feed(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")
    with pytest.raises(ValueError, match="chunk size"):
        _Parser().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    empty = _Parser()
    empty.feed(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert empty.done and empty.response().body == b""
    old = _Parser()
    old.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert old.response().close


async def test_the_client_maps_transport_errors_to_unreachable() -> None:
    host = run_slot().host
    async with QuerynodeClient(f"http://{host}:{free_port(host)}", "t", timeout=2) as client:
        with pytest.raises(QuerynodeError) as info:
            await client.search("book", [[0.0, 1.0]], 3)
    assert info.value.status == 0 and info.value.reason == "Unreachable"
