"""A raw HTTP/1.1 client for hostile requests: any bytes in the request line, the headers and the
body (http.client refuses most of what an attacker sends), answers parsed by http.client.

Only loopback addresses may be targets. A `Connection` is kept alive between cases and reopened
when the server closed it; cases that need their own socket (slow bodies, disconnects, bursts)
open it themselves with `open_socket`.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import select
import socket
import struct
import time
from dataclasses import dataclass, field

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
ANSWER_TIMEOUT = 30.0  # seconds a case waits for an answer before it counts as "no answer"

Header = tuple[bytes, bytes]


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class RawRequest:
    """One request as bytes on the wire. `Content-Length` is added from the body unless the
    headers carry `Content-Length` or `Transfer-Encoding` themselves (or `length` is False)."""

    method: bytes
    target: bytes
    headers: tuple[Header, ...] = ()
    body: bytes = b""
    version: bytes = b"HTTP/1.1"
    length: bool = True

    @classmethod
    def of(
        cls,
        method: str | bytes,
        target: str | bytes,
        headers: list[tuple[str | bytes, str | bytes]] | tuple[tuple[str | bytes, str | bytes], ...] = (),
        body: bytes = b"",
        version: bytes = b"HTTP/1.1",
        length: bool = True,
    ) -> RawRequest:
        return cls(
            _bytes(method),
            _bytes(target),
            tuple((_bytes(k), _bytes(v)) for k, v in headers),
            body,
            version,
            length,
        )

    def header(self, name: str) -> bytes | None:
        """The first header of that name (case-insensitive), as a server's `headers.get` sees it."""
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def encode(self, host: str, keep_alive: bool = True) -> bytes:
        names = {k.lower() for k, _ in self.headers}
        lines = [self.method + b" " + self.target + b" " + self.version]
        if b"host" not in names:
            lines.append(b"Host: " + host.encode())
        lines += [k + b": " + v for k, v in self.headers]
        framed = names & {b"content-length", b"transfer-encoding"}
        if self.length and not framed and (self.body or self.method not in (b"GET", b"HEAD")):
            lines.append(b"Content-Length: " + str(len(self.body)).encode())
        if b"connection" not in names:
            lines.append(b"Connection: keep-alive" if keep_alive else b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body

    def describe(self, limit: int = 300) -> str:
        head = self.encode("h").split(b"\r\n\r\n", 1)[0]
        text = head.decode("utf-8", "backslashreplace")
        body = self.body[:limit].decode("utf-8", "backslashreplace")
        more = f"… ({len(self.body)} bytes)" if len(self.body) > limit else ""
        return f"{text[: limit * 2]}\n\n{body}{more}"


@dataclass
class Answer:
    status: int | None
    body: bytes = b""
    content_type: str = ""
    error: str = ""
    closes: bool = False


def check_loopback(host: str) -> None:
    if ipaddress.ip_address(host) not in LOOPBACK:
        raise ValueError(f"the fuzz suite sends traffic to loopback addresses only, not {host}")


def open_socket(host: str, port: int, timeout: float = ANSWER_TIMEOUT) -> socket.socket:
    check_loopback(host)
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): the server sees a reset, not an orderly close."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_answer(sock: socket.socket, method: bytes = b"POST") -> Answer:
    """Parse one answer from `sock` (http.client's parser); status None when there is none."""
    response = http.client.HTTPResponse(sock, method=method.decode("latin-1"))
    try:
        response.begin()
        body = response.read()  # whole: the judge decodes it (the server bounds answers)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        response.close()
        return Answer(None, error=f"{type(exc).__name__}: {exc}"[:200], closes=True)
    closes = response.will_close
    content_type = response.getheader("Content-Type", "") or ""
    response.close()
    return Answer(response.status, body, content_type, closes=closes)


def exchange(sock: socket.socket, data: bytes, method: bytes = b"POST") -> Answer:
    """Send `data` and read the answer. A server may answer and close before the whole body is
    sent (413, 400): the answer is still read."""
    send_error = ""
    try:
        sock.sendall(data)
    except OSError as exc:
        send_error = f"{type(exc).__name__} while sending"
    answer = read_answer(sock, method)
    if answer.status is None and send_error:
        answer.error = f"{send_error}; {answer.error}"
    return answer


# what a request sent on a connection the server has just closed meets (nothing was answered)
_STALE = ("ConnectionResetError", "BrokenPipeError", "RemoteDisconnected", "BadStatusLine")


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@dataclass
class Connection:
    """A kept-alive connection to one server, reopened when the server closed it."""

    host: str
    port: int
    timeout: float = ANSWER_TIMEOUT
    sock: socket.socket | None = field(default=None, repr=False)
    stale_retries: int = 0  # requests sent again after a kept-alive connection was closed under them

    def request(self, request: RawRequest) -> Answer:
        """Send on the kept-alive socket. A server may close an idle kept-alive connection just
        as the next request goes out (the request then meets a reset or an end of stream before
        any answer byte): that request is sent again once on a fresh connection, as HTTP clients
        do. On a fresh connection, no answer is no answer."""
        if self.sock is not None and _closed_by_peer(self.sock):
            self.close()
        reused = self.sock is not None
        answer = self._send(request)
        if answer.status is None and reused and answer.error.startswith(_STALE):
            self.stale_retries += 1
            answer = self._send(request)
        return answer

    def _send(self, request: RawRequest) -> Answer:
        if self.sock is None:
            self.sock = open_socket(self.host, self.port, self.timeout)
        answer = exchange(self.sock, request.encode(self.host), request.method)
        if answer.closes or answer.status is None:
            self.close()
        return answer

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


def get(host: str, port: int, path: str, timeout: float) -> tuple[int, bytes, float]:
    """One plain GET on a fresh connection: (status, body, seconds)."""
    started = time.perf_counter()
    sock = open_socket(host, port, timeout)
    try:
        answer = exchange(sock, RawRequest.of("GET", path).encode(host, keep_alive=False), b"GET")
    finally:
        sock.close()
    if answer.status is None:
        raise ConnectionError(answer.error or "no answer")
    return answer.status, answer.body, time.perf_counter() - started
