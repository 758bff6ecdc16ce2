"""A JSON-over-HTTP surface: its operations, tokens, cases, and the judge of its answers.

The judge applies three rules to every answer, whatever case produced it:

- **no 5xx** — a 5xx means a bug in the server;
- **tokens** — on a route that needs a token, an answer other than 401 to a request that does not
  carry an accepted token is a token accepted that is not the configured one (aiohttp's own plain
  400 for a malformed request is not: it never reached a handler); a 401 to one that does carry
  it is a valid token refused. A request carries a token when its first `Authorization` header is
  `<scheme> <token>` with the scheme `bearer` in any case (RFC 7235: auth schemes are
  case-insensitive) and the token byte for byte the configured one, after removing only the
  spaces and tabs HTTP allows around a header value — a token with any other character more or
  less (a prefix, a case variant, a trailing NBSP or vertical tab) is not the configured one;
- **documented answers** — a status the operation documents (or 404/405 from routing), and a JSON
  body that decodes as the operation's answer type or the error body (the surface's `check_answer`).
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vectorload_dev.testing.fuzz import http
from vectorload_dev.testing.fuzz.model import Auth, Case, Finding, Outcome

HTTP_WHITESPACE = " \t"
ROUTING_STATUSES = frozenset({404, 405})


@dataclass(frozen=True)
class Operation:
    """One route. `example` is a valid body for the target's loaded data (None: no body);
    `path_example` a concrete path for a templated one; `filter_key` the body key holding a
    filter expression, when the operation takes one."""

    method: str
    path: str
    auth: Auth
    statuses: frozenset[int]
    json_answer: bool = True
    example: Mapping[str, Any] | None = None
    path_example: str | None = None
    filter_key: str | None = None

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(self.path)) + "$")

    @property
    def concrete_path(self) -> str:
        return self.path_example or self.path

    def matches(self, method: bytes, target: bytes) -> bool:
        """Whether a request line reaches this route; the target may be in origin form (`/p`) or
        absolute form (`http://host/p`, which HTTP/1.1 servers must accept)."""
        path = target.split(b"?", 1)[0].decode("latin-1")
        absolute = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*", path)
        if absolute:
            path = path[absolute.end() :] or "/"
        return method.decode("latin-1") == self.method.upper() and bool(self.pattern.match(path))


def carried_token(header: bytes | None) -> str | None:
    """The credential of a bearer `Authorization` header value, by the rule in the module doc."""
    if header is None:
        return None
    try:
        text = header.decode("utf-8").strip(HTTP_WHITESPACE)
    except UnicodeDecodeError:
        return None
    scheme, sep, value = text.partition(" ")
    if not sep or scheme.lower() != "bearer":
        return None
    value = value.strip(HTTP_WHITESPACE)
    return value or None


# ------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class HttpCase:
    """One request on the worker's kept-alive connection."""

    kind: str
    label: str
    request: http.RawRequest
    operation: Operation | None = None  # the route it reaches when method and path match one
    expect_answer: bool = True

    def run(self, session: Any) -> Outcome:
        answer = session.connection.request(self.request)
        return Outcome(answer.status, answer.body, answer.content_type, answer.error)


@dataclass(frozen=True)
class SlowBodyCase:
    """Slowloris: the headers, then the body dribbled in `pieces` over `seconds`; `complete`
    False goes away before the last piece (a client that disconnects mid-body), `rst` with a
    reset instead of an orderly close."""

    kind: str
    label: str
    request: http.RawRequest
    seconds: float
    pieces: int
    complete: bool
    rst: bool = False
    operation: Operation | None = None
    expect_answer: bool = True

    def run(self, session: Any) -> Outcome:
        data = self.request.encode(session.host, keep_alive=False)
        head, _, body = data.partition(b"\r\n\r\n")
        sock = http.open_socket(session.host, session.port)
        try:
            sock.sendall(head + b"\r\n\r\n")
            step = max(1, len(body) // self.pieces)
            chunks = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
            if not self.complete:
                chunks = chunks[: max(1, len(chunks) - 1)]
            for chunk in chunks:
                time.sleep(self.seconds / len(chunks))
                sock.sendall(chunk)
            if not self.complete:
                (http.reset if self.rst else type(sock).close)(sock)
                return Outcome(None)
            answer = http.read_answer(sock, self.request.method)
            return Outcome(answer.status, answer.body, answer.content_type, answer.error)
        except OSError as exc:
            return Outcome(None, error=f"{type(exc).__name__}: {exc}")
        finally:
            sock.close()


@dataclass(frozen=True)
class DisconnectCase:
    """A client that goes away: after `send` bytes of the request (all of it when None), without
    reading the answer; with a reset when `rst`."""

    kind: str
    label: str
    request: http.RawRequest
    send: int | None
    rst: bool = False
    operation: Operation | None = None
    expect_answer: bool = False

    def run(self, session: Any) -> Outcome:
        data = self.request.encode(session.host, keep_alive=False)
        sock = http.open_socket(session.host, session.port)
        with contextlib.suppress(OSError):
            sock.sendall(data if self.send is None else data[: self.send])
        (http.reset if self.rst else type(sock).close)(sock)
        return Outcome(None)


@dataclass(frozen=True)
class BurstCase:
    """`requests` sent on as many fresh connections at once, then every answer read."""

    kind: str
    label: str
    requests: tuple[http.RawRequest, ...]
    operation: Operation | None = None
    expect_answer: bool = True

    def run(self, session: Any) -> Outcome:
        socks = []
        statuses: list[int | None] = []
        errors: list[str] = []
        try:
            for request in self.requests:
                sock = http.open_socket(session.host, session.port)
                socks.append((sock, request))
                try:
                    sock.sendall(request.encode(session.host, keep_alive=False))
                except OSError as exc:
                    errors.append(f"{type(exc).__name__} while sending")
            for sock, request in socks:
                answer = http.read_answer(sock, request.method)
                statuses.append(answer.status)
                if answer.error:
                    errors.append(answer.error)
        finally:
            for sock, _ in socks:
                sock.close()
        first = next((s for s in statuses if s is not None and s >= 500), statuses[0] if statuses else None)
        return Outcome(
            first, error="; ".join(errors[:3]), requests=len(self.requests), statuses=tuple(statuses)
        )


@dataclass(frozen=True)
class RawCase:
    """Bytes that need not be HTTP at all, sent in `pieces` with `pause` seconds between them on
    a fresh connection; then the answer is read for at most `wait` seconds. An answer that is an
    HTTP/1.1 status line is parsed (and judged: no 5xx); anything else, or nothing, is no answer,
    which is what most garbage deserves."""

    kind: str
    label: str
    data: bytes
    pieces: int = 1
    pause: float = 0.0
    wait: float = 0.5
    rst: bool = False
    operation: Operation | None = None
    expect_answer: bool = False

    def run(self, session: Any) -> Outcome:
        sock = http.open_socket(session.host, session.port, timeout=self.wait)
        try:
            step = max(1, -(-len(self.data) // self.pieces))
            for i in range(0, max(1, len(self.data)), step):
                if i:
                    time.sleep(self.pause)
                sock.sendall(self.data[i : i + step])
            head = b""
            with contextlib.suppress(OSError):
                head = sock.recv(12, socket.MSG_PEEK)
            if not head.startswith(b"HTTP/1."):
                return Outcome(None, error=f"no HTTP answer ({head[:12]!r})")
            answer = http.read_answer(sock)
            return Outcome(answer.status, answer.body, answer.content_type, answer.error)
        except OSError as exc:
            return Outcome(None, error=f"{type(exc).__name__}: {exc}")
        finally:
            (http.reset if self.rst else type(sock).close)(sock)


# ------------------------------------------------------------------------------------ surface


@dataclass
class Session:
    host: str
    port: int
    connection: http.Connection


CaseMaker = Callable[[random.Random, "HttpSurface"], Iterator[Case]]


@dataclass(frozen=True)
class CaseClass:
    """A class of input: `make` yields its cases (endlessly or not; a finite one is repeated)."""

    kind: str
    weight: float
    make: CaseMaker


@dataclass
class HttpSurface:
    name: str
    host: str
    port: int
    operations: tuple[Operation, ...]
    tokens: Mapping[Auth, tuple[str, ...] | None]  # accepted per auth level; None: open
    classes: tuple[CaseClass, ...]
    check_answer: Callable[[Operation | None, int, bytes], str | None]
    secrets: tuple[str, ...] = ()  # the configured tokens (the auth class derives wrong ones)
    # the token an Authorization header carries, by the server's documented rule (bearer only
    # by default; a server that also takes `Basic base64(user:password)` passes its own rule)
    carried: Callable[[bytes | None], str | None] = carried_token
    answer_timeout: float = http.ANSWER_TIMEOUT
    extra: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # what the judge checked (see stats)
    _counts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _count(self, name: str) -> None:
        with self._counts_lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def stats(self) -> dict[str, int]:
        """How many answers the token rule judged: requests without an accepted token on a
        protected route (`wrong token`) and with one (`right token`)."""
        with self._counts_lock:
            return dict(self.counts)

    # ---------------------------------------------------------------------- building requests

    def operation(self, method: bytes, target: bytes) -> Operation | None:
        return next((op for op in self.operations if op.matches(method, target)), None)

    def token_for(self, auth: Auth) -> str | None:
        accepted = self.tokens.get(auth)
        return accepted[0] if accepted else None

    def request(
        self,
        op: Operation,
        body: bytes | None = None,
        headers: list[tuple[str | bytes, str | bytes]] | None = None,
        token: str | bytes | bool | None = True,
        method: str | None = None,
        path: str | bytes | None = None,
    ) -> http.RawRequest:
        """A request to `op`: its example body (or `body`), JSON content type, and the right
        token (`token=True`), a given Authorization value, or none (`None`/False)."""
        import json

        all_headers: list[tuple[str | bytes, str | bytes]] = []
        if token is True:
            good = self.token_for(op.auth)
            if good is not None:
                all_headers.append(("Authorization", f"Bearer {good}"))
        elif token:
            all_headers.append(("Authorization", token))
        if body is None and op.example is not None:
            body = json.dumps(op.example).encode()
        if body is not None:
            all_headers.append(("Content-Type", "application/json"))
        all_headers += headers or []
        return http.RawRequest.of(
            method or op.method.upper(), path or op.concrete_path, all_headers, body or b""
        )

    def case(self, kind: str, label: str, request: http.RawRequest, expect_answer: bool = True) -> HttpCase:
        return HttpCase(kind, label, request, self.operation(request.method, request.target), expect_answer)

    # ------------------------------------------------------------------------ Surface protocol

    def cases(self, count: int, seed: int) -> Iterator[Case]:
        rng = random.Random(seed)
        total = sum(c.weight for c in self.classes)
        chosen: list[Case] = []
        for index, cls in enumerate(self.classes):
            want = max(1, round(count * cls.weight / total))
            chosen += _take(cls.make(random.Random(seed * 1000 + index), self), want)
        rng.shuffle(chosen)
        return iter(chosen)

    def session(self) -> Session:
        return Session(self.host, self.port, http.Connection(self.host, self.port, self.answer_timeout))

    def close(self, session: Any) -> None:
        session.connection.close()

    def judge(self, case: Case, outcome: Outcome) -> list[Finding]:
        request = getattr(case, "request", None)
        shown = request.describe() if isinstance(request, http.RawRequest) else case.label
        answer = outcome.body[:300].decode("utf-8", "backslashreplace")
        detail = f"{shown}\n-> {outcome.status} {answer} {outcome.error}".strip()
        findings = [
            Finding("5xx", case.label, detail)
            for status in (outcome.statuses or (outcome.status,))
            if status is not None and status >= 500
        ]
        if getattr(case, "expect_answer", True) and (outcome.status is None or None in outcome.statuses):
            findings.append(Finding("no answer", case.label, detail))
        if not isinstance(request, http.RawRequest) or outcome.status is None or outcome.statuses:
            return findings
        findings += self._judge_tokens(case, request, outcome, detail)
        findings += self._judge_answer(case, request, outcome, detail)
        return findings

    def _judge_tokens(
        self, case: Case, request: http.RawRequest, outcome: Outcome, detail: str
    ) -> list[Finding]:
        op = getattr(case, "operation", None)
        if op is None or op.auth == "none":
            return []
        accepted = self.tokens.get(op.auth)
        if accepted is None:  # served without a token
            return []
        status = outcome.status
        plain_400 = status == 400 and not outcome.content_type.startswith("application/json")
        carried = self.carried(request.header("Authorization"))
        if plain_400:  # refused before any handler read the token
            return []
        if carried in accepted:
            self._count("right token")
            if status == 401:
                return [Finding("valid token refused", case.label, detail)]
            return []
        self._count("wrong token")
        if status != 401:
            return [Finding("token accepted", case.label, detail)]
        return []

    def _judge_answer(
        self, case: Case, request: http.RawRequest, outcome: Outcome, detail: str
    ) -> list[Finding]:
        status = outcome.status
        assert status is not None
        if request.method == b"HEAD":
            return []
        op = getattr(case, "operation", None)
        is_json = outcome.content_type.startswith("application/json")
        documented = op is None or status in op.statuses | ROUTING_STATUSES or status >= 500
        if not documented and not (status == 400 and not is_json):
            return [Finding("undocumented status", case.label, detail)]
        if not is_json:
            if status == 400 or (op is not None and status == 200 and not op.json_answer):
                return []
            return [Finding("nonconforming", case.label, f"not JSON: {detail}")]
        problem = self.check_answer(op if status == 200 else None, status, outcome.body)
        return [] if problem is None else [Finding("nonconforming", case.label, f"{problem}: {detail}")]


def _take(cases: Iterator[Case], want: int) -> list[Case]:
    out: list[Case] = []
    pool: list[Case] = []
    for case in cases:
        out.append(case)
        pool.append(case)
        if len(out) == want:
            return out
    while pool and len(out) < want:  # a finite class is repeated
        out += pool[: want - len(out)]
    return out
