"""The fuzz suite can fail: against a deliberately broken server (a small stdlib HTTP server in a
process of its own) the same runner and judge report every kind of failure the querynode run
asserts the absence of — 5xx answers, a token prefix accepted, the data token accepted on the
control API, a valid token refused, an undocumented answer, a slow /healthz and RSS that grows
with every request. And the rule of what "carries the configured token" is pinned down."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from vectorload_dev.testing import free_port, wait_for
from vectorload_dev.testing.fuzz import hostile, http, runner
from vectorload_dev.testing.fuzz.model import Surface
from vectorload_dev.testing.fuzz.surface import CaseClass, HttpSurface, Operation, carried_token
from vectorload_dev.testing.querynode_harness import next_host

CONTROL, DATA = "control-secret-token", "data-secret-token"

BROKEN = textwrap.dedent(
    """
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    CONTROL, DATA = sys.argv[3], sys.argv[4]
    leak = []
    calls = {"healthz": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body, content_type="application/json"):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def token(self):
            value = self.headers.get("Authorization", "")
            return value[7:] if value.startswith("Bearer ") else ""

        def do_GET(self):
            if self.path == "/healthz":
                calls["healthz"] += 1
                if calls["healthz"] % 40 == 0:
                    time.sleep(0.7)  # a stall
                return self.answer(200, '{"status": "ok"}')
            if self.path == "/control":
                # bug: the data token is accepted on the control API
                if self.token() in (CONTROL, DATA):
                    return self.answer(200, '{"ok": true}')
                return self.answer(401, '{"error": {"reason": "Unauthorized", "message": "no"}}')
            return self.answer(404, '{"error": {"reason": "NotFound", "message": "no route"}}')

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            leak.append(bytearray(200_000))  # bug: memory that grows with every request
            token = self.token()
            # bug: any prefix of the data token passes (and the control token is refused)
            if not token or not DATA.startswith(token) or token == CONTROL:
                return self.answer(401, '{"error": {"reason": "Unauthorized", "message": "no"}}')
            if b"null" in body:
                return self.answer(500, '{"error": {"reason": "InternalError", "message": "boom"}}')
            if b"teapot" in body:
                return self.answer(418, "I am a teapot", "text/plain")  # undocumented, not JSON
            if b"array" in body:
                return self.answer(200, "[1]")  # documented status, not the answer type
            return self.answer(200, '{"ok": true}')

    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
    """
)


class BrokenTarget:
    name = "broken"

    def __init__(self, proc: subprocess.Popen[bytes], host: str, port: int) -> None:
        self.proc = proc
        self.host = host
        self.port = port

    @property
    def pid(self) -> int:
        return self.proc.pid

    def surfaces(self) -> list[Surface]:
        operations = (
            Operation("get", "/healthz", "none", frozenset({200})),
            Operation("get", "/control", "control", frozenset({200, 401})),
            Operation(
                "post",
                "/data",
                "data",
                frozenset({200, 400, 401}),
                example={"collection": "c", "limit": 1, "note": "tea"},
            ),
        )

        def teapots(rng: object, surface: HttpSurface) -> Iterator[object]:
            op = operations[2]
            while True:
                yield surface.case("teapot", "teapot", surface.request(op, b'{"collection": "teapot"}'))
                yield surface.case("teapot", "array", surface.request(op, b'{"collection": "array"}'))

        return [
            HttpSurface(
                name="broken http",
                host=self.host,
                port=self.port,
                operations=operations,
                tokens={"none": (), "control": (CONTROL,), "data": (DATA, CONTROL)},
                classes=(
                    CaseClass("nulls", 3, hostile.nulls),
                    CaseClass("tokens", 6, hostile.tokens),
                    CaseClass("valid", 3, hostile.valid),
                    CaseClass("teapot", 1, teapots),  # type: ignore[arg-type]
                ),
                check_answer=lambda op, status, body: None if body.startswith(b"{") else "not an object",
                secrets=(CONTROL, DATA),
            )
        ]

    def health_endpoint(self) -> tuple[str, int, str]:
        return self.host, self.port, "/healthz"

    def server_errors(self) -> int | None:
        return None

    def alive(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[BrokenTarget]:
    script = tmp_path / "broken_server.py"
    script.write_text(BROKEN)
    host = next_host()
    port = free_port(host)
    proc = subprocess.Popen([sys.executable, str(script), host, str(port), CONTROL, DATA])
    try:
        wait_for("the broken server", lambda: _up(host, port), timeout=20)
        yield BrokenTarget(proc, host, port)
    finally:
        proc.kill()
        proc.wait(10)


def _up(host: str, port: int) -> bool:
    try:
        return http.get(host, port, "/healthz", 2.0)[0] == 200
    except OSError:
        return False


def test_the_runner_reports_every_kind_of_failure(broken: BrokenTarget) -> None:
    report = runner.run(broken, requests=400, seconds=60, seed=3, workers=2, warmup=0.2)
    print(report.summary())
    kinds = set(report.finding_counts)
    assert {"5xx", "token accepted", "valid token refused", "undocumented status", "nonconforming"} <= kinds
    found = {f.case for f in report.findings if f.kind == "token accepted"}
    assert any("prefix" in case for case in found), found  # a prefix of the data token
    assert any("a configured token on /control" in case for case in found), found  # the data token
    failures = "\n".join(report.failures())
    assert "/healthz worst" in failures and "RSS grew" in failures, failures
    assert report.answers_5xx > 0


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc", "abc"),
        (b"bearer abc", "abc"),
        (b"BEARER  abc\t", "abc"),
        (b"Bearer abc\xc2\xa0", "abc\u00a0"),  # not "abc": NBSP is not HTTP whitespace
        (b"Bearer\tabc", None),
        (b"Basic abc", None),
        (b"abc", None),
        (b"Bearer ", None),
        (b"Bearer \xff", None),
        (None, None),
    ],
)
def test_what_carries_a_token(header: bytes | None, token: str | None) -> None:
    assert carried_token(header) == token


def test_the_plan_is_deterministic_for_a_seed(broken: BrokenTarget) -> None:
    def labels(seed: int) -> list[str]:
        return [case.label for _, case in runner.plan(broken, 200, seed)]

    assert labels(5) == labels(5) != labels(6)
    assert json.dumps(labels(5))  # printable for a report
