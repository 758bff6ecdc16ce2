"""What the fuzz suite talks about: targets, their surfaces, cases and outcomes.

A *target* is one running server under attack (a querynode process, the Milvus-compatible
proxy): it names the process whose memory is watched, the `/healthz`-style probe that must stay
prompt, and its *surfaces*. A surface is one way in: `HttpSurface` is JSON over HTTP (the
querynode's API, the proxy's REST v1/v2); `GrpcSurface` is gRPC, with cases of its own. A *case*
is one attack — it knows how to run itself and returns an `Outcome`; the surface judges outcomes
(`Surface.judge`: a 5xx, a token accepted that is not the configured one, an answer that does not
match the documented types). The runner (`runner.py`) knows nothing of HTTP
or of any target: adding the proxy is a new target module that lists its surfaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Auth = Literal["none", "control", "data"]


@dataclass(frozen=True)
class Outcome:
    """What came back. `status` None: no answer (the connection was closed, or the case did not
    wait for one); `error` says why when that was not the case's intent."""

    status: int | None
    body: bytes = b""
    content_type: str = ""
    error: str = ""
    requests: int = 1  # requests this case sent (a burst sends many)
    statuses: tuple[int | None, ...] = ()  # one per request when a case sends several
    klass: str = ""  # how the report counts the answer (a gRPC status name); "": the HTTP class


@dataclass(frozen=True)
class Finding:
    """One thing that must not happen, with what is needed to reproduce it."""

    kind: str  # "5xx", "token accepted", "valid token refused", "nonconforming", "no answer", ...
    case: str  # the case's label
    detail: str  # request and answer, cut short


class Case(Protocol):
    @property
    def label(self) -> str:
        """`<class>: <what>`, e.g. `hostile_filters: like with 41 %`."""
        ...

    @property
    def kind(self) -> str:
        """The class of input it belongs to (a hostile class, `schema`, `valid`)."""
        ...

    def run(self, session: Any) -> Outcome: ...


class Surface(Protocol):
    name: str

    def cases(self, count: int, seed: int) -> Iterator[Case]:
        """About `count` cases of every class this surface knows, deterministic for a seed."""
        ...

    def session(self) -> Any:
        """Per-worker state a case runs with (e.g. a kept-alive connection); closed by `close`."""
        ...

    def close(self, session: Any) -> None: ...

    def judge(self, case: Case, outcome: Outcome) -> list[Finding]: ...

    def stats(self) -> dict[str, int]:
        """Counts of what the judge checked, for the report (e.g. wrong tokens refused)."""
        ...


class Target(Protocol):
    """A server under attack."""

    name: str

    @property
    def pid(self) -> int: ...

    def surfaces(self) -> list[Surface]: ...

    def health_endpoint(self) -> tuple[str, int, str]:
        """(host, port, path) of the liveness endpoint probed with `GET` during the run."""
        ...

    def server_errors(self) -> int | None:
        """5xx answers the server itself counted (its metrics), None when it does not count them."""
        ...

    def alive(self) -> bool: ...


@dataclass
class Tally:
    """Counts per case kind."""

    requests: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, outcome: Outcome) -> None:
        self.requests[kind] = self.requests.get(kind, 0) + outcome.requests
        for status in outcome.statuses or (outcome.status,):
            key = outcome.klass or ("none" if status is None else f"{status // 100}xx")
            self.statuses[key] = self.statuses.get(key, 0) + 1
