"""`vectorload load`, `vectorload release`, `vectorload load-state`: milvus_cli's load lifecycle
commands (`release -c book -p novel`), spoken to a Milvus API endpoint through pymilvus.

Why pymilvus and not the Kubernetes API: the commands are the ones a Milvus user already knows, so
they go through the same front door as every other Milvus client — vectorload's proxy, which turns
them into CollectionLoad changes — and the very same commands work against a real Milvus. There is
no vectorload-specific path to drift from what the proxy serves.

`load` asks without waiting (pymilvus' `_async`) and then polls the load state itself, drawing
`vectorload.progress.ProgressBar` up to Loaded; the server's own message is what the user sees when
it refuses or fails (pymilvus raises `MilvusException` with Milvus' code and message).

Exit codes: 0 done; 1 the server refused or failed the call, or the load did not finish in
`--timeout`; 2 bad arguments; 3 the endpoint could not be reached. The waiting logic is pure
(`wait_loaded`, an injected clock and sleep) so it is unit-tested without a server.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from vectorload.progress import ProgressBar

DEFAULT_URI = "http://localhost:19530"
TOKEN_ENV = "MILVUS_TOKEN"  # noqa: S105 (the name of an environment variable)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
# pymilvus' own code for "could not connect" (pymilvus.exceptions.ErrorCode ... MilvusException
# raised by the connection handler): Milvus servers never answer it.
CONNECT_ERROR_CODE = 2
STATES = {0: "NotExist", 1: "NotLoad", 2: "Loading", 3: "Loaded"}


class LoadClient(Protocol):
    """The part of `pymilvus.MilvusClient` these commands use."""

    def load_collection(self, collection_name: str, timeout: float | None = None, **kwargs: Any) -> None: ...
    def load_partitions(
        self, collection_name: str, partition_names: list[str], timeout: float | None = None, **kwargs: Any
    ) -> None: ...
    def release_collection(
        self, collection_name: str, timeout: float | None = None, **kwargs: Any
    ) -> None: ...
    def release_partitions(
        self, collection_name: str, partition_names: list[str], timeout: float | None = None, **kwargs: Any
    ) -> None: ...
    def get_load_state(
        self, collection_name: str, partition_name: str = "", timeout: float | None = None, **kwargs: Any
    ) -> dict[str, Any]: ...


class CommandError(Exception):
    """A failure to report as one line, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class LoadState:
    """One collection's or partition's state as `get_load_state` reports it."""

    target: str  # "book" or "book/novel"
    state: str  # NotExist | NotLoad | Loading | Loaded
    progress: int  # 0..100 (100 when Loaded, 0 when not loaded)

    def render(self) -> str:
        return (
            f"{self.target}: {self.state} {self.progress}%"
            if self.state == "Loading"
            else f"{self.target}: {self.state}"
        )


def state_name(value: Any) -> str:
    """pymilvus' `LoadState` (an IntEnum) or its number as the Milvus name."""
    name = getattr(value, "name", None)
    if isinstance(name, str) and name in STATES.values():
        return name
    try:
        return STATES[int(value)]
    except (TypeError, ValueError, KeyError):
        return str(value)


def read_state(client: LoadClient, collection: str, partition: str = "") -> LoadState:
    answer = client.get_load_state(collection, partition) if partition else client.get_load_state(collection)
    state = state_name(answer.get("state"))
    if state == "Loaded":
        progress = 100
    elif state == "Loading":
        progress = max(0, min(100, int(answer.get("progress") or 0)))
    else:
        progress = 0
    return LoadState(f"{collection}/{partition}" if partition else collection, state, progress)


def read_states(client: LoadClient, collection: str, partitions: Sequence[str]) -> list[LoadState]:
    return (
        [read_state(client, collection, p) for p in partitions]
        if partitions
        else [read_state(client, collection)]
    )


def overall(states: Sequence[LoadState]) -> tuple[float, bool]:
    """(mean progress, every target Loaded)."""
    return sum(s.progress for s in states) / len(states), all(s.state == "Loaded" for s in states)


def wait_loaded(
    client: LoadClient,
    collection: str,
    partitions: Sequence[str],
    timeout: float,
    *,
    on_progress: Callable[[float], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 0.5,
) -> list[LoadState]:
    """Poll until every target is Loaded. A target that stops existing (NotExist) or drops back
    to NotLoad after loading began (someone released it) fails at once; errors the server raises
    while loading (its refusal of the request) propagate; past `timeout` fails with the last state."""
    deadline = clock() + timeout
    started_loading = False
    while True:
        states = read_states(client, collection, partitions)
        progress, done = overall(states)
        on_progress(progress)
        if done:
            return states
        gone = [s for s in states if s.state == "NotExist"]
        if gone:
            raise CommandError(f"{gone[0].target} does not exist")
        if any(s.state == "Loading" for s in states):
            started_loading = True
        elif started_loading and any(s.state == "NotLoad" for s in states):
            raise CommandError(f"released while loading: {'; '.join(s.render() for s in states)}")
        if clock() >= deadline:
            raise CommandError(f"not Loaded after {timeout:g} s: {'; '.join(s.render() for s in states)}")
        sleep(interval)


def parse_fields(text: str | None) -> list[str]:
    """`--fields f1,f2` → ["f1", "f2"]; empty names and duplicates are errors."""
    if text is None:
        return []
    fields = [f.strip() for f in text.split(",")]
    if any(not f for f in fields):
        raise CommandError(f"--fields {text!r}: empty field name", EXIT_USAGE)
    duplicates = sorted({f for f in fields if fields.count(f) > 1})
    if duplicates:
        raise CommandError(f"--fields {text!r}: {', '.join(duplicates)} given twice", EXIT_USAGE)
    return fields


def partitions_of(values: Sequence[str] | None) -> list[str]:
    partitions: list[str] = []
    for value in values or ():
        if not value.strip():
            raise CommandError("-p: empty partition name", EXIT_USAGE)
        if value not in partitions:
            partitions.append(value)
    return partitions


# ---------------------------------------------------------------------------- the three commands
def common_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("-c", "--collection", required=True, help="collection name")
    p.add_argument(
        "-p",
        "--partition",
        action="append",
        default=None,
        help="partition name (repeatable; default: the whole collection)",
    )
    p.add_argument("--uri", default=DEFAULT_URI, help=f"Milvus API endpoint (default {DEFAULT_URI})")
    p.add_argument(
        "--token",
        default=None,
        help=f"`user:password` or API key (default ${TOKEN_ENV}; none: no authentication)",
    )
    p.add_argument(
        "--db", default="", help="database (vectorload: a Kubernetes namespace; default: `default`)"
    )
    p.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for the server (default 600)"
    )
    return p


def load_parser() -> argparse.ArgumentParser:
    p = common_parser(
        "vectorload load", "Load a collection or some of its partitions and wait until it is Loaded."
    )
    p.add_argument("--replicas", type=int, default=None, help="number of in-memory replicas")
    p.add_argument("--fields", default=None, help="load only these fields (comma-separated)")
    p.add_argument("--skip-dynamic-field", action="store_true", help="do not load the dynamic field ($meta)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def release_parser() -> argparse.ArgumentParser:
    return common_parser("vectorload release", "Release a collection or some of its partitions from memory.")


def load_state_parser() -> argparse.ArgumentParser:
    return common_parser(
        "vectorload load-state", "Print the load state of a collection or of its partitions."
    )


def connect(args: argparse.Namespace) -> LoadClient:
    from pymilvus import MilvusClient

    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV, "")
    client: LoadClient = MilvusClient(
        uri=args.uri, token=token, db_name=args.db, timeout=min(args.timeout, 30.0)
    )
    return client


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The LoadCollection / LoadPartitions request options of `vectorload load` (checked before
    anything is sent)."""
    options: dict[str, Any] = {"_async": True}
    if args.replicas is not None:
        if args.replicas < 1:
            raise CommandError(f"--replicas {args.replicas}: must be at least 1", EXIT_USAGE)
        options["replica_number"] = args.replicas
    fields = parse_fields(args.fields)
    if fields:
        options["load_fields"] = fields
    if args.skip_dynamic_field:
        options["skip_load_dynamic_field"] = True
    return options


def check_common(args: argparse.Namespace) -> None:
    partitions_of(args.partition)
    if not args.collection.strip():
        raise CommandError("-c: empty collection name", EXIT_USAGE)
    if args.timeout <= 0:
        raise CommandError(f"--timeout {args.timeout:g}: must be positive", EXIT_USAGE)


def check_load(args: argparse.Namespace) -> None:
    check_common(args)
    load_options(args)


def run_load(client: LoadClient, args: argparse.Namespace, stream: TextIO) -> list[LoadState]:
    partitions = partitions_of(args.partition)
    options = load_options(args)
    if partitions:
        client.load_partitions(args.collection, partitions, timeout=args.timeout, sync=False, **options)
    else:
        client.load_collection(args.collection, timeout=args.timeout, **options)
    label = f"load {args.collection}" + (f" ({', '.join(partitions)})" if partitions else "")
    if args.no_progress:
        return wait_loaded(client, args.collection, partitions, args.timeout)
    with ProgressBar(100, label=label, unit="%", stream=stream) as bar:
        return wait_loaded(client, args.collection, partitions, args.timeout, on_progress=bar.update_to)


def run_release(client: LoadClient, args: argparse.Namespace) -> list[LoadState]:
    partitions = partitions_of(args.partition)
    if partitions:
        client.release_partitions(args.collection, partitions, timeout=args.timeout)
    else:
        client.release_collection(args.collection, timeout=args.timeout)
    return read_states(client, args.collection, partitions)


def run_load_state(client: LoadClient, args: argparse.Namespace) -> list[LoadState]:
    return read_states(client, args.collection, partitions_of(args.partition))


def _main(
    prog: str,
    parser: argparse.ArgumentParser,
    action: Callable[[LoadClient, argparse.Namespace], list[LoadState]],
    argv: Sequence[str],
    check: Callable[[argparse.Namespace], None] = check_common,
    make_client: Callable[[argparse.Namespace], LoadClient] = connect,
) -> int:
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        check(args)
    except CommandError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    # pymilvus logs every failed call with a traceback before raising it: the one-line message
    # below says the same, so its logger stays quiet
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    from pymilvus.exceptions import MilvusException

    try:
        client = make_client(args)
    except MilvusException as exc:
        print(f"{prog}: error: cannot reach {args.uri}: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        states = action(client, args)
    except CommandError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except MilvusException as exc:
        if exc.code == CONNECT_ERROR_CODE:
            print(f"{prog}: error: cannot reach {args.uri}: {exc.message}", file=sys.stderr)
            return EXIT_UNREACHABLE
        print(f"{prog}: error: {exc.message} (code {exc.code})", file=sys.stderr)
        return EXIT_FAILED
    for state in states:
        print(state.render())
    return EXIT_OK


def load_main(argv: list[str]) -> int:
    return _main(
        "vectorload load",
        load_parser(),
        lambda client, args: run_load(client, args, sys.stderr),
        argv,
        check=check_load,
    )


def release_main(argv: list[str]) -> int:
    return _main("vectorload release", release_parser(), run_release, argv)


def load_state_main(argv: list[str]) -> int:
    return _main("vectorload load-state", load_state_parser(), run_load_state, argv)
