"""Wire decode speed: msgspec (chosen) vs pydantic v2 vs a dataclass codec, on the operator's hot
answers — a 48-segment `/v1/distribution` and a 48-segment collection catalog.

Each library decodes the same bytes into frozen, typed values with the same strictness (unknown
keys refused, types checked; the catalog's schema parsed by storage's own parser in every case),
so the figures compare what a typed contract costs, not what a loose one skips. The baseline is
`json.loads` alone (untyped: what the operator parsed before, then re-read with defaults).

    python -m bench.bench_wire_decode [--rounds 7] [--number 200]

Prints microseconds per decode (best round) and ratios to msgspec; writes
bench/results/wire_decode-48.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import timeit
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pydantic
from pydantic.alias_generators import to_camel

from bench.common import write_result
from vectorload.storage.api import CollectionSchema
from vectorload.storage.sample import SAMPLE_SIZES, sample_schema
from vectorload.storage.schema_json import schema_from_dict
from vectorload.wire import querynode as wire

SEGMENTS = 48  # the `large` sample: 48 segments over 3 partitions

# ------------------------------------------------------------------------------ the answers


def distribution_answer() -> bytes:
    segments = tuple(
        wire.HeldSegment(
            collection="book",
            partition=("_default", "novel", "poetry")[i % 3],
            segment=f"seg-{i:04d}",
            state="loaded" if i % 7 else "loading",
            reason="",
            message="",
            bytes=21_000_000 + i,
            rows=30_000,
            fields=("book_id", "book_intro", "cover", "genre", "in_print", "title", "word_count"),
            dynamic_field=True,
            reloading=wire.Reloading(fields=("book_id", "book_intro"), dynamic_field=False)
            if i % 11 == 0
            else wire.UNSET,
        )
        for i in range(SEGMENTS)
    )
    answer = wire.Distribution(
        node="querynode-0",
        boot_id="5d0c8b0e9f6e4a39b8d1f0a7c2e4b6d1",
        capacity=wire.Capacity(
            memory_limit_bytes=8 << 30, used_bytes=1 << 30, reserved_bytes=1 << 20, threshold=0.9
        ),
        segments=segments,
    )
    return wire.encode(answer)


def catalog_answer() -> bytes:
    spec = SAMPLE_SIZES["large"]
    schema = sample_schema("large", 0, spec)
    names = [f.name for f in schema.fields] + ["$meta"]
    partitions = tuple(
        wire.PartitionCatalog(
            name=p,
            segments=tuple(
                wire.SegmentSummary(
                    id=f"{p.strip('_')}-{i:04d}",
                    rows=30_000,
                    bytes={n: 1_000_000 + k for k, n in enumerate(names)},
                    total_bytes=len(names) * 1_000_000,
                    memory_bytes={n: 1_200_000 + k for k, n in enumerate(names)},
                )
                for i in range(SEGMENTS // 3)
            ),
        )
        for p in ("_default", "novel", "poetry")
    )
    return wire.encode(wire.CollectionCatalog(name="book", schema=schema, partitions=partitions))


# --------------------------------------------------------------------------------- pydantic


class _P(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, strict=True, alias_generator=to_camel, populate_by_name=True
    )


class PReloading(_P):
    fields: tuple[str, ...]
    dynamic_field: bool


class PHeldSegment(_P):
    collection: str
    partition: str
    segment: str
    state: Literal["loading", "loaded", "failed"]
    reason: str = ""
    message: str = ""
    bytes: int = 0
    rows: int = 0
    fields: tuple[str, ...] = ()
    dynamic_field: bool = False
    reloading: PReloading | None = None


class PCapacity(_P):
    memory_limit_bytes: int
    used_bytes: int
    reserved_bytes: int
    threshold: float


class PDistribution(_P):
    node: str
    boot_id: str
    capacity: PCapacity
    segments: tuple[PHeldSegment, ...]


class PSegmentSummary(_P):
    id: str
    rows: int
    bytes: dict[str, int]
    total_bytes: int
    memory_bytes: dict[str, int]


class PPartitionCatalog(_P):
    name: str
    segments: tuple[PSegmentSummary, ...]


class PCatalog(_P):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    name: str
    schema_: CollectionSchema = pydantic.Field(alias="schema")
    partitions: tuple[PPartitionCatalog, ...]

    @pydantic.field_validator("schema_", mode="before")
    @classmethod
    def _schema(cls, value: Any) -> CollectionSchema:
        return schema_from_dict(value)


# ----------------------------------------------------------------------- a dataclass codec


@dataclass(frozen=True)
class DReloading:
    fields: tuple[str, ...]
    dynamic_field: bool


@dataclass(frozen=True)
class DHeldSegment:
    collection: str
    partition: str
    segment: str
    state: Literal["loading", "loaded", "failed"]
    reason: str = ""
    message: str = ""
    bytes: int = 0
    rows: int = 0
    fields: tuple[str, ...] = ()
    dynamic_field: bool = False
    reloading: DReloading | None = None


@dataclass(frozen=True)
class DCapacity:
    memory_limit_bytes: int
    used_bytes: int
    reserved_bytes: int
    threshold: float


@dataclass(frozen=True)
class DDistribution:
    node: str
    boot_id: str
    capacity: DCapacity
    segments: tuple[DHeldSegment, ...]


@dataclass(frozen=True)
class DSegmentSummary:
    id: str
    rows: int
    bytes: dict[str, int]
    total_bytes: int
    memory_bytes: dict[str, int]


@dataclass(frozen=True)
class DPartitionCatalog:
    name: str
    segments: tuple[DSegmentSummary, ...]


@dataclass(frozen=True)
class DCatalog:
    name: str
    schema: CollectionSchema
    partitions: tuple[DPartitionCatalog, ...]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class DataclassCodec:
    """The small codec one would write instead of a library: json.loads, then a strict
    conversion by converters compiled once per type from the type hints (closures, no per-value
    type introspection)."""

    def __init__(self) -> None:
        self._converters: dict[Any, Any] = {}

    def converter(self, tp: Any) -> Any:
        conv = self._converters.get(tp)
        if conv is None:
            conv = self._converters[tp] = self._compile(tp)
        return conv

    def _compile(self, tp: Any) -> Any:
        if tp is CollectionSchema:
            return schema_from_dict
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            hints = get_type_hints(tp)
            plan = [
                (f.name, _camel(f.name), self.converter(hints[f.name]), f.default is dataclasses.MISSING)
                for f in dataclasses.fields(tp)
            ]
            known = {camel for _, camel, _, _ in plan}
            cls = tp

            def obj(value: Any) -> Any:
                if not isinstance(value, dict):
                    raise ValueError(f"expected an object for {cls.__name__}")
                if not known.issuperset(value):
                    raise ValueError(f"unknown keys {sorted(set(value) - known)}")
                kwargs = {}
                for name, camel, conv, required in plan:
                    if camel in value:
                        kwargs[name] = conv(value[camel])
                    elif required:
                        raise ValueError(f"missing {camel}")
                return cls(**kwargs)

            return obj
        origin = get_origin(tp)
        if origin is tuple:
            item = self.converter(get_args(tp)[0])

            def array(value: Any) -> Any:
                if not isinstance(value, list):
                    raise ValueError("expected an array")
                return tuple(item(v) for v in value)

            return array
        if origin is dict:
            val = self.converter(get_args(tp)[1])

            def mapping(value: Any) -> Any:
                if not isinstance(value, dict):
                    raise ValueError("expected an object")
                return {k: val(v) for k, v in value.items()}

            return mapping
        if origin in (types.UnionType, typing.Union):
            inner = self.converter(next(a for a in get_args(tp) if a is not type(None)))
            return lambda value: None if value is None else inner(value)
        if origin is Literal:
            allowed = frozenset(get_args(tp))

            def literal(value: Any) -> Any:
                if value not in allowed:
                    raise ValueError("unexpected value")
                return value

            return literal
        if tp in (bool, str):
            kind = tp

            def exact(value: Any) -> Any:
                if type(value) is not kind:
                    raise ValueError(f"expected {kind.__name__}")
                return value

            return exact
        if tp is int:

            def integer(value: Any) -> Any:
                if type(value) is not int:
                    raise ValueError("expected an integer")
                return value

            return integer
        if tp is float:

            def number(value: Any) -> Any:
                if type(value) not in (int, float):
                    raise ValueError("expected a number")
                return float(value)

            return number
        raise TypeError(f"unsupported type {tp!r}")

    def decode(self, raw: bytes, tp: type) -> Any:
        return self.converter(tp)(json.loads(raw))


# ------------------------------------------------------------------------------------ timing


def best_us(fn: Any, rounds: int, number: int) -> float:
    return min(timeit.repeat(fn, repeat=rounds, number=number)) / number * 1e6


def measure(
    raw: bytes, wire_t: Any, pyd_t: Any, dc_t: Any, codec: DataclassCodec, rounds: int, number: int
) -> dict[str, float]:
    return {
        "msgspec": best_us(lambda: wire.decode(raw, wire_t), rounds, number),
        "pydantic": best_us(lambda: pyd_t.model_validate_json(raw), rounds, number),
        "dataclass_codec": best_us(lambda: codec.decode(raw, dc_t), rounds, number),
        "json_loads_untyped": best_us(lambda: json.loads(raw), rounds, number),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--number", type=int, default=200)
    args = p.parse_args(argv)
    codec = DataclassCodec()
    answers = {"distribution": distribution_answer(), "catalog": catalog_answer()}
    types_: dict[str, tuple[Any, Any, Any]] = {
        "distribution": (wire.Distribution, PDistribution, DDistribution),
        "catalog": (wire.CollectionCatalog, PCatalog, DCatalog),
    }
    results: dict[str, Any] = {"segments": SEGMENTS, "bytes": {k: len(v) for k, v in answers.items()}}
    for what, raw in answers.items():
        wire_t, pyd_t, dc_t = types_[what]
        # every decoder reads the same bytes without error before it is timed
        codec.decode(raw, dc_t), pyd_t.model_validate_json(raw), wire.decode(raw, wire_t)
        figures = measure(raw, wire_t, pyd_t, dc_t, codec, args.rounds, args.number)
        results[what] = {
            "microseconds": figures,
            "ratio_to_msgspec": {k: v / figures["msgspec"] for k, v in figures.items()},
        }
        print(f"{what} answer, {SEGMENTS} segments, {len(raw)} bytes — µs per decode, best of {args.rounds}:")
        for name, us in figures.items():
            print(f"  {name:<20} {us:9.1f} µs   {us / figures['msgspec']:6.2f}× msgspec")
    results["versions"] = {
        "msgspec": __import__("msgspec").__version__,
        "pydantic": pydantic.VERSION,
        "python": sys.version.split()[0],
    }
    results["load_average"] = float(open("/proc/loadavg").read().split()[0])  # noqa: SIM115
    path = write_result("wire_decode", str(SEGMENTS), results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
