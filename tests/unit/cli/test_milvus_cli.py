"""`vectorload load | release | load-state` without a server: the requests they send (recorded
by a fake of the pymilvus client), the wait to Loaded with an injected clock, output and exit codes.
tests/e2e/test_proxy_system.py runs the same commands against the proxy started by the chart."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pymilvus.client.types import LoadState as MilvusLoadState
from pymilvus.exceptions import MilvusException

from vectorload import milvus_cli as cli
from vectorload.milvus_cli import CommandError, LoadState


class FakeClient:
    """Answers get_load_state from a script of states per target; records every call."""

    def __init__(self, script: dict[str, list[tuple[MilvusLoadState, int]]] | None = None) -> None:
        self.script = script or {}
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail: MilvusException | None = None

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))
        if self.fail is not None:
            raise self.fail

    def load_collection(self, collection_name: str, timeout: float | None = None, **kwargs: Any) -> None:
        self._record("load_collection", collection_name, timeout=timeout, **kwargs)

    def load_partitions(
        self, collection_name: str, partition_names: list[str], timeout: float | None = None, **kwargs: Any
    ) -> None:
        self._record("load_partitions", collection_name, partition_names, timeout=timeout, **kwargs)

    def release_collection(self, collection_name: str, timeout: float | None = None, **kwargs: Any) -> None:
        self._record("release_collection", collection_name, timeout=timeout, **kwargs)

    def release_partitions(
        self, collection_name: str, partition_names: list[str], timeout: float | None = None, **kwargs: Any
    ) -> None:
        self._record("release_partitions", collection_name, partition_names, timeout=timeout, **kwargs)

    def get_load_state(
        self, collection_name: str, partition_name: str = "", timeout: float | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        key = f"{collection_name}/{partition_name}" if partition_name else collection_name
        steps = self.script[key]
        state, progress = steps.pop(0) if len(steps) > 1 else steps[0]
        answer: dict[str, Any] = {"state": state}
        if state == MilvusLoadState.Loading:
            answer["progress"] = progress
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


LOADING = MilvusLoadState.Loading
LOADED = MilvusLoadState.Loaded
NOT_LOAD = MilvusLoadState.NotLoad
NOT_EXIST = MilvusLoadState.NotExist


def test_load_state_names_and_rendering() -> None:
    assert [cli.state_name(s) for s in MilvusLoadState] == ["NotExist", "NotLoad", "Loading", "Loaded"]
    assert cli.state_name(3) == "Loaded"
    assert LoadState("book", "Loading", 40).render() == "book: Loading 40%"
    assert LoadState("book/novel", "NotLoad", 0).render() == "book/novel: NotLoad"
    client = FakeClient({"book": [(LOADING, 140)], "book/novel": [(LOADED, 0)]})
    assert cli.read_state(client, "book") == LoadState("book", "Loading", 100)  # clamped
    assert cli.read_state(client, "book", "novel") == LoadState("book/novel", "Loaded", 100)


def test_wait_loaded_draws_progress_until_loaded() -> None:
    client = FakeClient({"book": [(NOT_LOAD, 0), (LOADING, 0), (LOADING, 40), (LOADING, 90), (LOADED, 0)]})
    clock = Clock()
    seen: list[float] = []
    states = cli.wait_loaded(client, "book", [], 60, on_progress=seen.append, clock=clock, sleep=clock.sleep)
    assert states == [LoadState("book", "Loaded", 100)]
    assert seen == [0, 0, 40, 90, 100]
    assert clock.sleeps == [0.5] * 4


def test_wait_loaded_over_partitions_averages_and_waits_for_all() -> None:
    client = FakeClient(
        {
            "book/novel": [(LOADING, 50), (LOADED, 0)],
            "book/poetry": [(LOADING, 0), (LOADING, 50), (LOADED, 0)],
        }
    )
    clock = Clock()
    seen: list[float] = []
    states = cli.wait_loaded(
        client, "book", ["novel", "poetry"], 60, on_progress=seen.append, clock=clock, sleep=clock.sleep
    )
    assert [s.render() for s in states] == ["book/novel: Loaded", "book/poetry: Loaded"]
    assert seen == [25, 75, 100]


def test_wait_loaded_times_out_with_the_last_state() -> None:
    client = FakeClient({"book": [(LOADING, 30)]})
    clock = Clock()
    with pytest.raises(CommandError, match=r"not Loaded after 2 s: book: Loading 30%"):
        cli.wait_loaded(client, "book", [], 2, clock=clock, sleep=clock.sleep)
    assert clock.now == pytest.approx(2.0)


def test_wait_loaded_fails_when_the_target_disappears_or_is_released() -> None:
    clock = Clock()
    with pytest.raises(CommandError, match="book does not exist"):
        cli.wait_loaded(
            FakeClient({"book": [(NOT_EXIST, 0)]}), "book", [], 60, clock=clock, sleep=clock.sleep
        )
    released = FakeClient({"book": [(LOADING, 10), (NOT_LOAD, 0)]})
    with pytest.raises(CommandError, match="released while loading"):
        cli.wait_loaded(released, "book", [], 60, clock=clock, sleep=clock.sleep)


def test_wait_loaded_passes_server_errors_on() -> None:
    class Failing(FakeClient):
        def get_load_state(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise MilvusException(code=65535, message="not enough querynodes: 1 of 2 replicas placed")

    with pytest.raises(MilvusException, match="not enough querynodes"):
        cli.wait_loaded(Failing(), "book", [], 60, sleep=lambda _: None)


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (None, []),
        ("book_id", ["book_id"]),
        ("book_id, book_intro ,word_count", ["book_id", "book_intro", "word_count"]),
    ],
)
def test_parse_fields(text: str | None, fields: list[str]) -> None:
    assert cli.parse_fields(text) == fields


@pytest.mark.parametrize(("text", "message"), [("a,,b", "empty field name"), ("a,b,a", "a given twice")])
def test_parse_fields_refuses(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=message) as info:
        cli.parse_fields(text)
    assert info.value.exit_code == cli.EXIT_USAGE


def run(main_args: list[str], client: FakeClient, command: str = "load") -> tuple[int, str, str, FakeClient]:
    """One command through `_main` with `client` instead of a connection; (exit, stdout, stderr)."""
    parsers = {"load": cli.load_parser, "release": cli.release_parser, "load-state": cli.load_state_parser}
    err = io.StringIO()
    actions = {
        "load": lambda c, a: cli.run_load(c, a, err),
        "release": cli.run_release,
        "load-state": cli.run_load_state,
    }
    checks = {"load": cli.check_load, "release": cli.check_common, "load-state": cli.check_common}
    out = io.StringIO()
    import contextlib

    connected: list[Any] = []

    def make_client(args: Any) -> FakeClient:
        connected.append(args)
        return client

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli._main(
            f"vectorload {command}",
            parsers[command](),
            actions[command],
            main_args,
            check=checks[command],
            make_client=make_client,
        )
    client.connected = connected  # type: ignore[attr-defined]
    return code, out.getvalue(), err.getvalue(), client


def test_load_sends_every_option_without_waiting_server_side() -> None:
    client = FakeClient({"book": [(LOADING, 50), (LOADED, 0)]})
    code, out, err, _ = run(
        [
            "-c",
            "book",
            "--replicas",
            "2",
            "--fields",
            "book_id,book_intro",
            "--skip-dynamic-field",
            "--timeout",
            "30",
        ],
        client,
    )
    assert (code, out) == (0, "book: Loaded\n"), err
    assert client.calls == [
        (
            "load_collection",
            ("book",),
            {
                "timeout": 30.0,
                "_async": True,
                "replica_number": 2,
                "load_fields": ["book_id", "book_intro"],
                "skip_load_dynamic_field": True,
            },
        )
    ]
    assert "load book |" in err and "100.0%" in err  # the progress bar, on stderr


def test_load_partitions_and_release_partitions() -> None:
    client = FakeClient({"book/novel": [(LOADED, 0)], "book/poetry": [(LOADED, 0)]})
    code, out, _, _ = run(
        ["-c", "book", "-p", "novel", "-p", "poetry", "-p", "novel", "--no-progress"], client
    )
    assert code == 0
    assert out == "book/novel: Loaded\nbook/poetry: Loaded\n"
    assert client.calls[0] == (
        "load_partitions",
        ("book", ["novel", "poetry"]),
        {"timeout": 600.0, "sync": False, "_async": True},
    )
    released = FakeClient({"book/novel": [(NOT_LOAD, 0)]})
    code, out, _, _ = run(["-c", "book", "-p", "novel"], released, "release")
    assert (code, out) == (0, "book/novel: NotLoad\n")
    assert released.calls == [("release_partitions", ("book", ["novel"]), {"timeout": 600.0})]
    whole = FakeClient({"book": [(NOT_LOAD, 0)]})
    assert run(["-c", "book"], whole, "release")[:2] == (0, "book: NotLoad\n")
    assert whole.calls == [("release_collection", ("book",), {"timeout": 600.0})]


def test_load_state_prints_each_target() -> None:
    client = FakeClient({"book": [(LOADING, 40)], "book/novel": [(NOT_LOAD, 0)]})
    assert run(["-c", "book"], client, "load-state")[:2] == (0, "book: Loading 40%\n")
    assert run(["-c", "book", "-p", "novel"], client, "load-state")[:2] == (0, "book/novel: NotLoad\n")
    assert not [c for c in client.calls if c[0] != "get_load_state"], "load-state changes nothing"


def test_server_errors_are_one_line_with_milvus_code_and_exit_1() -> None:
    client = FakeClient()
    client.fail = MilvusException(
        code=100, message="collection not found[database=default][collection=nosuch]"
    )
    code, out, err, _ = run(["-c", "nosuch"], client)
    assert code == cli.EXIT_FAILED and out == ""
    assert (
        err
        == "vectorload load: error: collection not found[database=default][collection=nosuch] (code 100)\n"
    )


def test_unreachable_endpoint_exits_3() -> None:
    client = FakeClient()
    client.fail = MilvusException(code=cli.CONNECT_ERROR_CODE, message="Fail connecting to server on x:1")
    code, _, err, _ = run(["-c", "book", "--uri", "http://x:1"], client, "release")
    assert code == cli.EXIT_UNREACHABLE
    assert err.startswith("vectorload release: error: cannot reach http://x:1: Fail connecting")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-c", "book", "--fields", "a,,b"], "empty field name"),
        (["-c", "book", "--replicas", "0"], "--replicas 0: must be at least 1"),
        (["-c", "book", "-p", " "], "empty partition name"),
        (["-c", "book", "--timeout", "0"], "--timeout 0: must be positive"),
        (["-c", ""], "empty collection name"),
    ],
)
def test_bad_arguments_exit_2_before_connecting(argv: list[str], message: str) -> None:
    code, _, err, client = run(argv, FakeClient())
    assert code == cli.EXIT_USAGE
    assert message in err
    assert client.connected == [] and client.calls == []  # type: ignore[attr-defined]


def test_usage_errors_from_argparse_exit_2() -> None:
    code, _, err, client = run(["--replicas", "2"], FakeClient())
    assert code == 2 and "-c/--collection" in err
    assert client.connected == []  # type: ignore[attr-defined]


def test_token_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Recorder:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)

    import pymilvus

    monkeypatch.setattr(pymilvus, "MilvusClient", Recorder)
    monkeypatch.setenv("MILVUS_TOKEN", "root:secret")
    args = cli.load_state_parser().parse_args(["-c", "book", "--db", "search"])
    cli.connect(args)
    assert seen == {
        "uri": "http://localhost:19530",
        "token": "root:secret",
        "db_name": "search",
        "timeout": 30.0,
    }
    cli.connect(
        cli.load_state_parser().parse_args(["-c", "book", "--token", "alice:pw", "--uri", "http://h:1"])
    )
    assert seen["token"] == "alice:pw" and seen["uri"] == "http://h:1"


def test_commands_are_registered() -> None:
    from vectorload.cli import SUBCOMMANDS

    assert SUBCOMMANDS["load"][0] == "vectorload.milvus_cli:load_main"
    assert SUBCOMMANDS["release"][0] == "vectorload.milvus_cli:release_main"
    assert SUBCOMMANDS["load-state"][0] == "vectorload.milvus_cli:load_state_main"
