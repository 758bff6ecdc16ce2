"""The sample collection `book`: shape, determinism, idempotent re-runs, clustered vectors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vectorload.storage.api import DYNAMIC_FIELD, StorageError
from vectorload.storage.cli import sample_main
from vectorload.storage.columns import read_column, read_jsonl
from vectorload.storage.hnsw import open_index
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.sample import (
    PARTITIONS,
    SAMPLE_SIZES,
    SampleInfo,
    SampleSpec,
    generate_rows,
    generate_segment,
    resolve_spec,
    sample_queries,
    sample_row_bytes,
    write_sample,
)
from vectorload.storage.segsize import min_segment_rows

# The tiny sample cut into 3 segments per partition (its default is one): several segments per
# partition are what these tests look at.
TINY = resolve_spec("tiny", segment_rows=200)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SampleInfo:
    return write_sample(tmp_path_factory.mktemp("sample"), "tiny", seed=7, num_threads=1, segment_rows=200)


def _column_hashes(root: Path) -> dict[tuple[str, str, str], str]:
    reader = FilesystemReader(root)
    return {
        (p, m.segment_id, name): f.sha256
        for p in reader.partitions("book")
        for m in reader.segments("book", p)
        for name, f in m.files.items()
        if not f.path.endswith(".hnsw")
    }


def test_tiny_sample_shape(tiny: SampleInfo) -> None:
    spec = TINY
    assert tiny.seed == 7 and tiny.size == "tiny" and tiny.written_segments == 9
    assert list(tiny.partitions) == ["_default", "novel", "poetry"]
    for p in tiny.partitions.values():
        assert p.segments == spec.segments == 3
        assert p.rows == 3 * spec.rows_per_segment == 600
        assert p.bytes > 600 * 400
    assert (
        tiny.rows == 1800
        and tiny.segments == 9
        and tiny.bytes == sum(p.bytes for p in tiny.partitions.values())
    )
    reader = FilesystemReader(tiny.root)
    schema = reader.schema("book")
    assert [(f.name, f.type) for f in schema.fields] == [
        ("book_id", "int64"),
        ("title", "varchar"),
        ("word_count", "int64"),
        ("rating", "float"),
        ("in_print", "bool"),
        ("book_intro", "float_vector"),
        ("cover", "float_vector"),
    ]
    assert schema.primary_key.name == "book_id" and schema.dynamic_field
    assert (schema.field("book_intro"), schema.field("cover")) == (
        schema.vector_fields[0],
        schema.vector_fields[1],
    )
    assert (schema.vector_fields[0].dim, schema.vector_fields[0].metric) == (64, "l2")
    assert (schema.vector_fields[1].dim, schema.vector_fields[1].metric) == (16, "cosine")


def test_primary_keys_unique_and_meta_keys(tiny: SampleInfo) -> None:
    reader = FilesystemReader(tiny.root)
    schema = reader.schema("book")
    keys: list[int] = []
    meta: list[dict[str, object]] = []
    for p in PARTITIONS:
        for m in reader.segments("book", p):
            keys += list(read_column(reader.segment_file_path(m, "book_id"), schema.primary_key))
            meta += read_jsonl(reader.segment_file_path(m, DYNAMIC_FIELD))
    assert len(keys) == len(set(keys)) == 1800
    assert all({"genre", "year"} <= set(row) for row in meta)
    awarded = sum("award" in row for row in meta)
    assert 50 < awarded < 400


def test_rerun_is_a_noop(tiny: SampleInfo) -> None:
    before = {m.segment_id: m for p in PARTITIONS for m in FilesystemReader(tiny.root).segments("book", p)}
    again = write_sample(tiny.root, "tiny", seed=7, num_threads=1, segment_rows=200)
    after = {m.segment_id: m for p in PARTITIONS for m in FilesystemReader(tiny.root).segments("book", p)}
    assert again.written_segments == 0
    assert again.partitions == tiny.partitions
    assert after == before


def test_same_seed_same_data_other_seed_differs(tiny: SampleInfo, tmp_path: Path) -> None:
    spec = TINY
    a, b = generate_segment(7, spec, 1, 2), generate_segment(7, spec, 1, 2)
    assert np.array_equal(a.vectors["book_intro"], b.vectors["book_intro"])
    assert np.array_equal(a.primary_keys, b.primary_keys) and a.dynamic == b.dynamic
    other = generate_segment(8, spec, 1, 2)
    assert not np.array_equal(a.vectors["book_intro"], other.vectors["book_intro"])
    write_sample(tmp_path, "tiny", seed=7, num_threads=1, segment_rows=200)
    assert _column_hashes(tmp_path) == _column_hashes(tiny.root)
    reader = FilesystemReader(tmp_path)
    m = reader.segment("book", "novel", "novel-0002")
    field = reader.schema("book").field("book_intro")
    assert field is not None
    stored = open_index(reader.segment_file_path(m, "book_intro"), field).get_items(
        np.arange(spec.rows_per_segment)
    )
    assert np.array_equal(np.asarray(stored, dtype=np.float32), a.vectors["book_intro"])


def test_different_arguments_are_refused(tiny: SampleInfo) -> None:
    with pytest.raises(StorageError) as err:
        write_sample(tiny.root, "tiny", seed=8, segment_rows=200)
    assert err.value.reason == "SampleMismatch" and "seed=8" in err.value.message
    with pytest.raises(StorageError) as err:
        write_sample(tiny.root, "huge")
    assert err.value.reason == "InvalidArgument" and "huge" in err.value.message


def test_missing_segment_is_rewritten(tmp_path: Path) -> None:
    spec = SampleSpec(
        segments=2, rows_per_segment=50, intro_dim=8, cover_dim=4, clusters=4, ef_construction=20
    )
    first = write_sample(tmp_path, "custom", seed=1, spec=spec, num_threads=1)
    assert first.rows == 300
    shutil.rmtree(tmp_path / "book" / "poetry" / "poetry-0001")
    again = write_sample(tmp_path, "custom", seed=1, spec=spec, num_threads=1)
    assert again.written_segments == 1 and again.partitions == first.partitions
    assert FilesystemReader(tmp_path).schema("book").vector_fields[0].dim == 8


def test_vectors_are_clustered_and_searchable(tiny: SampleInfo) -> None:
    """Queries near the clusters find their exact nearest neighbours through the stored index."""
    reader = FilesystemReader(tiny.root)
    field = reader.schema("book").field("book_intro")
    assert field is not None
    m = reader.segment("book", "_default", "default-0000")
    data = generate_segment(7, TINY, 0, 0).vectors["book_intro"]
    queries = sample_queries(7, 20, spec=TINY)
    dists = ((queries[:, None, :] - data[None, :, :]) ** 2).sum(axis=2)
    nearest = np.sort(dists, axis=1)
    assert np.median(nearest[:, 0]) < 0.5 * np.median(dists)  # neighbours are much closer than average
    exact = np.argsort(dists, axis=1)[:, :10]
    index = open_index(reader.segment_file_path(m, "book_intro"), field, ef=64)
    labels, _ = index.knn_query(queries, k=10)
    recall = np.mean([len(set(labels[i]) & set(exact[i])) / 10 for i in range(len(queries))])
    assert recall >= 0.9


def test_presets_default_layout_from_the_cost_model() -> None:
    """Rows per partition are the presets' (1,800 / 10,200 / 144,000 / 1,440,000 rows in all);
    the layout is the default segment size: as few segments as keep every index's fixed cost
    under 5 %, i.e. one per partition below 2 x 164,635 rows."""
    least = min_segment_rows((64, 16), 16)
    assert least == 164_635
    layouts = {name: (s.segments, s.rows_per_segment) for name, s in SAMPLE_SIZES.items()}
    assert layouts == {"tiny": (1, 600), "small": (1, 3400), "medium": (1, 48_000), "large": (2, 240_000)}
    for spec in SAMPLE_SIZES.values():
        assert spec.segments == 1 or spec.rows_per_segment >= least


def test_rows_do_not_depend_on_the_segment_layout() -> None:
    """The same partition cut into 3 segments or kept whole holds identical rows."""
    whole, cut = SAMPLE_SIZES["tiny"], TINY
    one = generate_segment(7, whole, 2, 0)
    parts = [generate_segment(7, cut, 2, s) for s in range(cut.segments)]
    assert [p.segment_id for p in parts] == ["poetry-0000", "poetry-0001", "poetry-0002"]
    assert np.array_equal(one.vectors["cover"], np.concatenate([p.vectors["cover"] for p in parts]))
    assert np.array_equal(one.primary_keys, np.concatenate([p.primary_keys for p in parts]))
    assert one.scalars["title"] == [t for p in parts for t in p.scalars["title"]]
    assert one.dynamic == [m for p in parts for m in p.dynamic]
    assert one.primary_keys[0] == 2 * 600 + 1  # keys 1..N over the collection, as before
    # rows across a block boundary come out the same whichever block the request starts in
    wide = SampleSpec(segments=1, rows_per_segment=3000, intro_dim=8, cover_dim=4, clusters=4)
    a = generate_rows(1, wide, 0, 900, 2100)
    b = generate_rows(1, wide, 0, 0, 3000)
    assert np.array_equal(a.vectors["book_intro"], b.vectors["book_intro"][900:2100])


def test_segment_size_arguments_recut_the_sample(tmp_path: Path) -> None:
    assert resolve_spec("tiny", segment_rows=250) == TINY  # fewest equal segments of <= 250 rows
    assert resolve_spec("large", segment_rows=30_000).describe().startswith("segments=16x30000")
    by_bytes = resolve_spec("medium", segment_bytes=8 << 20)
    assert by_bytes.rows_per_partition == 48_000
    assert by_bytes.rows_per_segment * sample_row_bytes(by_bytes) <= 8 << 20
    info = write_sample(tmp_path, "tiny", seed=7, num_threads=1, segment_bytes=200_000)
    assert info.segments == 3 * info.spec.segments and info.rows == 1800
    assert all(p.bytes / info.spec.segments <= 1.1 * 200_000 for p in info.partitions.values())
    with pytest.raises(StorageError) as err:  # another layout over an existing sample
        write_sample(tmp_path, "tiny", seed=7, segment_rows=600)
    assert err.value.reason == "SampleMismatch"
    with pytest.raises(StorageError) as err:
        resolve_spec("tiny", segment_rows=0)
    assert err.value.reason == "InvalidArgument" and "segment_rows" in err.value.message


def test_sample_cli_segment_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--root", str(tmp_path), "--size", "tiny", "--threads", "1", "--no-progress"]
    assert sample_main([*args, "--segment-rows", "300"]) == 0
    out = capsys.readouterr().out
    assert "  novel            600 rows    2 segments" in out and "1800 rows    6 segments" in out
    assert sample_main(["--root", str(tmp_path / "b"), "--size", "tiny", "--segment-rows", "0"]) == 2
    assert "--segment-rows" in capsys.readouterr().err
