"""Load, progress, status, events and release — against the real API server and real querynodes."""

from __future__ import annotations

import threading
import time

import pytest

from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import OperatorProcess, QuerynodePool

pytestmark = pytest.mark.cluster


def _sample_progress(
    pool: QuerynodePool, name: str, stop: threading.Event, seen: list[tuple[int, int]]
) -> None:
    while not stop.is_set():
        try:
            st = pool.status(name)
        except Exception:
            st = {}
        if "loadProgress" in st:
            seen.append((int(st.get("observedGeneration", 0)), int(st["loadProgress"])))
        time.sleep(0.05)


def test_load_all_status_events_metrics_then_delete(pool: QuerynodePool, operator: OperatorProcess) -> None:
    pool.add_node("qn-0")
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=_sample_progress, args=(pool, "book", stop, seen), daemon=True)
    sampler.start()
    pool.apply("book", {"collection": "book"})
    # kubectl wait works on the Ready condition
    pool.plane.kubectl(
        "-n", pool.ns, "wait", "--for=condition=Ready", "collectionload/book", "--timeout=40s", timeout=60
    )
    stop.set()
    sampler.join()
    st = pool.wait_state("book", "Loaded", timeout=5)
    assert st["loadProgress"] == 100 and st["progressText"] == "100%"
    assert st["replicaText"] == "1/1"
    assert st["replicas"] == [{"id": 1, "nodes": ["qn-0"], "loadedSegments": 9, "totalSegments": 9}]
    assert sorted(p["name"] for p in st["partitions"]) == ["_default", "novel", "poetry"]
    assert all(p["loadProgress"] == 100 for p in st["partitions"])
    assert st["loadedBytes"] > 0 and st["loadedBytesText"].endswith("iB")
    assert "$meta" in st["loadedFields"] and "book_intro" in st["loadedFields"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "Loaded"
    assert conds["Progressing"]["status"] == "False" and conds["Degraded"]["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in conds.values())
    # progress was seen below 100 and never went down
    values = [v for _, v in seen]
    assert values and min(values) < 100, values
    assert values == sorted(values), values
    assert len(pool.held("qn-0")) == 9
    # events: once each, not every loop
    time.sleep(1.0)
    reasons = [r for _, r, _ in pool.events("book")]
    assert reasons.count("LoadStarted") == 1 and reasons.count("Loaded") == 1, reasons
    # lastTransitionTime kept while the status holds
    ready_since = conds["Ready"]["lastTransitionTime"]
    assert pool.condition("book", "Ready")["lastTransitionTime"] == ready_since
    # metrics
    text = operator.metrics()
    labels = f'collection="book",name="book",namespace="{pool.ns}"'
    assert f"vectorload_operator_collection_load_progress{{{labels}}} 100.0" in text
    assert f'collection="book",name="book",namespace="{pool.ns}",state="Loaded"}} 1.0' in text
    assert 'vectorload_operator_tasks_total{outcome="loading",type="load"}' in text
    assert 'vectorload_operator_querynode_capacity_bytes{node="qn-0"}' in text
    assert "vectorload_operator_load_duration_seconds_count" in text
    # delete: releases everything, then the object goes
    used_before = pool.distribution("qn-0")["capacity"]["usedBytes"]
    assert used_before > 0
    pool.delete("book")
    wait_for("CollectionLoad gone", lambda: not pool.exists("book"), timeout=20)
    assert pool.held("qn-0", state=None) == set()
    assert pool.distribution("qn-0")["capacity"]["usedBytes"] < used_before
    assert "Released" in [r for _, r, _ in pool.events("book")]


def test_named_partitions_add_and_remove(pool: QuerynodePool) -> None:
    pool.add_node("qn-0")
    pool.apply("book", {"collection": "book", "partitions": ["novel"]})
    st = pool.wait_state("book", "Loaded", timeout=30)
    assert [p["name"] for p in st["partitions"]] == ["novel"]
    assert {p for p, _ in pool.held("qn-0")} == {"novel"}
    novel = pool.held("qn-0")
    # add poetry: novel is never released (the querynode keeps serving it)
    pool.patch_spec("book", {"partitions": ["novel", "poetry"]})
    st = pool.wait_state("book", "Loaded", timeout=30)
    assert st["observedGeneration"] == 2
    assert {p["name"] for p in st["partitions"]} == {"novel", "poetry"}
    assert novel <= pool.held("qn-0")
    # remove novel: only novel goes
    poetry = {s for s in pool.held("qn-0") if s[0] == "poetry"}
    pool.patch_spec("book", {"partitions": ["poetry"]})
    wait_for("novel released", lambda: {p for p, _ in pool.held("qn-0", None)} == {"poetry"}, timeout=20)
    assert pool.held("qn-0") == poetry
    st = pool.wait_state("book", "Loaded", timeout=10)
    assert [p["name"] for p in st["partitions"]] == ["poetry"]


def test_collection_and_partition_not_found(pool: QuerynodePool) -> None:
    pool.add_node("qn-0")
    pool.apply("nope", {"collection": "no_such_collection"})
    pool.apply("badpart", {"collection": "book", "partitions": ["novel", "essays"]})
    st = pool.wait_state("nope", "Failed", timeout=20)
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "CollectionNotFound"
    assert "no_such_collection" in ready["message"]
    st = pool.wait_state("badpart", "Failed", timeout=20)
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["reason"] == "PartitionNotFound" and "essays" in ready["message"]
    assert pool.held("qn-0", None) == set()
    wait_for("events", lambda: "PartitionNotFound" in [r for _, r, _ in pool.events("badpart")], timeout=10)
    # fixing the spec loads it
    pool.patch_spec("badpart", {"partitions": ["novel"]})
    pool.wait_state("badpart", "Loaded", timeout=30)


def test_load_fields_subset_invalid_spec_and_skip_dynamic(pool: QuerynodePool) -> None:
    pool.add_node("qn-0")
    pool.apply(
        "book",
        {
            "collection": "book",
            "partitions": ["novel"],
            "loadFields": ["book_id", "book_intro", "title"],
            "skipLoadDynamicField": True,
        },
    )
    st = pool.wait_state("book", "Loaded", timeout=30)
    assert st["loadedFields"] == ["book_id", "book_intro", "title"]
    segs = [s for s in pool.distribution("qn-0")["segments"] if s["collection"] == "book"]
    assert segs and all(set(s["fields"]) == {"book_id", "book_intro", "title"} for s in segs)
    assert all(s["dynamicField"] is False for s in segs)
    # a field list without a vector field is refused, naming the problem; what is loaded stays
    pool.patch_spec("book", {"loadFields": ["book_id", "title"]})
    st = pool.wait_state("book", "Failed", timeout=20)
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["reason"] == "InvalidSpec" and "vector field" in ready["message"]
    assert len(pool.held("qn-0")) == 3
    pool.patch_spec("book", {"loadFields": ["book_id", "book_intro", "no_such_field"]})
    st = pool.wait_state("book", "Failed", timeout=20)
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["reason"] == "InvalidSpec" and "no_such_field" in ready["message"]
    wait_for("InvalidSpec event", lambda: "InvalidSpec" in [r for _, r, _ in pool.events("book")], timeout=10)


def test_delete_while_loading(pool: QuerynodePool) -> None:
    pool.add_node("qn-0")
    pool.apply("book", {"collection": "book"})
    wait_for("loading started", lambda: pool.held("qn-0", None), timeout=20, interval=0.02)
    assert pool.status("book").get("loadState") != "Loaded"
    pool.delete("book")
    wait_for("CollectionLoad gone", lambda: not pool.exists("book"), timeout=30)
    assert pool.held("qn-0", None) == set()
    time.sleep(1.0)  # nothing comes back
    assert pool.held("qn-0", None) == set()


def test_collection_conflict_older_wins(pool: QuerynodePool) -> None:
    pool.add_node("qn-0")
    pool.apply("first", {"collection": "book", "partitions": ["novel"]})
    time.sleep(1.1)  # creationTimestamp has a one-second resolution
    pool.apply("second", {"collection": "book"})
    st = pool.wait_state("second", "Failed", timeout=20)
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["reason"] == "CollectionConflict" and "first" in ready["message"]
    pool.wait_state("first", "Loaded", timeout=30)
    assert {p for p, _ in pool.held("qn-0")} == {"novel"}
    # deleting the loser releases nothing of the winner
    pool.delete("second")
    wait_for("loser gone", lambda: not pool.exists("second"), timeout=20)
    assert {p for p, _ in pool.held("qn-0")} == {"novel"}
