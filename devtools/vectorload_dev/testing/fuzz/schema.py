"""Schema-based cases: schemathesis generates requests from an OpenAPI document (for the
querynode, `docs/querynode-openapi.yaml`, itself generated from the msgspec wire types), both
conforming (positive) and not (negative: wrong types, missing keys, values outside the schema,
odd headers). They become `HttpCase`s the runner sends like any other, with the right token added
unless schemathesis chose the `Authorization` header itself.

Generation is deterministic (hypothesis seeded per operation and batch from the run's seed), so a
run can be repeated case for case.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Err

from vectorload_dev.testing.fuzz import http
from vectorload_dev.testing.fuzz.model import Case
from vectorload_dev.testing.fuzz.surface import HttpSurface

SKIPPED_HEADERS = {"user-agent", "x-schemathesis-testcaseid", "accept-encoding", "connection"}


def _encode_body(kwargs: dict[str, Any]) -> bytes:
    if "json" in kwargs:
        return json.dumps(kwargs["json"], allow_nan=True).encode("utf-8", "surrogatepass")
    data = kwargs.get("data")
    if data is None:
        return b""
    return data if isinstance(data, bytes) else str(data).encode("utf-8", "surrogatepass")


def _to_request(surface: HttpSurface, case: Any) -> http.RawRequest:
    kwargs = case.as_transport_kwargs(base_url=f"http://{surface.host}:{surface.port}")
    url: str = kwargs["url"]
    target = url.split(f"{surface.port}", 1)[1] or "/"
    params = kwargs.get("params") or {}
    if params:
        from urllib.parse import urlencode

        target += "?" + urlencode(params, doseq=True)
    headers: list[tuple[str | bytes, str | bytes]] = [
        (str(k), str(v)) for k, v in (kwargs.get("headers") or {}).items() if k.lower() not in SKIPPED_HEADERS
    ]
    names = {str(k).lower() for k, _ in headers}
    operation = surface.operation(kwargs["method"].encode(), target.encode())
    if "authorization" not in names and operation is not None:
        token = surface.token_for(operation.auth)
        if token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
    return http.RawRequest.of(
        kwargs["method"], target.encode("utf-8", "surrogateescape"), headers, _encode_body(kwargs)
    )


def draw(strategy: st.SearchStrategy[Any], count: int, seed: int) -> list[Any]:
    """Up to `count` examples of `strategy`, deterministic for `seed` (any hypothesis strategy)."""
    drawn: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seeded(seed)
    @given(case=strategy)
    def collect(case: Any) -> None:
        drawn.append(case)

    with contextlib.suppress(Unsatisfiable):  # nothing to generate (negative, no inputs)
        collect()
    return drawn[:count]


def schema_cases(
    document: Path | dict[str, Any], modes: tuple[str, ...] = ("positive", "negative")
) -> Callable[..., Iterator[Case]]:
    """A case maker (`CaseClass.make`) drawing from every operation of `document` (a file, or an
    OpenAPI document as plain values) in turn."""
    schema = (
        schemathesis.openapi.from_dict(document)
        if isinstance(document, dict)
        else schemathesis.openapi.from_path(str(document))
    )
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())

    def make(rng: random.Random, surface: HttpSurface, count: int = 0) -> Iterator[Case]:
        per_batch = 25
        round_ = 0
        while True:
            made = 0
            for index, operation in enumerate(operations):
                for mode in modes:
                    strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
                    for case in draw(strategy, per_batch, seed=rng.randrange(2**32) + index + round_):
                        label = f"schema ({mode}): {operation.method.upper()} {operation.path}"
                        made += 1
                        yield surface.case("schema", label, _to_request(surface, case))
            if not made:
                return
            round_ += 1

    return make
