"""The seeds' pymilvus scenarios against the proxy started by the chart on the local system
(control plane, process kubelet, querynodes, operator, two proxy pods), with the seed collections
(`vectorload_dev.e2e.seeds`) in the storage root:

* `load_collection` → `get_load_state` prints `{'state': <LoadState: Loaded>}`, and the
  CollectionLoad says the same (`kubectl get cload` and the Milvus API tell one story);
* `load_fields` + `skip_load_dynamic_field`: a filter or output on a field that is not loaded
  fails with Milvus' error, one on a loaded field works;
* `release_collection` → `{'state': <LoadState: NotLoad>}`;
* `Partition(..., "novel").release()` while a search loop on `poetry` never fails;
* `vectorload load | release | load-state` (the milvus_cli-style commands) against the proxy.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vectorload_dev.e2e import seeds
from vectorload_dev.e2e.system import LocalSystem, Release
from vectorload_dev.testing.e2e import install

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
VECTORLOAD = str(Path(sys.executable).with_name("vectorload"))


@pytest.fixture(scope="module")
def seed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seeds")
    seeds.write_storage(root)
    return root


@pytest.fixture(scope="module")
def release(local_system: LocalSystem, seed_root: Path) -> Iterator[Release]:
    import importlib.util

    if importlib.util.find_spec("vectorload_proxy") is None:
        pytest.fail("the proxy (vectorload_proxy, `vectorload proxy`) is not in this checkout")
    yield from install(local_system, seed_root, "proxy", proxy=2)


@pytest.fixture
def client(release: Release) -> Iterator[Any]:
    from pymilvus import MilvusClient

    c = MilvusClient(uri=release.proxy_uri(), token=release.milvus_token())
    try:
        yield c
    finally:
        c.close()


def printed(value: object) -> str:
    """What `print(value)` writes, as the seed's snippets print their results."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print(value)
    return out.getvalue()


def test_load_collection_get_load_state_release(client: Any, release: Release) -> None:
    # the seed's snippet, endpoint aside
    client.load_collection(collection_name="my_collection")
    res = client.get_load_state(collection_name="my_collection")
    assert printed(res) == "{'state': <LoadState: Loaded>}\n"
    # the CollectionLoad tells the same story
    loads = [c for c in release_cloads(release) if c["spec"]["collection"] == "my_collection"]
    assert len(loads) == 1 and loads[0]["status"]["loadState"] == "Loaded"
    hits = client.search(
        "my_collection",
        data=[seeds.arrays().my_query],
        anns_field="my_vector",
        limit=3,
        output_fields=["my_id"],
    )
    assert hits[0][0]["my_id"] == seeds.MY_QUERY_ID

    client.release_collection(collection_name="my_collection")
    res = client.get_load_state(collection_name="my_collection")
    assert printed(res) == "{'state': <LoadState: NotLoad>}\n"
    assert not [
        c
        for c in release_cloads(release)
        if c["spec"]["collection"] == "my_collection"
        and (c.get("status") or {}).get("loadState") != "NotLoad"
    ]


def release_cloads(release: Release) -> list[dict[str, Any]]:
    import json

    return list(json.loads(release.kubectl("get", "cload", "-o", "json"))["items"])


def test_load_fields_and_skip_dynamic_field(client: Any) -> None:
    from pymilvus.exceptions import MilvusException

    client.load_collection(
        collection_name="my_collection",
        load_fields=["my_id", "my_vector"],  # Load only the specified fields
        skip_load_dynamic_field=True,  # Skip loading the dynamic field
    )
    res = client.get_load_state(collection_name="my_collection")
    assert printed(res) == "{'state': <LoadState: Loaded>}\n"
    query = [seeds.arrays().my_query]
    # loaded fields: filter and output work
    hits = client.search(
        "my_collection",
        data=query,
        anns_field="my_vector",
        limit=3,
        filter="my_id < 50",
        output_fields=["my_id"],
    )
    assert hits[0][0]["my_id"] == seeds.MY_QUERY_ID
    assert all(h["my_id"] < 50 for h in hits[0])
    # a field that is not loaded, a dynamic key (the dynamic field is skipped): Milvus' errors
    for kwargs in (
        {"filter": 'my_varchar == "v7"'},
        {"output_fields": ["my_varchar"]},
        {"filter": 'color == "red"'},
    ):
        with pytest.raises(MilvusException) as info:
            client.search("my_collection", data=query, anns_field="my_vector", limit=3, **kwargs)
        assert info.value.code != 0, kwargs
        text = info.value.message
        assert "my_varchar" in text or "color" in text or "$meta" in text, (kwargs, text)
    client.release_collection(collection_name="my_collection")
    assert (
        printed(client.get_load_state(collection_name="my_collection")) == "{'state': <LoadState: NotLoad>}\n"
    )


def test_partition_release_while_searching_poetry_never_fails(release: Release) -> None:
    from pymilvus import Collection, Partition, connections, utility

    alias = f"orm-{time.monotonic_ns()}"
    connections.connect(alias=alias, uri=release.proxy_uri(), token=release.milvus_token())
    try:
        book = Collection("book", using=alias)
        book.load()
        assert str(utility.load_state("book", using=alias)) == "Loaded"
        query = [seeds.arrays().book_query]
        param = {"metric_type": "L2", "params": {"ef": 64}}
        stop = threading.Event()
        outcomes: list[object] = []

        def search_poetry() -> None:
            deadline = time.monotonic() + 60  # bounded in time and count
            while not stop.is_set() and time.monotonic() < deadline and len(outcomes) < 5000:
                try:
                    result = book.search(query, "book_intro", param, limit=3, partition_names=["poetry"])
                    outcomes.append(list(result[0].ids))
                except Exception as exc:  # every failure is recorded and fails the test below
                    outcomes.append(exc)

        searcher = threading.Thread(target=search_poetry, daemon=True)
        searcher.start()
        time.sleep(1.0)
        before = len(outcomes)
        partition = Partition(book, "novel")  # Get an existing partition.
        partition.release()
        assert str(utility.load_state("book", partition_names=["novel"], using=alias)) == "NotLoad"
        time.sleep(1.0)
        stop.set()
        searcher.join(timeout=30)
        failures = [o for o in outcomes if isinstance(o, Exception)]
        assert not failures, f"{len(failures)} of {len(outcomes)} searches failed: {failures[:3]}"
        assert before >= 3 and len(outcomes) > before + 3, "the loop searched before and after the release"
        assert all(ids[0] == seeds.BOOK_QUERY_ID for ids in outcomes if isinstance(ids, list))
        assert str(utility.load_state("book", partition_names=["poetry"], using=alias)) == "Loaded"
        book.release()
    finally:
        connections.disconnect(alias)


def cli(release: Release, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VECTORLOAD, *args, "--uri", release.proxy_uri(), "--token", release.milvus_token()],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_milvus_cli_commands_against_the_proxy(release: Release) -> None:
    loaded = cli(release, "load", "-c", "book", "-p", "novel", "-p", "poetry")
    assert (loaded.returncode, loaded.stdout) == (0, "book/novel: Loaded\nbook/poetry: Loaded\n"), (
        loaded.stderr
    )
    assert "100.0%" in loaded.stderr  # the progress bar reached Loaded
    state = cli(release, "load-state", "-c", "book", "-p", "novel", "-p", "_default")
    assert state.stdout == "book/novel: Loaded\nbook/_default: NotLoad\n", state.stderr
    released = cli(release, "release", "-c", "book", "-p", "novel")  # the seed's `release -c book -p novel`
    assert (released.returncode, released.stdout) == (0, "book/novel: NotLoad\n"), released.stderr
    assert cli(release, "load-state", "-c", "book", "-p", "poetry").stdout == "book/poetry: Loaded\n"
    missing = cli(release, "load", "-c", "nosuch")
    assert missing.returncode == 1
    assert "collection not found" in missing.stderr and "(code 100)" in missing.stderr, missing.stderr
    bad_partition = cli(release, "release", "-c", "book", "-p", "nosuch")
    assert bad_partition.returncode == 1 and "(code 200)" in bad_partition.stderr, bad_partition.stderr
    denied = subprocess.run(
        [VECTORLOAD, "load-state", "-c", "book", "--uri", release.proxy_uri(), "--token", "root:wrong"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert denied.returncode in (1, 3) and denied.stderr.startswith("vectorload load-state: error:"), (
        denied.stderr
    )
    assert cli(release, "release", "-c", "book").stdout == "book: NotLoad\n"
