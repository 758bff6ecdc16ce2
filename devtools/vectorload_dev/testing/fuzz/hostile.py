"""Hand-written hostile classes for any JSON-over-HTTP surface (`HttpSurface`).

Each class is a generator `(rng, surface) -> cases`, built from the surface's operations and
their valid example bodies, so the same classes attack the querynode's API and, later, the proxy's
REST surfaces. The classes (issue 13): malformed JSON, deep nesting, nulls, wrong types, huge
numbers, huge values, hostile filters (`filters.py`), bad headers (non-UTF-8, oversized, many,
bad framing), wrong Content-Encoding, tokens, bursts, slowloris bodies and disconnects; plus
valid requests, so the server does real work while it is attacked.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import zlib
from collections.abc import Iterator
from typing import Any

from vectorload_dev.testing.fuzz import filters, http
from vectorload_dev.testing.fuzz.model import Case
from vectorload_dev.testing.fuzz.surface import (
    BurstCase,
    CaseClass,
    DisconnectCase,
    HttpSurface,
    Operation,
    RawCase,
    SlowBodyCase,
)


def _body_ops(s: HttpSurface) -> list[Operation]:
    return [op for op in s.operations if op.example is not None]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def valid(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    """Requests a client would send (bodies varied by the target's `vary` hook)."""
    vary = s.extra.get("vary")
    ops = [op for op in s.operations if op.auth != "none" or op.path != "/metrics"]
    while True:
        op = rng.choice(ops)
        body = vary(rng, op) if vary is not None and op.example is not None else None
        raw = None if body is None else _dumps(body)
        yield s.case("valid", f"valid: {op.method.upper()} {op.path}", s.request(op, raw))


def malformed_json(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    fixed: list[tuple[str, bytes]] = [
        ("empty body", b""),
        ("whitespace", b" \n\t "),
        ("null", b"null"),
        ("a number", b"1"),
        ("a string", b'"x"'),
        ("an array", b"[]"),
        ("true", b"true"),
        ("BOM", b"\xef\xbb\xbf{}"),
        ("NaN", b'{"x": NaN}'),
        ("Infinity", b'{"x": -Infinity}'),
        ("trailing comma", b'{"a": 1,}'),
        ("comment", b'{/* c */"a": 1}'),
        ("single quotes", b"{'a': 1}"),
        ("unquoted key", b"{a: 1}"),
        ("lone surrogate escape", b'{"a": "\\ud800"}'),
        ("bad escape", b'{"a": "\\x41"}'),
        ("control character in a string", b'{"a": "x\x01y"}'),
        ("not UTF-8", b'{"a": "\xff\xfe"}'),
        ("overlong UTF-8", b'{"a": "\xc0\xaf"}'),
        ("NUL", b'{"a"\x00: 1}'),
        ("two documents", b"{}{}"),
        ("unterminated", b'{"a": "'),
        ("only an opening brace", b"{"),
    ]
    ops = _body_ops(s)
    for label, raw in fixed:
        op = rng.choice(ops)
        yield s.case("malformed_json", f"malformed_json: {label}", s.request(op, raw))
    while True:
        op = rng.choice(ops)
        good = _dumps(op.example)
        how = rng.randrange(5)
        if how == 0:
            raw, label = good[: rng.randrange(1, len(good))], "truncated"
        elif how == 1:
            flipped = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            raw, label = bytes(flipped), "bytes flipped"
        elif how == 2:
            raw, label = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))), "random bytes"
        elif how == 3:
            cut = rng.randrange(len(good))
            raw, label = (
                good[:cut] + rng.choice([b"}", b"]", b",", b":", b'"', b"\\"]) + good[cut:],
                "byte inserted",
            )
        else:
            raw, label = good.replace(b":", b"", 1), "colon dropped"
        yield s.case("malformed_json", f"malformed_json: {label}", s.request(op, raw))


def deep_nesting(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    ops = _body_ops(s)
    while True:
        op = rng.choice(ops)
        depth = rng.choice([20, 33, 64, 100, 1000, 10_000, 100_000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        nest = opener * depth + b"1" + closer * depth
        assert op.example is not None
        key = rng.choice(list(op.example))
        where = rng.randrange(3)
        if where == 0:
            raw, label = nest, "the whole body"
        else:
            body = _dumps({k: "__HOLE__" if k == key else v for k, v in op.example.items()})
            raw, label = body.replace(b'"__HOLE__"', nest), f"in {key}"
            if where == 2:
                raw = raw[: len(raw) // 2]  # and cut short
                label += ", cut short"
        yield s.case("deep_nesting", f"deep_nesting: {depth} deep {label}", s.request(op, raw))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list) and value:
        yield from _paths(value[0], (*prefix, 0))


def _set(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(body)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def nulls(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    """Every value of every example body, and the body itself, replaced by null (in a random
    order, so that a short run still covers every operation)."""
    every = [(op, path) for op in _body_ops(s) for path in _paths(op.example)]
    rng.shuffle(every)
    for op, path in every:
        body = _set(op.example, path, None)
        yield s.case("nulls", f"nulls: {op.path} {list(path)} = null", s.request(op, _dumps(body)))


WRONG_VALUES: list[Any] = [
    0,
    -1,
    1.5,
    True,
    "",
    "x",
    [],
    [[]],
    {},
    {"a": 1},
    [None],
    ["x"] * 3,
    "\u0000",
    "\udbff",
    "😀" * 10,
]


def wrong_types(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    ops = _body_ops(s)
    while True:
        op = rng.choice(ops)
        path = rng.choice(list(_paths(op.example))[1:])
        value = rng.choice(WRONG_VALUES)
        body = _set(op.example, path, value)
        raw = json.dumps(body, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        yield s.case("wrong_types", f"wrong_types: {list(path)} = {value!r:.30}", s.request(op, raw))


HUGE_NUMBERS: list[bytes] = [
    b"1" + b"0" * 400,
    b"-1" + b"0" * 400,
    b"1" + b"0" * 5000,  # beyond Python's int-digit limit
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"4.9e-324",
    b"1.7976931348623157e308",
    b"18446744073709551616",  # 2**64
    b"18446744073709551615",
    b"9223372036854775808",  # 2**63
    b"-9223372036854775809",
    b"-0",
    b"0.0",
    b"-0.0",
    b"1E+2",
    b"3.4028235e38",
    b"3.5e38",  # beyond float32
    b"0." + b"0" * 1000 + b"1",
    b"1" * 20 + b"." + b"1" * 20,
]


def huge_numbers(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    ops = _body_ops(s)
    while True:
        op = rng.choice(ops)
        numeric = [p for p in _paths(op.example) if p and isinstance(_get(op.example, p), int | float)]
        path = rng.choice(numeric or list(_paths(op.example))[1:])
        number = rng.choice(HUGE_NUMBERS)
        hole = _dumps(_set(op.example, path, "__HOLE__"))
        raw = hole.replace(b'"__HOLE__"', number)
        yield s.case("huge_numbers", f"huge_numbers: {list(path)} = {number[:24]!r}", s.request(op, raw))


def _get(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        body = body[step]
    return body


def huge_values(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    ops = _body_ops(s)
    while True:
        op = rng.choice(ops)
        assert op.example is not None
        how = rng.randrange(5)
        if how == 0:
            key = rng.choice(list(op.example))
            body, label = _set(op.example, (key,), "x" * rng.choice([300, 70_000, 1_000_000])), f"long {key}"
        elif how == 1:
            key = rng.choice(list(op.example))
            body, label = _set(op.example, (key,), [1] * rng.choice([20_000, 200_000])), f"long list in {key}"
        elif how == 2:
            body = dict(op.example) | {f"unknown_{i}": i for i in range(rng.choice([10, 5000]))}
            label = "many unknown keys"
        elif how == 3:
            body, label = dict(op.example) | {"k" * 100_000: 1}, "a 100,000-character key"
        else:
            body, label = {"collection": "x"} | {str(i): [i] for i in range(1000)}, "wide object"
        yield s.case("huge_values", f"huge_values: {label}", s.request(op, _dumps(body)))


def hostile_filters(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    ops = [op for op in _body_ops(s) if op.filter_key is not None]
    if not ops:  # a surface without filters
        return
    fields = s.extra.get("filter_fields", filters.DEFAULT_FIELDS)
    for text, label in filters.fixed_hostile(fields):
        op = rng.choice(ops)
        assert op.example is not None and op.filter_key is not None
        body = dict(op.example) | {op.filter_key: text}
        yield s.case("hostile_filters", f"hostile_filters: {label}", s.request(op, _dumps(body)))
    while True:
        op = rng.choice(ops)
        assert op.example is not None and op.filter_key is not None
        text, label = filters.random_filter(rng, fields)
        body = dict(op.example) | {op.filter_key: text}
        raw = json.dumps(body).encode("utf-8", "surrogatepass")
        yield s.case("hostile_filters", f"hostile_filters: {label}", s.request(op, raw))


def headers(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    ops = list(s.operations)
    while True:
        op = rng.choice(ops)
        how = rng.randrange(14)
        token = s.token_for(op.auth)
        extra: list[tuple[str | bytes, str | bytes]] = []
        request = None
        if how == 0:
            extra, label = (
                [(b"X-Test", bytes(rng.randrange(128, 256) for _ in range(8)))],
                "non-UTF-8 header value",
            )
        elif how == 1:
            extra, label = (
                [("X-Big", "v" * rng.choice([8000, 8191, 9000, 100_000]))],
                "oversized header value",
            )
        elif how == 2:
            extra, label = [(f"X-H{i}", "v") for i in range(rng.choice([100, 200, 1000]))], "many headers"
        elif how == 3:
            extra, label = [(b"X-\xff\xfe", b"v")], "non-ASCII header name"
        elif how == 4:
            extra, label = (
                [("Content-Length", rng.choice(["-1", "abc", "99999999999999999999", "1, 2"]))],
                ("bad Content-Length"),
            )
        elif how == 5:
            extra, label = [("Transfer-Encoding", "chunked")], "chunked header, plain body"
        elif how == 6:
            extra, label = [("Transfer-Encoding", "chunked"), ("Content-Length", "5")], "both framings"
        elif how == 7:
            extra, label = (
                [("Content-Type", rng.choice(["text/plain", "multipart/form-data", "\xff", ""]))],
                ("odd Content-Type"),
            )
        elif how == 8:
            extra, label = [("Expect", "100-continue")], "Expect: 100-continue"
        elif how == 9:
            method = rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO", "get"])
            request, label = s.request(op, method=method), f"method {method}"
        elif how == 10:
            path = rng.choice(
                [
                    op.concrete_path + "?x=" + "y" * 10_000,
                    "/" + "a" * 20_000,
                    "/v1/catalog/..%2f..%2fetc",
                    "/v1/catalog/%00",
                    "/v1/catalog/" + "é" * 50,
                    "http://example.invalid" + op.concrete_path,
                    "*",
                    op.concrete_path + "/",
                    "//" + op.concrete_path,
                    op.concrete_path.upper(),
                ]
            )
            request, label = s.request(op, path=path.encode("utf-8")), "odd request target"
        elif how == 11:
            request = http.RawRequest(
                op.method.upper().encode(),
                op.concrete_path.encode(),
                (),
                b"",
                rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9", b"XYZ"]),
            )
            label = "odd HTTP version"
            # an answer in another protocol version is not one an HTTP/1.1 client can read
            yield s.case("headers", f"headers: {label}", request, expect_answer=False)
            continue
        elif how == 12:
            chunked = b"5\r\n{}{}{\r\nZZ\r\n\r\n"
            request = s.request(op, chunked, headers=[("Transfer-Encoding", "chunked")])
            label = "bad chunks"
        else:
            extra, label = [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x")], "two tokens"
        if request is None:
            request = s.request(op, headers=extra)
        yield s.case("headers", f"headers: {label}", request)


def content_encoding(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    ops = _body_ops(s)
    while True:
        op = rng.choice(ops)
        good = _dumps(op.example)
        how = rng.randrange(9)
        if how == 0:
            raw, enc, label = good, "gzip", "gzip header, plain body"
        elif how == 1:
            raw, enc, label = good, "deflate", "deflate header, plain body"
        elif how == 2:
            raw, enc, label = gzip.compress(good)[: rng.randrange(5, 40)], "gzip", "truncated gzip"
        elif how == 3:
            raw, enc, label = (
                good,
                rng.choice(["br", "zstd", "rot13", "compress", "x" * 300]),
                "unknown encoding",
            )
        elif how == 4:
            raw, enc, label = gzip.compress(gzip.compress(good)), "gzip, gzip", "two encodings"
        elif how == 5:
            bomb = b'{"collection": "' + b"a" * (s.extra.get("max_body", 4 << 20) + 1024) + b'"}'
            raw, enc, label = gzip.compress(bomb, 9), "gzip", "gzip bomb beyond the body limit"
        elif how == 6:
            raw, enc, label = zlib.compress(b"\xff\xfe\x00" * 100), "deflate", "deflate of non-UTF-8"
        elif how == 7:
            raw, enc, label = gzip.compress(good), "GZIP", "upper-case gzip (valid)"
        else:
            raw, enc, label = gzip.compress(b""), "gzip", "gzip of nothing"
        request = s.request(op, raw, headers=[("Content-Encoding", enc)])
        yield s.case("content_encoding", f"content_encoding: {label}", request)


def _variants(token: str) -> list[tuple[str, bytes]]:
    """Values of an Authorization header that do not carry `token` (the judge checks each)."""
    b = token.encode()
    out: list[tuple[str, bytes]] = [
        ("empty", b""),
        ("scheme only", b"Bearer"),
        ("scheme and a space", b"Bearer "),
        ("no scheme", b),
        ("Basic", b"Basic " + b),
        ("Token", b"Token " + b),
        ("no space", b"Bearer" + b),
        ("tab separator", b"Bearer\t" + b),
        ("upper-case token", b"Bearer " + token.upper().encode()),
        ("token twice", b"Bearer " + b + b),
        ("token and more", b"Bearer " + b + b" x"),
        ("comma list", b"Bearer " + b + b", Bearer x"),
        ("NUL suffix", b"Bearer " + b + b"\x00"),
        ("non-UTF-8 suffix", b"Bearer " + b + b"\xff"),
        ("NBSP suffix", b"Bearer " + b + "\u00a0".encode()),
        ("vertical tab suffix", b"Bearer " + b + b"\x0b"),
        ("form feed suffix", b"Bearer " + b + b"\x0c"),
        ("unit separator suffix", b"Bearer " + b + b"\x1f"),
        ("NEL suffix", b"Bearer " + b + "\u0085".encode()),
        ("ideographic space prefix", "Bearer \u3000".encode() + b),
        ("line separator suffix", b"Bearer " + b + "\u2028".encode()),
        ("long", b"Bearer " + b * 500),
        ("wrong token, lower-case scheme", b"bearer wrong"),
        ("wrong token, upper-case scheme", b"BEARER wrong"),
        ("swapped case", b"Bearer " + token.swapcase().encode()),
    ]
    out += [(f"prefix of {n} characters", b"Bearer " + b[:n]) for n in range(1, len(b))]
    out += [
        (f"one character changed at {i}", b"Bearer " + b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :])
        for i in range(len(b))
    ]
    return out


def tokens(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    """Wrong tokens on every route that needs one; the configured tokens with scheme case
    variants (accepted: RFC 7235); the data token on the control API (refused)."""
    protected = [op for op in s.operations if op.auth != "none" and s.tokens.get(op.auth) is not None]
    secrets = list(s.secrets)
    first: list[Case] = []  # each route: no token, every configured token, scheme case variants
    every: list[Case] = []  # each route: every wrong variant of every configured token
    for op in protected:
        first.append(s.case("tokens", f"tokens: none on {op.path}", s.request(op, token=None)))
        for secret in secrets:  # every configured token, whether this route takes it or not
            request = s.request(op, token=f"Bearer {secret}")
            first.append(s.case("tokens", f"tokens: a configured token on {op.path}", request))
        for scheme in ("bearer", "BEARER", "bEaReR"):
            value = f"{scheme} {s.token_for(op.auth)}".encode()
            first.append(
                s.case("tokens", f"tokens: scheme {scheme}, right token", s.request(op, token=value))
            )
        for secret in secrets:
            for label, value in _variants(secret):
                every.append(s.case("tokens", f"tokens: {label} on {op.path}", s.request(op, token=value)))
    rng.shuffle(first)
    rng.shuffle(every)  # a short run still covers every route
    yield from first
    yield from every
    while True:
        op = rng.choice(protected)
        junk = "".join(rng.choice("abcdefABCDEF0123456789-_.~+/=") for _ in range(rng.randint(1, 64)))
        yield s.case("tokens", "tokens: random", s.request(op, token=f"Bearer {junk}"))


def bursts(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    ops = list(s.operations)
    while True:
        size = rng.choice([16, 32, 64])
        requests = tuple(s.request(rng.choice(ops)) for _ in range(size))
        yield BurstCase("bursts", f"bursts: {size} at once", requests)


def slow_bodies(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    ops = _body_ops(s)
    while True:
        op = rng.choice(ops)
        request = s.request(op)
        complete = rng.random() < 0.5
        seconds = rng.choice([0.2, 0.5, 1.0])
        pieces = rng.choice([3, 10, 30])
        label = (
            f"slow_bodies: {pieces} pieces over {seconds} s, {'complete' if complete else 'gone mid-body'}"
        )
        yield SlowBodyCase(
            "slow_bodies",
            label,
            request,
            seconds,
            pieces,
            complete,
            rst=rng.random() < 0.5,
            operation=op,
            expect_answer=complete,
        )


def disconnects(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    ops = _body_ops(s)
    while True:
        op = rng.choice(ops)
        request = s.request(op)
        size = len(request.encode(s.host))
        send = rng.choice([None, size // 2, size - 1, 10])
        where = "after the whole request" if send is None else f"after {send} of {size} bytes"
        rst = rng.random() < 0.5
        yield DisconnectCase(
            "disconnects", f"disconnects: {where}{' (reset)' if rst else ''}", request, send, rst, op
        )


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# an HTTP/2 SETTINGS frame (empty), a PING, and a HEADERS frame whose HPACK block is garbage
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
PING = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"\x00" * 8
BAD_HEADERS = b"\x00\x00\x05\x01\x05\x00\x00\x00\x01" + b"\xff\xff\xff\xff\xff"


def raw_bytes(rng: random.Random, s: HttpSurface) -> Iterator[Case]:
    """Connections that are neither HTTP/1.1 nor a whole HTTP/2 preface (a port that serves both
    tells them apart by their first bytes): random bytes, TLS and SSH greetings, truncated and
    corrupted prefaces, a preface followed by garbage frames, and slowloris prefaces dribbled a
    byte at a time. Nothing need be answered; the server must stay up and prompt."""
    fixed: list[tuple[str, bytes, int, float]] = [
        ("a TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 1, 0.0),
        ("an SSH greeting", b"SSH-2.0-OpenSSH_9.6\r\n", 1, 0.0),
        ("NUL bytes", b"\x00" * 64, 1, 0.0),
        ("a lone CRLF", b"\r\n", 1, 0.0),
        ("the preface's first line only", PREFACE[:16], 1, 0.0),
        ("the preface less its last byte", PREFACE[:-1], 1, 0.0),
        ("the preface with its magic corrupted", PREFACE[:18] + b"XX\r\n\r\n", 1, 0.0),
        ("the preface in lower case", PREFACE.lower(), 1, 0.0),
        ("the preface and garbage", PREFACE + bytes(range(256)), 1, 0.0),
        ("the preface and a garbage HEADERS frame", PREFACE + SETTINGS + BAD_HEADERS, 1, 0.0),
        ("the preface, SETTINGS and PINGs", PREFACE + SETTINGS + PING * 50, 1, 0.0),
        (
            "the preface and a frame of 16 MiB announced",
            PREFACE + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01",
            1,
            0.0,
        ),
        ("a slowloris preface (24 pieces over 1.2 s)", PREFACE, 24, 0.05),
        ("a slowloris preface, cut short", PREFACE[:12], 12, 0.1),
        ("a slowloris request line", b"POST /v2/vectordb/entities/search HTTP/1.1\r\nHo", 20, 0.05),
        (
            "PRI as an HTTP/1.1 method",
            b"PRI /v2/vectordb/collections/list HTTP/1.1\r\nHost: x\r\n\r\n",
            1,
            0.0,
        ),
    ]
    for label, data, pieces, pause in fixed:
        yield RawCase("raw_bytes", f"raw_bytes: {label}", data, pieces, pause, rst=rng.random() < 0.5)
    while True:
        how = rng.randrange(4)
        if how == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.choice([1, 8, 100, 4000])))
            label = "random bytes"
        elif how == 1:
            data = PREFACE[: rng.randrange(1, len(PREFACE))]
            label = "a truncated preface"
        elif how == 2:
            data = PREFACE + bytes(rng.randrange(256) for _ in range(rng.choice([1, 9, 100, 2000])))
            label = "the preface and random frames"
        else:
            cut = rng.randrange(len(PREFACE))
            data = PREFACE[:cut] + bytes([rng.randrange(256)]) + PREFACE[cut + 1 :]
            label = "the preface with one byte changed"
        yield RawCase("raw_bytes", f"raw_bytes: {label}", data, rst=rng.random() < 0.5)


CLASSES: tuple[CaseClass, ...] = (
    CaseClass("valid", 8, valid),
    CaseClass("malformed_json", 8, malformed_json),
    CaseClass("deep_nesting", 4, deep_nesting),
    CaseClass("nulls", 4, nulls),
    CaseClass("wrong_types", 6, wrong_types),
    CaseClass("huge_numbers", 6, huge_numbers),
    CaseClass("huge_values", 3, huge_values),
    CaseClass("hostile_filters", 12, hostile_filters),
    CaseClass("headers", 6, headers),
    CaseClass("content_encoding", 4, content_encoding),
    CaseClass("tokens", 10, tokens),
    CaseClass("bursts", 0.3, bursts),
    CaseClass("slow_bodies", 0.5, slow_bodies),
    CaseClass("disconnects", 2, disconnects),
)
