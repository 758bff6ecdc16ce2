"""Changing data under a loaded collection, with the real operator, querynodes and control plane:
compaction under a search loop (the swap), a load in progress when a compaction lands
(milvus#39680), and new segments of a Loaded collection."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload.storage.compaction import compact
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.sample import SAMPLE_SIZES, generate_segment, resolve_spec
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.operator_harness import QuerynodePool

pytestmark = pytest.mark.cluster

NOVEL = set(range(601, 1201))  # the tiny sample's novel partition holds keys 601..1200
EVERY_ROW = "book_id >= 0"  # a filter every row passes: small segments are searched exactly


@pytest.fixture
def root(tmp_path: Path, sample_root: Path) -> Path:
    copy = tmp_path / "storage"
    shutil.copytree(sample_root, copy)
    return copy


def all_rows(pool: QuerynodePool, node: str) -> tuple[int, list[Any]]:
    """Every novel row node `node` serves, by one exhaustive search (top 1000, exact)."""
    body = {
        "collection": "book",
        "vectors": [[0.0] * SAMPLE_SIZES["tiny"].intro_dim],
        "annsField": "book_intro",
        "topK": 1000,
        "filter": EVERY_ROW,
        "partitions": ["novel"],
    }
    status, answer = pool.nodes[node].request("POST", "/v1/search", body, timeout=10)
    return status, [h["id"] for h in answer["results"][0]] if status == 200 else answer


class Watch:
    """A background loop calling `check()` every `interval`; failures are collected."""

    def __init__(self, check: Callable[[], str | None], interval: float = 0.02) -> None:
        self.check, self.interval = check, interval
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.rounds = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                problem = self.check()
            except Exception as exc:  # a failed request is a problem too
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                self.problems.append(problem)
            self.rounds += 1
            time.sleep(self.interval)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_compaction_under_a_search_loop_never_fails_never_duplicates_never_loses(
    pool: QuerynodePool, root: Path
) -> None:
    pool.root = root
    for name in ("qn-0", "qn-1"):
        pool.add_node(name)
    pool.apply("book", {"collection": "book", "partitions": ["novel"], "replicas": 2})
    pool.wait_state("book", "Loaded", timeout=40)
    sources = ["novel-0000", "novel-0001", "novel-0002"]
    nodes = ("qn-0", "qn-1")
    answers: dict[str, int] = {n: 0 for n in nodes}

    def search_every_replica() -> str | None:
        for node in nodes:  # each node is one replica here: each must serve every row once
            status, ids = all_rows(pool, node)
            if status != 200:
                return f"{node}: {status} {ids}"
            if len(ids) != len(set(ids)):
                return f"{node}: a row twice ({len(ids) - len(set(ids))} duplicates)"
            if set(ids) != NOVEL:
                return f"{node}: {len(NOVEL - set(ids))} rows missing"
            answers[node] += 1
        return None

    order: list[tuple[str, bool, bool]] = []

    def swap_order(node: str) -> Callable[[], str | None]:
        """The old copies are released only after the new one is loaded, on every node. Each node
        has a watcher of its own sampling every few ms: both copies are held together for only
        the ~60-100 ms between the new one loaded and the operator's release of the old ones."""

        def check() -> str | None:
            held = {s for p, s in pool.held(node) if p == "novel"}
            old = bool(set(sources) & held)
            new = bool(held - set(sources))
            order.append((node, old, new))
            if not old and not new:
                return f"{node} held neither the sources nor the compacted segment"
            return None

        return check

    def status_truth() -> str | None:
        st = pool.status("book")
        if st.get("loadState") != "Loaded" or st.get("loadProgress") != 100:
            return f"status {st.get('loadState')} {st.get('loadProgress')}%"
        return None

    with (
        Watch(search_every_replica) as searches,
        Watch(swap_order("qn-0"), 0.002) as swaps,
        Watch(swap_order("qn-1"), 0.002) as swaps_1,
        Watch(status_truth, 0.05) as states,
    ):
        wait_for("searches before the compaction", lambda: min(answers.values()) >= 5, timeout=20)
        before = dict(answers)
        started = time.monotonic()
        result = compact(root, "book", "novel", sources, num_threads=1)
        assert result.segment is not None and result.rows_out == 600
        new_id = result.segment.segment_id
        wait_for(
            "the swap on both replicas",
            lambda: all({s for p, s in pool.held(n, None) if p == "novel"} == {new_id} for n in nodes),
            timeout=30,
        )
        swapped = time.monotonic() - started
        wait_for(
            "searches after the swap", lambda: min(answers[n] - before[n] for n in nodes) >= 20, timeout=20
        )
    assert not searches.problems, searches.problems[:5]
    assert not swaps.problems and not swaps_1.problems, (swaps.problems + swaps_1.problems)[:5]
    assert not states.problems, states.problems[:5]
    print("both held:", sum(1 for _, old, new in order if old and new), "of", len(order), "samples")
    assert any(old and new for _, old, new in order)  # both were held while the new one loaded
    st = pool.wait_state("book", "Loaded", timeout=5)
    assert st["replicas"] == [
        {"id": 1, "nodes": [st["replicas"][0]["nodes"][0]], "loadedSegments": 1, "totalSegments": 1},
        {"id": 2, "nodes": [st["replicas"][1]["nodes"][0]], "loadedSegments": 1, "totalSegments": 1},
    ]
    print(f"compaction swapped on 2 replicas {swapped:.2f} s after it was published")
    reasons = [r for _, r, _ in pool.events("book")]
    assert "Degraded" not in reasons and reasons.count("Loaded") == 1, reasons


def test_a_load_in_progress_when_a_compaction_lands_reaches_loaded(pool: QuerynodePool, root: Path) -> None:
    """milvus#39680: loads still running when the target changes under them."""
    pool.root = root
    pool.add_node("qn-0", extra_args=["--load-step-delay", "0.15", "--load-concurrency", "1"])
    progress: list[int] = []

    def sample() -> str | None:
        st = pool.status("book") if pool.exists("book") else {}
        if "loadProgress" in st:
            progress.append(int(st["loadProgress"]))
        return None

    with Watch(sample, 0.05):
        pool.apply("book", {"collection": "book", "partitions": ["novel"]})
        wait_for("one segment loaded, the others not yet", lambda: len(pool.held("qn-0")) >= 1, timeout=30)
        loaded = {s for _, s in pool.held("qn-0")}
        assert len(loaded) < 3, "the load finished before the compaction could land"
        pending = sorted({"novel-0000", "novel-0001", "novel-0002"} - loaded)
        # merge a loaded segment with one still loading (or queued)
        result = compact(root, "book", "novel", [sorted(loaded)[0], pending[0]], num_threads=1)
        assert result.segment is not None
        st = pool.wait_state("book", "Loaded", timeout=60)
    assert st["loadProgress"] == 100 and st["replicas"][0]["totalSegments"] == 2
    assert progress == sorted(progress), progress  # never went down
    live = {m.segment_id for m in FilesystemReader(root).segments("book", "novel")}
    assert result.segment.segment_id in live and len(live) == 2
    wait_for(
        "the retired segments released", lambda: {s for _, s in pool.held("qn-0", None)} == live, timeout=30
    )
    status, ids = all_rows(pool, "qn-0")
    assert status == 200 and sorted(ids) == sorted(NOVEL)


def test_new_segments_of_a_loaded_collection_keep_it_loaded_and_are_loaded_at_once(
    pool: QuerynodePool, root: Path
) -> None:
    pool.root = root
    pool.add_node("qn-0", extra_args=["--load-step-delay", "0.1"])
    pool.apply("book", {"collection": "book", "partitions": ["novel"]})
    pool.wait_state("book", "Loaded", timeout=60)
    seen: list[tuple[str, int, int]] = []

    def sample() -> str | None:
        st = pool.status("book")
        seen.append((st["loadState"], st["loadProgress"], st.get("pendingSegments", 0)))
        return None if st["loadState"] == "Loaded" and st["loadProgress"] == 100 else f"status {st}"

    spec = resolve_spec("tiny", segment_rows=200)
    with Watch(sample, 0.03) as watch:
        seg = generate_segment(0, spec, 1, 3)
        published = time.monotonic()
        CollectionWriter(root).write_segment(
            "book", "novel", "novel-0003", seg.vectors, seg.primary_keys, seg.scalars, seg.dynamic,
            ef_construction=100, num_threads=1, timestamps=np.arange(1, 201),
        )  # fmt: skip
        wait_for("the new segment loaded", lambda: ("novel", "novel-0003") in pool.held("qn-0"), timeout=30)
        loaded_after = time.monotonic() - published
        wait_for("status caught up", lambda: pool.status("book").get("pendingSegments") == 0, timeout=10)
    assert not watch.problems, watch.problems[:3]
    assert any(p > 0 for _, _, p in seen), "pendingSegments never showed the new segment"
    st = pool.status("book")
    generation = FilesystemReader(root).generation("book")
    assert st["replicas"][0]["loadedSegments"] == 4 and st["loadedCatalogGeneration"] == generation
    reasons = [r for _, r, _ in pool.events("book")]
    assert "LoadingNewData" in reasons and "Degraded" not in reasons, reasons
    print(f"a segment published into a Loaded collection was loaded {loaded_after:.2f} s later")


KILLED = """
import sys
from pathlib import Path
from vectorload.storage.compaction import compact

def on_step(step):
    print(step, flush=True)
    if step == "published":
        sys.stdin.readline()  # killed here: the new segment is live, its sources not yet retired

compact(Path(sys.argv[1]), "book", "novel", ["novel-0000", "novel-0001"], num_threads=1, on_step=on_step)
"""


def test_a_compaction_killed_after_publishing_then_rerun_keeps_every_row_once(
    pool: QuerynodePool, root: Path
) -> None:
    import subprocess
    import sys

    pool.root = root
    pool.add_node("qn-0")
    pool.apply("book", {"collection": "book", "partitions": ["novel"]})
    pool.wait_state("book", "Loaded", timeout=40)

    def every_row_once() -> str | None:
        status, ids = all_rows(pool, "qn-0")
        if status != 200 or len(ids) != len(set(ids)) or set(ids) != NOVEL:
            return f"{status}: {len(ids)} ids, {len(set(ids))} distinct"
        return None

    with Watch(every_row_once) as searches:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        while (line := proc.stdout.readline().decode().strip()) != "published":
            assert line, "the compaction ended before publishing"
        proc.kill()
        assert proc.wait(10) == -9
        reader = FilesystemReader(root)
        live = {m.segment_id for m in reader.segments("book", "novel")}
        assert {"novel-0000", "novel-0001"} <= live and len(live) == 4  # the new one beside its sources
        (new_id,) = live - {"novel-0000", "novel-0001", "novel-0002"}
        # the operator loads the new segment beside its still-live sources: rows are served once
        wait_for("the new segment loaded too", lambda: ("novel", new_id) in pool.held("qn-0"), timeout=30)
        assert pool.status("book")["loadState"] == "Loaded"
        rerun = compact(root, "book", "novel", ["novel-0000", "novel-0001"], num_threads=1)
        assert rerun.resumed and rerun.segment is not None and rerun.segment.segment_id == new_id
        wait_for(
            "the sources released",
            lambda: {s for _, s in pool.held("qn-0", None)} == {new_id, "novel-0002"},
            timeout=30,
        )
        time.sleep(0.5)
    assert searches.rounds > 10 and not searches.problems, searches.problems[:3]
    assert pool.wait_state("book", "Loaded", timeout=5)["loadProgress"] == 100
