"""Segment size: the hnswlib cost model against allocator-measured memory, the default's fixed-cost
share measured on a built segment, and the cutting rules."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vectorload.storage.api import CollectionSchema, FieldSchema, StorageError
from vectorload.storage.ingest import ingest
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.sample import SAMPLE_SIZES, sample_schema
from vectorload.storage.segsize import (
    HNSW_FIXED_BYTES,
    MAX_FIXED_SHARE,
    SegmentSize,
    cut,
    default_segment_rows,
    equal_default_segments,
    equal_segments,
    even_split,
    index_file_row_bytes,
    index_memory_row_bytes,
    min_segment_rows,
)

# Runs in a fresh interpreter: glibc's mallinfo2() counts every byte hnswlib allocates (malloc and
# operator new alike, mmap'ed blocks included), unlike RSS, which lags behind and includes freed
# but unreturned pages.
MEASURE = """
import ctypes, gc, json, sys
import hnswlib

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2

def allocated():
    gc.collect()
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd

warm = hnswlib.Index(space="l2", dim=4)  # one-time allocations of the module and of Python
warm.init_index(max_elements=0)
del warm
out = {"files": {}}
for item in json.loads(sys.argv[1]):
    before = allocated()
    index = hnswlib.Index(space=item["space"], dim=item["dim"])
    if "path" in item:
        index.load_index(item["path"])
        key = item["path"]
    else:
        index.init_index(max_elements=0, M=item["M"], ef_construction=10)
        key = "empty-%d-%d" % (item["dim"], item["M"])
    out["files"][key] = allocated() - before
    del index
print(json.dumps(out))
"""


def measure(items: list[dict[str, Any]]) -> dict[str, int]:
    """Bytes hnswlib allocates to load each index file (`path`), or for an empty index."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEASURE), json.dumps(items)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    files: dict[str, int] = json.loads(proc.stdout)["files"]
    return files


def empty_index_bytes(dim: int, M: int) -> int:
    return measure([{"space": "l2", "dim": dim, "M": M}])[f"empty-{dim}-{M}"]


def _vector_schema(dims: dict[str, tuple[int, str]]) -> CollectionSchema:
    fields = [FieldSchema("id", "int64", is_primary=True)]
    fields += [FieldSchema(n, "float_vector", dim=d, metric=m) for n, (d, m) in dims.items()]  # type: ignore[arg-type]
    return CollectionSchema("vecs", tuple(fields), dynamic_field=False)


def _ingest_vectors(
    tmp_path: Path, dims: dict[str, tuple[int, str]], rows: int, M: int, **kwargs: Any
) -> tuple[CollectionSchema, list[Any]]:
    schema = _vector_schema(dims)
    rng = np.random.default_rng(0)
    paths = {}
    for name, (dim, _) in dims.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], rng.normal(size=(rows, dim)).astype(np.float32))
    manifests = ingest(
        tmp_path / "root",
        "vecs",
        vectors=paths,
        schema=schema,
        M=M,
        progress=False,
        num_threads=2,
        **kwargs,
    )
    return schema, manifests


@pytest.mark.parametrize(("dim", "M"), [(16, 16), (64, 16), (16, 8), (48, 32)])
def test_model_matches_measured_hnswlib_memory(tmp_path: Path, dim: int, M: int) -> None:
    rows = 4000
    _, (manifest,) = _ingest_vectors(tmp_path, {"v": (dim, "l2")}, rows, M, ef_construction=20)
    path = FilesystemReader(tmp_path / "root").segment_file_path(manifest, "v")
    loaded = measure([{"space": "l2", "dim": dim, "path": str(path)}])[str(path)]
    fixed = empty_index_bytes(dim, M)
    # the fixed part is the 65536 mutexes (plus a few hundred bytes of members)
    assert HNSW_FIXED_BYTES <= fixed <= HNSW_FIXED_BYTES + 4096
    per_row = (loaded - fixed) / rows
    model = index_memory_row_bytes(dim, M)
    assert model <= per_row <= model + 16, (per_row, model)  # the model never overestimates
    header = 100  # hnswlib's file header
    assert abs((manifest.files["v"].bytes - header) / rows - index_file_row_bytes(dim, M)) < 2


@pytest.mark.slow
def test_default_segment_keeps_fixed_cost_under_5_percent(tmp_path: Path) -> None:
    """The sample's vector fields (64-d l2, 16-d cosine, M=16) at exactly the default minimum:
    the smallest segment the default ever writes (for an input of at least that many rows). The
    share is computed from hnswlib's measured allocations when loading the built files."""
    M = 16
    sample = sample_schema("tiny", 0, SAMPLE_SIZES["tiny"])
    dims: dict[str, tuple[int, str]] = {f.name: (f.dim or 0, f.metric or "l2") for f in sample.vector_fields}
    least = default_segment_rows(sample, M)
    _, (manifest,) = _ingest_vectors(tmp_path, dims, least, M, ef_construction=10)
    assert manifest.rows == least  # the default wrote one segment of the minimum size
    reader = FilesystemReader(tmp_path / "root")
    paths = {name: str(reader.segment_file_path(manifest, name)) for name in dims}
    loaded = measure([{"space": metric, "dim": dim, "path": paths[n]} for n, (dim, metric) in dims.items()])
    shares = {}
    for name, (dim, _) in dims.items():
        fixed = empty_index_bytes(dim, M)
        memory = loaded[paths[name]]
        shares[name] = fixed / memory
        per_row = (memory - fixed) / least
        # the sample presets' layouts, with the measured costs of this very segment
        large = SAMPLE_SIZES["large"].rows_per_segment
        assert fixed / (fixed + large * per_row) < MAX_FIXED_SHARE
    assert all(share < MAX_FIXED_SHARE for share in shares.values()), shares
    # and the default is not needlessly large: the cheapest field sits just under the bound
    assert max(shares.values()) > 0.9 * MAX_FIXED_SHARE, shares


def test_min_segment_rows_is_the_bound() -> None:
    for dims, M in [((64, 16), 16), ((768,), 16), ((8,), 4)]:
        n = min_segment_rows(dims, M)
        cheapest = min(index_memory_row_bytes(d, M) for d in dims)
        share = HNSW_FIXED_BYTES / (HNSW_FIXED_BYTES + n * cheapest)
        before = HNSW_FIXED_BYTES / (HNSW_FIXED_BYTES + (n - 1) * cheapest)
        assert share < MAX_FIXED_SHARE <= before
    assert min_segment_rows((64, 16), 16) == min_segment_rows((16,), 16) > min_segment_rows((64,), 16)
    with pytest.raises(ValueError, match="share"):
        min_segment_rows((8,), 16, share=1.5)


@settings(deadline=None)
@given(total=st.integers(1, 3_000_000), least=st.integers(100, 400_000))
def test_default_plan_segments_are_between_least_and_twice_least(total: int, least: int) -> None:
    plan = SegmentSize().plan(total, least, row_bytes=700)
    assert sum(plan) == total and max(plan) - min(plan) <= 1
    if total >= least:
        assert least <= min(plan) and max(plan) < 2 * least + 1
    else:
        assert plan == [total]


@settings(deadline=None)
@given(total=st.integers(1, 100_000), rows=st.integers(10, 50_000))
def test_explicit_rows_cut_with_a_short_tail(total: int, rows: int) -> None:
    plan = SegmentSize(rows=rows).plan(total, 10**9, row_bytes=700)
    assert sum(plan) == total and plan == cut(total, rows)
    assert all(n == rows for n in plan[:-1]) and 0 < plan[-1] <= rows


def test_bytes_target_and_the_smaller_cap_wins() -> None:
    assert SegmentSize(bytes=7000).plan(25, 10**9, row_bytes=700) == [10, 10, 5]
    assert SegmentSize(rows=4, bytes=7000).plan(10, 10**9, row_bytes=700) == [4, 4, 2]
    assert SegmentSize(rows=40, bytes=7000).plan(25, 10**9, row_bytes=700) == [10, 10, 5]
    assert SegmentSize(bytes=10).plan(3, 10**9, row_bytes=700) == [1, 1, 1]  # never 0 rows
    assert even_split(10, 3) == [4, 3, 3]


@pytest.mark.parametrize("bad", [0, -5, True, 2.5, "10"])
def test_segment_size_must_be_positive_integers(bad: Any) -> None:
    for kwargs, name in (({"rows": bad}, "segment_rows"), ({"bytes": bad}, "segment_bytes")):
        with pytest.raises(StorageError) as err:
            SegmentSize(**kwargs)
        assert err.value.reason == "InvalidArgument" and name in err.value.message


def test_equal_segment_counts() -> None:
    assert equal_segments(600, 200) == 3 and equal_segments(600, 250) == 3 and equal_segments(600, 7) == 100
    assert equal_segments(480_000, 10**6) == 1 and equal_segments(13, 5) == 13  # a prime total
    assert equal_default_segments(480_000, 164_634) == 2
    assert equal_default_segments(48_000, 164_634) == 1
    assert equal_default_segments(7 * 11, 10) == 7  # the most equal parts of >= 10 rows
