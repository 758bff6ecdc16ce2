"""Protobuf messages as bytes on the wire, generated from descriptors (hypothesis strategies), for
the gRPC surface (`grpc_surface.py`).

A server parses whatever bytes arrive, so the generator writes the wire format itself rather
than building message objects (which refuse most of what an attacker sends): every field of a
message descriptor, recursively to a bounded depth, with values *within* their types (valid
messages: integers in range, known enum numbers, UTF-8 strings) or *beyond* them (any 64-bit
varint in an int32 or a bool, unknown enum numbers, NaN and infinities, strings that are not
UTF-8, a message field holding garbage, the wrong wire type for a field number, unknown field
numbers, huge repeated fields, a message cut short). `message_strategy(descriptor)` covers a
method's request type, whatever it is: a method added to the service is fuzzed without a change
here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor
from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import strategies as st

Bytes = st.SearchStrategy[bytes]

MAX_DEPTH = 3  # nested messages below this are empty (or garbage, beyond)
HUGE_REPEATS = (1_000, 20_000)  # entries of a huge repeated field (each small: the total stays < 1 MB)
HUGE_STRING = (10_000, 300_000)  # characters of a huge string
MAX_HUGE_BYTES = 2 << 20  # a huge repeated field's bytes at most


def varint(value: int) -> bytes:
    """Base-128 varint of `value` as a uint64 (negative numbers in two's complement, 10 bytes)."""
    n = value & (2**64 - 1)
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


_INT_RANGES: dict[int, tuple[int, int]] = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}
_EDGE_INTS = (0, 1, -1, 2**31 - 1, -(2**31), 2**31, 2**32, 2**63 - 1, -(2**63), 2**64 - 1, 16384, 16385)
_VARINT = {FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_BOOL, FD.TYPE_ENUM}
_ZIGZAG = {FD.TYPE_SINT32, FD.TYPE_SINT64}
_FIXED32 = {FD.TYPE_FIXED32, FD.TYPE_SFIXED32, FD.TYPE_FLOAT}
_FIXED64 = {FD.TYPE_FIXED64, FD.TYPE_SFIXED64, FD.TYPE_DOUBLE}
_PACKABLE = _VARINT | _ZIGZAG | _FIXED32 | _FIXED64


def _ints(fd: FD, beyond: bool) -> st.SearchStrategy[int]:
    if fd.type == FD.TYPE_BOOL:
        valid: st.SearchStrategy[int] = st.sampled_from([0, 1])
    elif fd.type == FD.TYPE_ENUM:
        valid = st.sampled_from([v.number for v in fd.enum_type.values])
    else:
        low, high = _INT_RANGES[fd.type]
        valid = st.one_of(
            st.integers(low, high), st.sampled_from([e for e in _EDGE_INTS if low <= e <= high])
        )
    if not beyond:
        return valid
    return st.one_of(valid, st.integers(-(2**63), 2**64 - 1), st.sampled_from(_EDGE_INTS))


def _floats(beyond: bool, width: int) -> st.SearchStrategy[float]:
    if beyond:
        return st.floats(allow_nan=True, allow_infinity=True, width=width)  # type: ignore[arg-type]
    return st.floats(-1e6, 1e6, width=width)  # type: ignore[arg-type]


def _scalar_payload(fd: FD, beyond: bool) -> Bytes:
    """One value of a scalar field, encoded without its key."""
    t = fd.type
    if t in _VARINT:
        return _ints(fd, beyond).map(varint)
    if t in _ZIGZAG:
        return _ints(fd, beyond).map(lambda v: varint(zigzag(v)))
    if t == FD.TYPE_FLOAT:
        return _floats(beyond, 32).map(lambda v: struct.pack("<f", v))
    if t == FD.TYPE_DOUBLE:
        return _floats(beyond, 64).map(lambda v: struct.pack("<d", v))
    if t in _FIXED32:
        return _ints(fd, beyond).map(lambda v: struct.pack("<I", v & 0xFFFFFFFF))
    if t in _FIXED64:
        return _ints(fd, beyond).map(lambda v: struct.pack("<Q", v & (2**64 - 1)))
    raise ValueError(f"not a scalar: {fd.full_name}")


def _wire_type(fd: FD) -> int:
    if fd.type in _VARINT or fd.type in _ZIGZAG:
        return 0
    if fd.type in _FIXED64:
        return 1
    if fd.type in _FIXED32:
        return 5
    return 2


def _text(beyond: bool, depth: int) -> Bytes:
    # generic words only: a target's own names (its loaded collection) come from its examples, so a
    # generated ReleaseCollection never names what the run needs loaded
    words = st.sampled_from(["", "_default", "default", "*", "$meta", "x" * 256, "__default_resource_group"])
    valid = st.one_of(
        st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")), words.map(str.encode)
    )
    if not beyond:
        return valid
    return st.one_of(
        valid,
        st.binary(max_size=40),  # mostly not UTF-8
        st.sampled_from([b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"a\x00b", b"\xf4\x90\x80\x80"]),
        *([st.integers(*HUGE_STRING).map(lambda n: b"x" * n)] if depth == 0 else []),
    )


def field_payloads(fd: FD, depth: int, beyond: bool) -> Bytes:
    """One occurrence of `fd`'s value, without its key (a message: its encoded fields)."""
    if fd.type == FD.TYPE_MESSAGE:
        inner = message_strategy(fd.message_type, depth + 1, beyond)
        return st.one_of(inner, st.binary(max_size=30)) if beyond else inner
    if fd.type in (FD.TYPE_STRING, FD.TYPE_BYTES):
        return _text(beyond, depth)
    return _scalar_payload(fd, beyond)


def _encode_one(fd: FD) -> Callable[[bytes], bytes]:
    wire = _wire_type(fd)
    if wire == 2:
        return lambda payload: length_delimited(fd.number, payload)
    prefix = key(fd.number, wire)
    return lambda payload: prefix + payload


def field_strategy(fd: FD, depth: int, beyond: bool) -> Bytes:
    """Every occurrence of `fd` in a message (key and value): one, a few, or (beyond, repeated)
    thousands; packed or not; or (beyond) the wrong wire type."""
    value = field_payloads(fd, depth, beyond)
    one = value.map(_encode_one(fd))
    if not fd.is_repeated:
        out = one
    else:
        out = st.lists(one, max_size=4).map(b"".join)
        if fd.type in _PACKABLE:
            packed = st.lists(value, max_size=6).map(lambda vs: length_delimited(fd.number, b"".join(vs)))
            out = st.one_of(out, packed)
        if beyond and depth == 0:  # huge only at the top: a message stays below a few MB
            huge = st.tuples(one, st.integers(*HUGE_REPEATS)).map(
                lambda p: p[0] * min(p[1], MAX_HUGE_BYTES // max(1, len(p[0])))
            )
            out = st.one_of(out, huge)
    if beyond:
        wrong = st.sampled_from([0, 1, 2, 5]).filter(lambda w: w != _wire_type(fd))
        mismatched = st.tuples(wrong, st.binary(max_size=12)).map(
            lambda p: (
                key(fd.number, p[0])
                + {0: varint(len(p[1])), 1: p[1][:8].ljust(8, b"\0"), 5: p[1][:4].ljust(4, b"\0")}.get(
                    p[0], varint(len(p[1])) + p[1]
                )
            )
        )
        out = st.one_of(out, mismatched)
    return out


def _cut(data: bytes, at: int) -> bytes:
    return data[: at % (len(data) + 1)] if data else data


@cache
def message_strategy(descriptor: Descriptor, depth: int = 0, beyond: bool = False) -> Bytes:
    """A serialized message of `descriptor`'s type: any subset of its fields (below `MAX_DEPTH`),
    in any order; beyond its types, also unknown field numbers and a message cut short."""
    if depth >= MAX_DEPTH:
        return st.binary(max_size=8) if beyond else st.just(b"")
    optional = {fd.name: st.deferred(_deferred(fd, depth, beyond)) for fd in descriptor.fields}
    fields = st.fixed_dictionaries({}, optional=optional)
    ordered = st.tuples(fields, st.randoms(use_true_random=False)).map(_shuffled)
    if not beyond:
        return ordered
    unknown = st.tuples(st.integers(1000, 2**29 - 1), st.binary(max_size=8)).map(
        lambda p: length_delimited(p[0], p[1])
    )
    return st.one_of(
        ordered,
        st.tuples(ordered, unknown).map(lambda p: p[0] + p[1]),
        st.tuples(ordered, st.integers(0, 2**20)).map(lambda p: _cut(p[0], p[1])),
        st.binary(max_size=64),
    )


def _deferred(fd: FD, depth: int, beyond: bool) -> Callable[[], Bytes]:
    return lambda: field_strategy(fd, depth, beyond)


def _shuffled(pair: tuple[dict[str, bytes], Any]) -> bytes:
    parts, rnd = pair
    values = list(parts.values())
    rnd.shuffle(values)
    return b"".join(values)
