"""Small segments do not pile up: the proxy's background compactor merges the sealed segments of
a loaded collection (and drops deleted rows) while a search and query loop runs through pymilvus;
no call fails, no row shows twice, none of the rows confirmed visible goes missing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pymilvus import MilvusClient

from vectorload.storage.reader import FilesystemReader
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.proxy_harness import ROOT_TOKEN, ProxyProcess
from vectorload_dev.testing.storage import visible_rows

from .test_writes_pymilvus import index_params, make_schema, rows


def test_compaction_under_a_search_loop(
    wclient: MilvusClient, write_proxy: ProxyProcess, write_root: Path
) -> None:
    name = "compacted"
    wclient.create_collection(name, schema=make_schema(wclient))
    wclient.create_index(name, index_params(wclient))
    wclient.load_collection(name)
    confirmed: set[int] = set()
    inserted: set[int] = set()
    deleted: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[str] = []
    calls = [0]
    probe = rows(0, 1)[0]["vec"]

    def loop() -> None:
        client = MilvusClient(uri=write_proxy.uri, token=ROOT_TOKEN)
        try:
            while not stop.is_set():
                with lock:
                    must, may, gone = set(confirmed), set(inserted), set(deleted)
                try:
                    got = [
                        r["id"]
                        for r in client.query(name, filter="id >= 0", output_fields=["id"], limit=16384)
                    ]
                    hits = client.search(name, data=[probe], limit=50, anns_field="vec")[0]
                except Exception as exc:
                    failures.append(f"call failed: {exc}")
                    continue
                calls[0] += 1
                ids = [h["id"] for h in hits]
                if len(got) != len(set(got)) or len(ids) != len(set(ids)):
                    failures.append("a row twice")
                if not must - gone <= set(got):
                    failures.append(f"lost {sorted(must - gone - set(got))[:5]}")
                if not set(got) <= may:
                    failures.append("an unknown row")
        finally:
            client.close()

    thread = threading.Thread(target=loop)
    try:
        # 12 small segments: each insert flushed on its own
        for i in range(12):
            batch = rows(i * 50, 50)
            with lock:
                inserted.update(r["id"] for r in batch)
            wclient.insert(name, batch)
            wclient.flush(name)
            if i == 2:
                thread.start()
        wclient.delete(name, ids=list(range(0, 600, 7)))
        with lock:
            deleted.update(range(0, 600, 7))
        want = sorted(inserted - deleted)
        wait_for(
            "every row visible",
            lambda: (
                sorted(
                    r["id"] for r in wclient.query(name, filter="id >= 0", output_fields=["id"], limit=16384)
                )
                == want
            ),
            timeout=30,
            interval=0.1,
        )
        with lock:
            confirmed.update(inserted)
        reader = FilesystemReader(write_root)

        def compacted() -> bool:
            live = reader.segments(name, "_default")
            return len(live) <= 2 and any(m.compacted_from for m in live)

        wait_for("the compactor merged the small segments", compacted, timeout=60, interval=0.2)
        # storage, read the plain way, holds exactly the rows the loop sees (a compaction that ran
        # after the delete dropped its rows; one that ran before leaves them to the delta)
        assert sorted(int(pk) for _, pk in visible_rows(write_root, name)) == want
        time.sleep(2)  # the operator swaps in the compacted copy while the loop runs
        wait_for(
            "the querynodes serve the compacted segment",
            lambda: sum(1 for m in reader.segments(name, "_default")) <= 2,
            timeout=30,
        )
        time.sleep(1)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(30)
        wclient.drop_collection(name)
    assert calls[0] > 10
    assert not failures, failures[:5]
