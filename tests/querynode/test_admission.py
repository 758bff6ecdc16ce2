"""Memory admission arithmetic and the segment registry's state transitions (no processes)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vectorload.storage.api import CollectionSchema, FieldSchema, SegmentFile, SegmentManifest
from vectorload_querynode.admission import MemoryAccount, Refused, refusal_message
from vectorload_querynode.loader import (
    HNSW_FIXED_BYTES,
    HNSW_ROW_BYTES,
    META_ROW_BYTES,
    VARCHAR_ROW_BYTES,
    LoadSpec,
    predicted_bytes,
)
from vectorload_querynode.registry import Registry, SegmentKey
from vectorload_querynode.segment import LoadedSegment

ALL = LoadSpec(frozenset({"pk", "v", "s"}), True)
SUBSET = LoadSpec(frozenset({"pk", "v"}), False)
KEY = SegmentKey("c", "_default", "s1")


def segment(spec: LoadSpec, nbytes: int) -> LoadedSegment:
    return LoadedSegment(
        collection="c",
        partition="_default",
        segment_id="s1",
        rows=1,
        fields=spec.fields,
        dynamic=spec.dynamic,
        bytes=nbytes,
        pk_field="pk",
        columns={"pk": np.zeros(1, dtype=np.int64)},
        vectors={},
        meta=None,
    )


def test_refusal_boundary_is_inclusive() -> None:
    assert refusal_message(predicted=10, used=60, reserved=20, capacity=100, threshold=0.9) is None
    message = refusal_message(predicted=11, used=60, reserved=20, capacity=100, threshold=0.9)
    assert message is not None
    for number in ("predicted 11", "used 60", "reserved 20", "= 91", "capacity 100", "threshold 0.9", "= 90"):
        assert number in message


def test_account_reserve_commit_cancel_free() -> None:
    account = MemoryAccount(capacity=1000, threshold=0.5, overhead=100)
    first = account.reserve(300)
    assert account.snapshot().reserved_bytes == 300
    with pytest.raises(Refused) as info:
        account.reserve(101)  # 100 + 0 + 300 + 101 > 500
    assert info.value.reason == "InsufficientMemory"
    second = account.reserve(100)
    account.commit(first)
    account.commit(first)  # settling twice is a no-op
    account.cancel(second)
    snap = account.snapshot()
    assert (snap.used_bytes, snap.reserved_bytes, snap.loaded_bytes) == (400, 0, 300)
    account.free(300)
    assert account.snapshot().used_bytes == 100


def test_commit_with_swap_frees_the_old_copy() -> None:
    account = MemoryAccount(capacity=10_000, threshold=1.0)
    account.commit(account.reserve(500))
    new = account.reserve(200)
    account.commit(new, freed=500)
    assert account.snapshot().loaded_bytes == 200


@pytest.mark.parametrize(("capacity", "threshold"), [(0, 0.9), (100, 0.0), (100, 1.5)])
def test_account_rejects_nonsense(capacity: int, threshold: float) -> None:
    with pytest.raises(ValueError):
        MemoryAccount(capacity, threshold)


def test_account_is_thread_safe() -> None:
    account = MemoryAccount(capacity=10**12, threshold=1.0)

    def work() -> None:
        for _ in range(2000):
            account.commit(account.reserve(3))
            account.free(3)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = account.snapshot()
    assert (snap.loaded_bytes, snap.reserved_bytes) == (0, 0)


def test_registry_load_finish_and_idempotent_requests() -> None:
    account = MemoryAccount(10_000, 1.0)
    registry = Registry(account)
    decision, job = registry.request_load(KEY, ALL, 400)
    assert decision == "loading" and job is not None
    assert registry.request_load(KEY, ALL, 400) == ("loading", None)
    assert registry.views()[0].state == "loading"
    assert account.snapshot().reserved_bytes == 400
    assert registry.finish(job, segment(ALL, 400)) is None
    assert registry.request_load(KEY, ALL, 400) == ("loaded", None)
    snap = account.snapshot()
    assert (snap.loaded_bytes, snap.reserved_bytes) == (400, 0)


def test_registry_reload_keeps_old_copy_until_swap() -> None:
    account = MemoryAccount(10_000, 1.0)
    registry = Registry(account)
    _, job = registry.request_load(KEY, ALL, 400)
    assert job is not None
    old = segment(ALL, 400)
    registry.finish(job, old)
    decision, reload = registry.request_load(KEY, SUBSET, 150)
    assert decision == "loading" and reload is not None
    view = registry.views()[0]
    assert view.state == "loaded" and view.reloading == SUBSET  # the old copy still serves
    assert registry.serving("c") == [old]
    assert account.snapshot().used_bytes == 400 and account.snapshot().reserved_bytes == 150  # both counted
    new = segment(SUBSET, 150)
    assert registry.finish(reload, new) is old  # the caller frees the old copy
    assert registry.serving("c") == [new]
    assert account.snapshot().loaded_bytes == 150 and account.snapshot().reserved_bytes == 0


def test_reload_refused_when_both_copies_do_not_fit() -> None:
    account = MemoryAccount(1000, 1.0)
    registry = Registry(account)
    _, job = registry.request_load(KEY, ALL, 600)
    assert job is not None
    registry.finish(job, segment(ALL, 600))
    with pytest.raises(Refused):
        registry.request_load(KEY, SUBSET, 500)
    assert registry.views()[0].state == "loaded"


def test_release_cancels_a_running_load_and_its_reservation_returns_when_it_stops() -> None:
    account = MemoryAccount(10_000, 1.0)
    registry = Registry(account)
    _, job = registry.request_load(KEY, ALL, 400)
    assert job is not None
    count, dropped = registry.release("c", None)
    assert (count, dropped) == (1, [])
    assert job.cancel.is_set()
    assert registry.views() == []
    assert account.snapshot().reserved_bytes == 400  # still held while the loader runs
    late = segment(ALL, 400)
    assert registry.finish(job, late) is late  # the loader finished anyway: discarded
    assert account.snapshot().reserved_bytes == 0 and account.snapshot().loaded_bytes == 0
    assert registry.serving("c") == []


def test_failure_is_recorded_and_a_new_request_retries() -> None:
    account = MemoryAccount(10_000, 1.0)
    registry = Registry(account)
    _, job = registry.request_load(KEY, ALL, 400)
    assert job is not None
    registry.fail(job, "ChecksumMismatch", "file x")
    view = registry.views()[0]
    assert (view.state, view.reason, view.message) == ("failed", "ChecksumMismatch", "file x")
    assert account.snapshot().reserved_bytes == 0
    decision, retry = registry.request_load(KEY, ALL, 400)
    assert decision == "loading" and retry is not None
    assert registry.views()[0].state == "loading"


def test_release_of_selected_segments_only() -> None:
    account = MemoryAccount(10_000, 1.0)
    registry = Registry(account)
    other = SegmentKey("c", "p", "s2")
    for key in (KEY, other):
        _, job = registry.request_load(key, ALL, 10)
        assert job is not None
        registry.finish(job, segment(ALL, 10))
    count, dropped = registry.release("c", [("p", "s2")])
    assert count == 1 and len(dropped) == 1
    assert [v.key for v in registry.views()] == [KEY]
    assert account.snapshot().loaded_bytes == 10


def test_predicted_bytes_counts_the_requested_files_and_their_overheads() -> None:
    schema = CollectionSchema(
        "c",
        (
            FieldSchema("pk", "int64", is_primary=True),
            FieldSchema("t", "varchar", max_length=10),
            FieldSchema("v", "float_vector", dim=4, metric="l2"),
            FieldSchema("w", "float_vector", dim=4, metric="ip"),
        ),
        dynamic_field=True,
    )
    files = {name: SegmentFile(f"{name}.x", size, "0" * 64) for name, size in
             [("pk", 100), ("t", 200), ("v", 1000), ("w", 2000), ("$meta", 300)]}  # fmt: skip
    manifest = SegmentManifest("c", "_default", "s", rows=10, files=files)
    everything = predicted_bytes(manifest, LoadSpec(frozenset({"pk", "t", "v", "w"}), True), schema)
    assert (
        everything
        == 3600 + 2 * (HNSW_FIXED_BYTES + 10 * HNSW_ROW_BYTES) + 10 * VARCHAR_ROW_BYTES + 10 * META_ROW_BYTES
    )
    subset = predicted_bytes(manifest, LoadSpec(frozenset({"pk", "v"}), False), schema)
    assert subset == 1100 + HNSW_FIXED_BYTES + 10 * HNSW_ROW_BYTES
