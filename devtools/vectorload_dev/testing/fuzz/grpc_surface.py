"""A gRPC surface: every method of a service descriptor, attacked with raw request bytes, and the
judge of its answers.

Cases call `/<service>/<method>` with `request_serializer=None`, so any bytes reach the server:
messages generated from the method's request descriptor (`protowire`, within and beyond the
field types), the target's valid examples with one field replaced by a hostile value, targeted
classes the target adds (e.g. hostile searches), wrong `authorization` metadata and bursts. The
methods come from the service descriptor, so a method added to the service (implemented or not)
is covered without a change here.

The judge's rules, for every answer:

- **no INTERNAL, UNKNOWN or DATA_LOSS** gRPC status — those mean a bug in the server (an
  exception escaped, a message that did not parse reached a handler);
- **tokens** — a call carries the configured token when it has exactly one `authorization`
  metadata entry whose value, without surrounding spaces and tabs, is the canonical standard
  base64 (padded, no stray bits) of a configured credential; a call that does not carry one must
  be answered UNAUTHENTICATED (or refused earlier by the transport: RESOURCE_EXHAUSTED for
  oversized metadata), a call that does must not be;
- **documented answers** — an implemented method answers OK with its response type, whose
  `status.code` (when it has one) is one the target documents and not "unexpected error", with
  a reason no longer than `max_reason` characters; a method the target does not implement
  answers UNIMPLEMENTED.
"""

from __future__ import annotations

import base64
import binascii
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor as gd
from google.protobuf import message as gm
from google.protobuf import message_factory

from vectorload_dev.testing.fuzz import http, protowire
from vectorload_dev.testing.fuzz.model import Case, Finding, Outcome
from vectorload_dev.testing.fuzz.schema import draw

CALL_TIMEOUT = 30.0
BAD_STATUSES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})
# what the transport answers before any handler ran (not an accepted token)
TRANSPORT_REFUSALS = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})
# what grpcio's client answers for metadata it will not send (nothing reached the server)
CLIENT_REFUSED = "Invalid metadata"

Metadata = tuple[tuple[str, str], ...]


def canonical_b64(token: str) -> str:
    return base64.b64encode(token.encode("utf-8")).decode("ascii")


def carried_grpc_token(metadata: Metadata) -> str | None:
    """The credential a call carries, by the rule in the module docstring (None: none)."""
    values = [v for k, v in metadata if k == "authorization"]
    if len(values) != 1:
        return None
    value = values[0].strip(" \t")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
        token = raw.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        return None
    return token if canonical_b64(token) == value else None


@dataclass(frozen=True)
class GrpcCase:
    kind: str
    label: str
    method: str
    payload: bytes
    metadata: Metadata
    expect_answer: bool = True

    def run(self, session: Any) -> Outcome:
        outcome: Outcome = session.call(self.method, self.payload, self.metadata)
        return outcome


@dataclass(frozen=True)
class GrpcBurstCase:
    """`calls` sent at once on the worker's channel (one HTTP/2 connection), then every answer
    collected."""

    kind: str
    label: str
    calls: tuple[GrpcCase, ...]
    expect_answer: bool = True

    def run(self, session: Any) -> Outcome:
        futures = [session.future(c.method, c.payload, c.metadata) for c in self.calls]
        outcomes = [session.result(f) for f in futures]
        statuses = tuple(o.status for o in outcomes)
        bad = next((o for o in outcomes if o.status is None or _code(o.status) in BAD_STATUSES), outcomes[0])
        return Outcome(
            bad.status,
            bad.body,
            error=bad.error,
            requests=len(self.calls),
            statuses=statuses,
            klass="grpc burst",
        )


_CODES = {c.value[0]: c for c in grpc.StatusCode}


def _code(number: int | None) -> grpc.StatusCode | None:
    return None if number is None else _CODES.get(number)


class GrpcSession:
    """One channel (one HTTP/2 connection) per worker."""

    def __init__(self, host: str, port: int, service: gd.ServiceDescriptor, timeout: float) -> None:
        http.check_loopback(host)
        self.service = service.full_name
        self.streaming = {
            m.name: (m.client_streaming, m.server_streaming)
            for m in service.methods
            if m.client_streaming or m.server_streaming
        }
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            f"{host}:{port}",
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        self._stubs: dict[str, Any] = {}

    def _stub(self, method: str) -> Any:
        stub = self._stubs.get(method)
        if stub is None:
            stub = self._stubs[method] = self.channel.unary_unary(
                f"/{self.service}/{method}", request_serializer=None, response_deserializer=None
            )
        return stub

    def call(self, method: str, payload: bytes, metadata: Metadata) -> Outcome:
        kind = self.streaming.get(method)
        if kind is None:
            return self.result(self.future(method, payload, metadata))
        return self._stream(method, payload, metadata, *kind)

    def _stream(
        self, method: str, payload: bytes, metadata: Metadata, client_streaming: bool, server_streaming: bool
    ) -> Outcome:
        """A streaming method: the payload as the one request message, every answer read."""
        path = f"/{self.service}/{method}"
        plain = {"request_serializer": None, "response_deserializer": None}
        try:
            if client_streaming and server_streaming:
                answers = list(
                    self.channel.stream_stream(path, **plain)(
                        iter([payload]), metadata=metadata, timeout=self.timeout
                    )
                )
            elif server_streaming:
                answers = list(
                    self.channel.unary_stream(path, **plain)(payload, metadata=metadata, timeout=self.timeout)
                )
            else:
                answers = [
                    self.channel.stream_unary(path, **plain)(
                        iter([payload]), metadata=metadata, timeout=self.timeout
                    )
                ]
            return Outcome(0, b"".join(bytes(a) for a in answers[:1]), klass="grpc OK")
        except grpc.RpcError as exc:
            return self._failed(exc)

    def future(self, method: str, payload: bytes, metadata: Metadata) -> Any:
        return self._stub(method).future(payload, metadata=metadata, timeout=self.timeout)

    def result(self, future: Any) -> Outcome:
        try:
            body = future.result()
            return Outcome(0, bytes(body), klass="grpc OK")
        except grpc.RpcError as exc:
            return self._failed(exc)

    def _failed(self, exc: grpc.RpcError) -> Outcome:
        code = exc.code()
        details = str(exc.details() or "")
        if code == grpc.StatusCode.INTERNAL and details == CLIENT_REFUSED:
            return Outcome(None, error="not sent: the client refused the metadata", klass="not sent")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Outcome(None, error=f"no answer in {self.timeout} s", klass="grpc none")
        return Outcome(code.value[0], error=details[:2000], klass=f"grpc {code.name}")

    def close(self) -> None:
        self.channel.close()


CaseMaker = Callable[[random.Random, "GrpcSurface"], Iterator[Case]]


@dataclass(frozen=True)
class GrpcClass:
    kind: str
    weight: float
    make: CaseMaker


@dataclass
class GrpcSurface:
    """`service`: the service descriptor; `examples`: valid request messages per method (the
    target's data); `implemented`: the methods the server implements (the others must answer
    UNIMPLEMENTED); `credentials`: the configured tokens (`user:password` or API keys);
    `codes`: the `status.code` values the server documents."""

    name: str
    host: str
    port: int
    service: gd.ServiceDescriptor
    examples: Mapping[str, Sequence[gm.Message]]
    implemented: frozenset[str]
    credentials: tuple[str, ...]
    codes: frozenset[int]
    classes: tuple[GrpcClass, ...] = ()
    unexpected_code: int = 65535
    max_reason: int = 1000
    timeout: float = CALL_TIMEOUT
    extra: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.classes:
            self.classes = CLASSES

    @property
    def methods(self) -> list[gd.MethodDescriptor]:
        """Every method of the service, streaming ones too (each sends one request message)."""
        return list(self.service.methods)

    @property
    def unary_methods(self) -> list[gd.MethodDescriptor]:
        return [m for m in self.service.methods if not m.client_streaming and not m.server_streaming]

    def auth(self, token: str | None = None) -> Metadata:
        """The metadata of a call with the first configured credential (or `token`, raw)."""
        return (("authorization", canonical_b64(token if token is not None else self.credentials[0])),)

    def case(
        self, kind: str, label: str, method: str, payload: bytes, metadata: Metadata | None = None
    ) -> GrpcCase:
        return GrpcCase(kind, label, method, payload, self.auth() if metadata is None else metadata)

    def response_class(self, method: str) -> Any:
        return message_factory.GetMessageClass(self.service.methods_by_name[method].output_type)

    # --------------------------------------------------------------------- Surface protocol

    def cases(self, count: int, seed: int) -> Iterator[Case]:
        rng = random.Random(seed)
        total = sum(c.weight for c in self.classes)
        chosen: list[Case] = []
        for index, cls in enumerate(self.classes):
            want = max(1, round(count * cls.weight / total))
            made = cls.make(random.Random(seed * 1000 + index), self)
            chosen += _take(made, want)
        rng.shuffle(chosen)
        return iter(chosen)

    def session(self) -> GrpcSession:
        return GrpcSession(self.host, self.port, self.service, self.timeout)

    def close(self, session: Any) -> None:
        session.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def judge(self, case: Case, outcome: Outcome) -> list[Finding]:
        calls = (
            case.calls if isinstance(case, GrpcBurstCase) else (case,) if isinstance(case, GrpcCase) else ()
        )
        detail = f"{outcome.klass} {outcome.error[:400]}"
        findings: list[Finding] = []
        for status in outcome.statuses or (outcome.status,):
            code = _code(status)
            if code in BAD_STATUSES:
                assert code is not None
                findings.append(Finding(f"grpc {code.name}", case.label, f"{_describe(calls)}\n-> {detail}"))
        unanswered = outcome.status is None or None in outcome.statuses
        if getattr(case, "expect_answer", True) and outcome.klass != "not sent" and unanswered:
            findings.append(Finding("no answer", case.label, f"{_describe(calls)}\n-> {detail}"))
        if isinstance(case, GrpcCase) and outcome.status is not None and not outcome.statuses:
            findings += self._judge_one(case, outcome, detail)
        if isinstance(case, UnknownMethodCase) and outcome.status is not None:
            wanted = (
                grpc.StatusCode.UNIMPLEMENTED
                if carried_grpc_token(case.metadata) in self.credentials
                else grpc.StatusCode.UNAUTHENTICATED
            )
            if _code(outcome.status) not in (wanted, grpc.StatusCode.UNIMPLEMENTED):
                findings.append(
                    Finding("unknown method answered", case.label, f"{case.method[:80]} -> {detail}")
                )
        return findings

    def _judge_one(self, case: GrpcCase, outcome: Outcome, detail: str) -> list[Finding]:
        code = _code(outcome.status)
        shown = f"{_describe((case,))}\n-> {detail}"
        carried = carried_grpc_token(case.metadata)
        if carried in self.credentials:
            self._count("right token")
            if code == grpc.StatusCode.UNAUTHENTICATED:
                return [Finding("valid token refused", case.label, shown)]
        else:
            self._count("wrong token")
            if code != grpc.StatusCode.UNAUTHENTICATED and code not in TRANSPORT_REFUSALS:
                return [Finding("token accepted", case.label, shown)]
            return []
        if case.method not in self.implemented:
            if code != grpc.StatusCode.UNIMPLEMENTED:
                return [Finding("unimplemented method answered", case.label, shown)]
            return []
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return [Finding("implemented method answered UNIMPLEMENTED", case.label, shown)]
        if code != grpc.StatusCode.OK:
            return []  # INVALID_ARGUMENT and the like: a refusal of the input
        return self._judge_response(case, outcome, shown)

    def _judge_response(self, case: GrpcCase, outcome: Outcome, shown: str) -> list[Finding]:
        cls = self.response_class(case.method)
        try:
            answer = cls.FromString(outcome.body)
        except gm.DecodeError as exc:
            return [Finding("nonconforming", case.label, f"not a {cls.DESCRIPTOR.name}: {exc}: {shown}")]
        status = answer if cls.DESCRIPTOR.full_name == "milvus.proto.common.Status" else None
        if status is None and "status" in cls.DESCRIPTOR.fields_by_name:
            status = answer.status
        if status is None:
            return []
        reason = f"{status.code} {status.reason[:300]!r}"
        if status.code == self.unexpected_code:
            return [Finding("unexpected error", case.label, f"{reason}: {shown}")]
        if status.code not in self.codes:
            return [Finding("undocumented code", case.label, f"{reason}: {shown}")]
        if len(status.reason) > self.max_reason:
            return [Finding("message not capped", case.label, f"{len(status.reason)} characters: {shown}")]
        return []


def _describe(calls: Sequence[GrpcCase]) -> str:
    if not calls:
        return "-"
    first = calls[0]
    metadata = [(k, v[:80]) for k, v in first.metadata]
    more = f" (+{len(calls) - 1} calls)" if len(calls) > 1 else ""
    return f"{first.method}{more} {metadata} {len(first.payload)} bytes: {first.payload[:200]!r}"


def _take(cases: Iterator[Case], want: int) -> list[Case]:
    out: list[Case] = []
    for case in cases:
        out.append(case)
        if len(out) >= want:
            break
    pool = list(out)
    while pool and len(out) < want:
        out += pool[: want - len(out)]
    return out


# ------------------------------------------------------------------------------------ classes


def _examples(s: GrpcSurface, method: str) -> Sequence[gm.Message]:
    return s.examples.get(method, ())


def valid(rng: random.Random, s: GrpcSurface) -> Iterator[Case]:
    """The target's valid requests, as a client sends them."""
    methods = [m for m in s.examples if s.examples[m]]
    while True:
        method = rng.choice(methods)
        message = rng.choice(list(_examples(s, method)))
        yield s.case("grpc_valid", f"grpc_valid: {method}", method, message.SerializeToString())


def schema(rng: random.Random, s: GrpcSurface) -> Iterator[Case]:
    """Messages generated from every method's request descriptor, within and beyond the field
    types: first one of each for every method (implemented or not), so that a short run covers
    the whole service, then batches of each in a shuffled order."""
    methods = list(s.methods)
    round_ = 0
    while True:
        per_batch = 1 if round_ == 0 else 4
        for index, method in enumerate(methods):
            for beyond in (False, True):
                strategy = protowire.message_strategy(method.input_type, 0, beyond)
                label = f"grpc_schema ({'beyond' if beyond else 'within'}): {method.name}"
                for payload in draw(strategy, per_batch, rng.randrange(2**32) + index + round_):
                    yield s.case("grpc_schema", label, method.name, payload)
        rng.shuffle(methods)
        round_ += 1


def _field_paths(message: gm.Message, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every field of the example's type, and the fields of its set singular message fields."""
    for fd in message.DESCRIPTOR.fields:
        yield (*prefix, fd.name)
        if fd.type == fd.TYPE_MESSAGE and not fd.is_repeated and message.HasField(fd.name):
            yield from _field_paths(getattr(message, fd.name), (*prefix, fd.name))


def mutate(message: gm.Message, path: tuple[str, ...], encoded: bytes) -> bytes:
    """`message` serialized with the field at `path` replaced by `encoded` (its wire bytes)."""
    copy = type(message)()
    copy.CopyFrom(message)
    owner = copy
    for name in path[:-1]:
        owner = getattr(owner, name)
    owner.ClearField(path[-1])
    if len(path) == 1:
        return bytes(copy.SerializeToString()) + encoded
    # a nested field: re-encode the parents around the new bytes (a parent's length changes)
    inner = bytes(owner.SerializeToString()) + encoded
    for depth in range(len(path) - 2, -1, -1):
        parent = copy
        for name in path[:depth]:
            parent = getattr(parent, name)
        fd = parent.DESCRIPTOR.fields_by_name[path[depth]]
        parent_copy = type(parent)()
        parent_copy.CopyFrom(parent)
        parent_copy.ClearField(path[depth])
        inner = bytes(parent_copy.SerializeToString()) + protowire.length_delimited(fd.number, inner)
    return inner


def mutations(rng: random.Random, s: GrpcSurface) -> Iterator[Case]:
    """A valid example with one field (top-level or nested) replaced by a hostile value: the
    rest of the request is right, so the bad value reaches deep into validation."""
    every = [
        (method, message, path)
        for method, messages in s.examples.items()
        for message in messages
        for path in _field_paths(message)
    ]
    if not every:
        return
    while True:
        method, message, path = rng.choice(every)
        owner: Any = message
        for name in path[:-1]:
            owner = getattr(owner, name)
        fd = owner.DESCRIPTOR.fields_by_name[path[-1]]
        strategy = protowire.field_strategy(fd, len(path) - 1, True)
        for encoded in draw(strategy, 4, rng.randrange(2**32)):
            label = f"grpc_mutations: {method} {'.'.join(path)}"
            yield s.case("grpc_mutations", label, method, mutate(message, path, encoded))


def token_variants(credential: str) -> list[tuple[str, str]]:
    """Values of the `authorization` metadata that do not carry `credential` (printable ASCII:
    what a gRPC client sends)."""
    good = canonical_b64(credential)
    raw = credential.encode()
    out = [
        ("empty", ""),
        ("the token itself, not base64", credential),
        ("Bearer and base64", f"Bearer {good}"),
        ("Basic and base64", f"Basic {good}"),
        ("no padding", good.rstrip("=")),
        ("extra padding", good + "=="),
        ("URL-safe alphabet", base64.urlsafe_b64encode(raw + b"\xfb\xff").decode()),
        ("base64 twice", canonical_b64(good)),
        ("base64 of the token and a newline", canonical_b64(credential + "\n")),
        ("base64 of the token and a NUL", base64.b64encode(raw + b"\x00").decode()),
        ("base64 of the token and NBSP", canonical_b64(credential + "\u00a0")),
        ("base64 of a space and the token", canonical_b64(" " + credential)),
        ("base64 of the token upper-cased", canonical_b64(credential.upper())),
        ("base64 of the token swapped case", canonical_b64(credential.swapcase())),
        ("base64 upper-cased", good.upper()),
        ("base64 with a space inside", good[:4] + " " + good[4:]),
        ("base64 of the token twice", canonical_b64(credential * 2)),
        ("long", good * 200),
        ("oversized", "A" * 20_000),
        ("base64 of Latin-1", base64.b64encode(credential.encode("latin-1", "replace") + b"\xe9").decode()),
    ]
    if good.endswith("="):  # non-canonical: stray bits before the padding decode to the same bytes
        pad = good.count("=")
        last = good[-pad - 1]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        stray = alphabet[alphabet.index(last) | 1]
        if stray != last:
            out.append(("stray bits before the padding", good[: -pad - 1] + stray + "=" * pad))
    out += [
        (f"base64 of a prefix of {n} characters", canonical_b64(credential[:n]))
        for n in range(len(credential))
    ]
    out += [
        (
            f"base64 of one character changed at {i}",
            canonical_b64(credential[:i] + chr(ord(c) ^ 1) + credential[i + 1 :]),
        )
        for i, c in enumerate(credential)
    ]
    if ":" in credential:
        user, password = credential.split(":", 1)
        out += [
            ("user only", canonical_b64(user)),
            ("user and a colon", canonical_b64(user + ":")),
            ("password only", canonical_b64(password)),
            ("colon and password", canonical_b64(":" + password)),
            ("user upper-cased", canonical_b64(user.upper() + ":" + password)),
            ("a trailing colon", canonical_b64(credential + ":")),
        ]
    return out


def tokens(rng: random.Random, s: GrpcSurface) -> Iterator[Case]:
    """Wrong `authorization` metadata on every method (implemented or not): every variant of
    every configured credential, other users' passwords, none, two entries; and the right token
    with spaces around it (accepted)."""
    methods = [m.name for m in s.methods]
    first: list[Case] = []
    for name in methods:
        first.append(s.case("grpc_tokens", f"grpc_tokens: none on {name}", name, b"", ()))
        secret = rng.choice(s.credentials)
        first.append(
            s.case("grpc_tokens", f"grpc_tokens: a configured token on {name}", name, b"", s.auth(secret))
        )
    every: list[Case] = []
    users = [c for c in s.credentials if ":" in c]
    for a in users:
        for b in users:
            if a != b:  # a's user name with b's password
                crossed = a.split(":", 1)[0] + ":" + b.split(":", 1)[1]
                if crossed not in s.credentials:
                    every.append(
                        s.case(
                            "grpc_tokens",
                            "grpc_tokens: another user's password",
                            rng.choice(methods),
                            b"",
                            s.auth(crossed),
                        )
                    )
    for secret in s.credentials:
        good = canonical_b64(secret)
        every.append(
            s.case(
                "grpc_tokens",
                "grpc_tokens: right token, spaces around",
                rng.choice(methods),
                b"",
                (("authorization", f" {good}  "),),
            )
        )
        every.append(
            s.case(
                "grpc_tokens",
                "grpc_tokens: two entries, wrong first",
                rng.choice(methods),
                b"",
                (("authorization", "d3Jvbmc="), ("authorization", good)),
            )
        )
        every.append(
            s.case(
                "grpc_tokens",
                "grpc_tokens: two entries, wrong last",
                rng.choice(methods),
                b"",
                (("authorization", good), ("authorization", "d3Jvbmc=")),
            )
        )
        every.append(
            s.case(
                "grpc_tokens",
                "grpc_tokens: two right entries",
                rng.choice(methods),
                b"",
                (("authorization", good), ("authorization", good)),
            )
        )
        for label, value in token_variants(secret):
            every.append(
                s.case(
                    "grpc_tokens",
                    f"grpc_tokens: {label}",
                    rng.choice(methods),
                    b"",
                    (("authorization", value),),
                )
            )
    rng.shuffle(first)
    rng.shuffle(every)
    yield from every
    yield from first
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
    while True:
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 64)))
        yield s.case(
            "grpc_tokens", "grpc_tokens: random", rng.choice(methods), b"", (("authorization", junk),)
        )


def bursts(rng: random.Random, s: GrpcSurface) -> Iterator[Case]:
    """Many calls at once on one connection: valid examples, generated messages, wrong tokens."""
    methods = s.unary_methods
    with_examples = [m for m in s.examples if s.examples[m]]
    while True:
        size = rng.choice([16, 32, 64])
        calls: list[GrpcCase] = []
        for _ in range(size):
            how = rng.randrange(3)
            if how == 0 and with_examples:
                method = rng.choice(with_examples)
                payload = rng.choice(list(s.examples[method])).SerializeToString()
                calls.append(s.case("grpc_bursts", "", method, payload))
            elif how == 1:
                calls.append(
                    s.case(
                        "grpc_bursts",
                        "",
                        rng.choice(methods).name,
                        bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))),
                    )
                )
            else:
                calls.append(
                    s.case("grpc_bursts", "", rng.choice(methods).name, b"", (("authorization", "d3Jvbmc="),))
                )
        yield GrpcBurstCase("grpc_bursts", f"grpc_bursts: {size} at once", tuple(calls))


def garbage(rng: random.Random, s: GrpcSurface) -> Iterator[Case]:
    """Bytes that are no message at all, to every method."""
    methods = s.methods
    fixed = [
        b"\xff",
        b"\x0a\xff\xff\xff\xff\x0f",
        b"\x08",
        b"\x12\x05ab",
        b"\x00" * 10,
        b"\x80" * 11 + b"\x01",
    ]
    for payload in fixed:
        method = rng.choice(methods).name
        yield s.case("grpc_garbage", f"grpc_garbage: {payload[:12]!r}", method, payload)
    while True:
        payload = bytes(rng.randrange(256) for _ in range(rng.choice([1, 5, 50, 500, 5000])))
        yield s.case("grpc_garbage", "grpc_garbage: random bytes", rng.choice(methods).name, payload)


def unknown_methods(rng: random.Random, s: GrpcSurface) -> Iterator[Case]:
    """Method names the service does not have (a client chooses the path): each must be
    UNIMPLEMENTED, or UNAUTHENTICATED without a token, and none may cost the server memory
    (a metric label per name would)."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_."
    names = [m.name for m in s.methods]
    while True:
        how = rng.randrange(4)
        if how == 0:
            name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        elif how == 1:
            name = rng.choice(names) + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        elif how == 2:
            name = rng.choice(names).lower()
        else:
            name = "x" * rng.choice([200, 2000])
        metadata = s.auth() if rng.random() < 0.5 else (("authorization", "d3Jvbmc="),)
        yield UnknownMethodCase(
            "grpc_unknown_methods", "grpc_unknown_methods: a method the service lacks", name, metadata
        )


@dataclass(frozen=True)
class UnknownMethodCase:
    kind: str
    label: str
    method: str
    metadata: Metadata
    expect_answer: bool = True

    def run(self, session: Any) -> Outcome:
        outcome: Outcome = session.call(self.method, b"", self.metadata)
        return outcome


CLASSES: tuple[GrpcClass, ...] = (
    GrpcClass("grpc_valid", 6, valid),
    GrpcClass("grpc_schema", 16, schema),
    GrpcClass("grpc_mutations", 12, mutations),
    GrpcClass("grpc_garbage", 3, garbage),
    GrpcClass("grpc_tokens", 8, tokens),
    GrpcClass("grpc_bursts", 0.4, bursts),
    GrpcClass("grpc_unknown_methods", 3, unknown_methods),
)


def with_classes(extra: Sequence[GrpcClass]) -> tuple[GrpcClass, ...]:
    return (*CLASSES, *extra)
