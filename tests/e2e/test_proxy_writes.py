"""Writes through the proxy the chart starts (`proxy.writes.enabled`), on a storage root the two
proxy pods and the querynodes share, as a user installs it on a cluster with a ReadWriteMany
volume:

* pymilvus' quick setup through one proxy pod, `auto_id` inserts through both pods at once: every
  id is distinct (the storage root's id allocator, not each pod's clock), every row is searchable
  and counted on the querynodes without any call, deletes hide rows, the CollectionLoad stays
  Loaded throughout;
* an insert acknowledged by a proxy pod that is then killed (SIGKILL) is not lost: the restarted
  pod (or the other one) adopts the dead process's write-ahead log and seals it;
* `drop_collection` removes the collection's storage.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload_dev.e2e.system import LocalSystem, Release
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.e2e import install

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
DIM = 8


@pytest.fixture(scope="module")
def write_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("writes-root")


@pytest.fixture(scope="module")
def release(local_system: LocalSystem, write_root: Path) -> Iterator[Release]:
    yield from install(local_system, write_root, "writes", proxy=2, proxy_writes=True)


def clients(release: Release) -> list[Any]:
    from pymilvus import MilvusClient

    token = release.milvus_token()
    return [MilvusClient(uri=release.proxy_uri(i), token=token) for i in range(2)]


def count(client: Any, name: str) -> int:
    return len(client.query(name, filter="id >= 0", output_fields=["id"], limit=16384))


def load_state(release: Release, collection: str) -> str:
    items = json.loads(release.kubectl("get", "cload", "-o", "json"))["items"]
    states = [
        (c.get("status") or {}).get("loadState") for c in items if c["spec"]["collection"] == collection
    ]
    assert len(states) == 1, states
    return str(states[0])


def test_two_proxy_pods_insert_auto_ids_delete_and_drop(release: Release, write_root: Path) -> None:
    c0, c1 = clients(release)
    name = "notes"
    try:
        c0.create_collection(name, dimension=DIM, auto_id=True)  # CreateCollection + index + load
        assert c1.get_load_state(name)["state"].name == "Loaded"
        assert load_state(release, name) == "Loaded"
        rng = np.random.default_rng(7)
        vectors = rng.normal(size=(2, 8, 100, DIM)).astype(np.float32)
        acked: list[list[int]] = [[], []]
        failures: list[BaseException] = []
        states: set[str] = set()

        def insert(k: int) -> None:
            try:
                for batch in vectors[k]:
                    rows = [{"vector": v.tolist(), "writer": k} for v in batch]
                    acked[k].extend(int(i) for i in [c0, c1][k].insert(name, rows)["ids"])
                    states.add(load_state(release, name))
            except BaseException as exc:  # recorded, fails the test below
                failures.append(exc)

        writers = [threading.Thread(target=insert, args=(k,)) for k in range(2)]
        for t in writers:
            t.start()
        for t in writers:
            t.join(timeout=120)
        assert not failures, failures
        every = acked[0] + acked[1]
        assert len(every) == len(set(every)) == 1600, "auto ids of two proxy pods never collide"
        assert (write_root / ".ids" / "next.json").is_file()
        # loaded automatically: counted and found on the querynodes, through either pod
        wait_for(f"{name}: 1600 rows counted", lambda: count(c1, name) == 1600, timeout=60, interval=0.2)
        probe = vectors[1][3][17]
        hit = c0.search(name, data=[probe.tolist()], limit=1, output_fields=["writer"])[0][0]
        assert hit["id"] == acked[1][3 * 100 + 17] and hit["entity"]["writer"] == 1
        assert states == {"Loaded"}, "the CollectionLoad stayed Loaded while rows arrived"
        # deletes hide rows
        gone = acked[0][:50]
        assert c1.delete(name, ids=gone)["delete_count"] == 50
        wait_for(
            f"{name}: 1550 rows after the delete", lambda: count(c0, name) == 1550, timeout=60, interval=0.2
        )
        assert not c0.get(name, ids=gone)
        assert load_state(release, name) == "Loaded"
    finally:
        c0.drop_collection(name)
        assert not c1.has_collection(name)
        assert not (write_root / name).exists()
        for c in (c0, c1):
            c.close()


def test_a_write_acknowledged_by_a_killed_proxy_pod_is_not_lost(release: Release) -> None:
    c0, c1 = clients(release)
    name = "durable"
    try:
        c0.create_collection(name, dimension=DIM)  # id: int64 given by the client
        rows = [{"id": i, "vector": [float(i % 7), 1.0] + [0.5] * (DIM - 2)} for i in range(300)]
        assert c1.insert(name, rows)["insert_count"] == 300
        victim = release.proxies()[1]
        release.kill(victim, signal.SIGKILL)  # right after the acknowledgement
        wait_for(
            f"{name}: the killed pod's rows counted", lambda: count(c0, name) == 300, timeout=90, interval=0.3
        )
        assert sorted(
            r["id"] for r in c0.query(name, filter="id >= 0", output_fields=["id"], limit=1000)
        ) == list(range(300))
        release.wait_proxies(2)  # the killed pod's container was restarted
    finally:
        for c in (c0, c1):
            c.close()
        survivor = clients(release)[0]
        survivor.drop_collection(name)
        survivor.close()
