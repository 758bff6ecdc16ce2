"""The deterministic sample collection `book` (as in the Milvus docs), with clustered vectors.

Same `size`, `seed` (and spec) → the same primary keys, scalars and vectors. A re-run over an
existing identical sample writes nothing; segments missing after a crash are written again.

Rows are generated in blocks of `BLOCK_ROWS` rows, each from its own random stream, so a row's
content depends on its partition and position only — not on how the partition is cut into
segments. Segment size is a storage choice (`vectorload.storage.segsize`): the same sample cut
into 3 or 300 segments holds the same rows, which is what lets tests ask for many small segments
and benchmarks compare segment sizes on identical data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.progress import ProgressBar
from vectorload.storage.api import DEFAULT_PARTITION, CollectionSchema, FieldSchema, StorageError
from vectorload.storage.columns import encode_json_row
from vectorload.storage.segsize import (
    SegmentSize,
    equal_default_segments,
    equal_segments,
    estimate_row_bytes,
    min_segment_rows,
)
from vectorload.storage.writer import CollectionWriter

COLLECTION = "book"
PARTITIONS = (DEFAULT_PARTITION, "novel", "poetry")
_GENRES = {
    DEFAULT_PARTITION: ("essay", "biography", "history", "science", "travel"),
    "novel": ("fantasy", "mystery", "romance", "science fiction", "thriller"),
    "poetry": ("sonnet", "haiku", "ballad", "free verse", "epic"),
}
_WORDS = {
    DEFAULT_PARTITION: (100, 150_000),
    "novel": (20_000, 250_000),
    "poetry": (50, 20_000),
}
_ADJECTIVES = ("Silent", "Golden", "Hidden", "Last", "Broken", "Distant", "Crimson", "Quiet", "Wild", "Lost")
_NOUNS = ("River", "Garden", "Empire", "Letter", "Winter", "Harbor", "Mirror", "Orchard", "Voyage", "Lantern")
_AWARDS = ("Hugo", "Nebula", "Booker", "Pulitzer", "Forward Prize")


BLOCK_ROWS = 1000  # rows per random stream; part of the sample's definition (see module docstring)
GENERATOR = 2  # recorded in the schema description: 1 drew one stream per segment


@dataclass(frozen=True)
class SampleSpec:
    """How big the sample is: per partition `segments` segments of `rows_per_segment` rows."""

    segments: int
    rows_per_segment: int
    intro_dim: int = 64
    cover_dim: int = 16
    clusters: int = 32
    M: int = 16
    ef_construction: int = 200

    @property
    def rows_per_partition(self) -> int:
        return self.segments * self.rows_per_segment

    def describe(self) -> str:
        return (
            f"segments={self.segments}x{self.rows_per_segment} dims={self.intro_dim}/{self.cover_dim} "
            f"clusters={self.clusters} M={self.M} ef_construction={self.ef_construction}"
        )

    def resegmented(self, max_rows: int) -> SampleSpec:
        """The same rows cut into the fewest equal segments of at most `max_rows` rows."""
        k = equal_segments(self.rows_per_partition, max_rows)
        return replace(self, segments=k, rows_per_segment=self.rows_per_partition // k)

    def default_segments(self) -> SampleSpec:
        """The same rows cut into the most equal segments that each keep hnswlib's fixed
        per-index cost under 5 % (`segsize.min_segment_rows`); one when the partition is smaller."""
        least = min_segment_rows((self.intro_dim, self.cover_dim), self.M)
        k = equal_default_segments(self.rows_per_partition, least)
        return replace(self, segments=k, rows_per_segment=self.rows_per_partition // k)


def _preset(rows_per_partition: int, ef_construction: int = 200) -> SampleSpec:
    return SampleSpec(1, rows_per_partition, ef_construction=ef_construction).default_segments()


# Rows per partition; the layout is the default segment size (one segment per partition up to
# `medium`, 2 x 240,000 for `large`). About 0.7 KB of segment files per row with the default dims.
SAMPLE_SIZES: dict[str, SampleSpec] = {
    "tiny": _preset(600, ef_construction=100),
    "small": _preset(3_400),
    "medium": _preset(48_000),
    "large": _preset(480_000, ef_construction=100),
}


@dataclass(frozen=True)
class PartitionInfo:
    rows: int
    segments: int
    bytes: int


@dataclass(frozen=True)
class SampleInfo:
    root: Path
    collection: str
    size: str
    seed: int
    spec: SampleSpec
    partitions: dict[str, PartitionInfo]
    written_segments: int  # 0 when the sample already existed

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions.values())

    @property
    def segments(self) -> int:
        return sum(p.segments for p in self.partitions.values())

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions.values())


@dataclass(frozen=True)
class SampleSegment:
    """The rows of one sample segment, as passed to `CollectionWriter.write_segment`."""

    partition: str
    segment_id: str
    vectors: dict[str, npt.NDArray[np.float32]]
    primary_keys: npt.NDArray[np.int64]
    scalars: dict[str, Any]
    dynamic: list[dict[str, Any]] = field(default_factory=list)


def sample_schema(size: str, seed: int, spec: SampleSpec) -> CollectionSchema:
    """The schema; its description records the arguments so a different re-run is detected."""
    return CollectionSchema(
        name=COLLECTION,
        fields=(
            FieldSchema("book_id", "int64", is_primary=True),
            FieldSchema("title", "varchar", max_length=256),
            FieldSchema("word_count", "int64"),
            FieldSchema("rating", "float"),
            FieldSchema("in_print", "bool"),
            FieldSchema("book_intro", "float_vector", dim=spec.intro_dim, metric="l2"),
            FieldSchema("cover", "float_vector", dim=spec.cover_dim, metric="cosine"),
        ),
        dynamic_field=True,
        description=(
            f"vectorload sample collection (size={size} seed={seed} {spec.describe()} generator={GENERATOR})"
        ),
    )


def resolve_spec(
    size: str,
    spec: SampleSpec | None = None,
    segment_rows: int | None = None,
    segment_bytes: int | None = None,
) -> SampleSpec:
    """The spec of a preset (or `spec`), re-cut when a segment size is given: the fewest equal
    segments of at most `segment_rows` rows / about `segment_bytes` bytes of files."""
    target = SegmentSize(segment_rows, segment_bytes)
    if spec is None:
        if size not in SAMPLE_SIZES:
            raise StorageError(
                "InvalidArgument", f"unknown sample size {size!r}: choose from {list(SAMPLE_SIZES)}"
            )
        spec = SAMPLE_SIZES[size]
    cap = target.max_rows(sample_row_bytes(spec)) if not target.is_default else None
    return spec if cap is None else spec.resegmented(cap)


def sample_row_bytes(spec: SampleSpec) -> float:
    """Bytes of segment files per sample row (`segsize.estimate_row_bytes`, with the varchar and
    `$meta` lengths of the first block of seed 0)."""
    rows = _block(0, spec, 0, 0)
    first = np.arange(1, BLOCK_ROWS + 1, dtype=np.int64)
    titles = _titles(rows, first)
    return estimate_row_bytes(
        sample_schema("", 0, spec),
        spec.M,
        {"title": sum(len(t.encode()) for t in titles) / BLOCK_ROWS},
        sum(len(encode_json_row(m)) + 1 for m in _metas(rows, PARTITIONS[0])) / BLOCK_ROWS,
    )


def _centers(seed: int, spec: SampleSpec) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng([seed, 1])
    intro = rng.normal(size=(spec.clusters, spec.intro_dim))
    cover = rng.normal(size=(max(spec.clusters // 4, 2), spec.cover_dim))
    return intro, cover


def _clustered(
    rng: np.random.Generator, centers: npt.NDArray[np.float64], assign: npt.NDArray[np.int64], noise: float
) -> npt.NDArray[np.float32]:
    points = centers[assign] + rng.normal(scale=noise, size=(assign.size, centers.shape[1]))
    return points.astype(np.float32)


def _cluster_weights(partition_index: int, clusters: int) -> npt.NDArray[np.float64]:
    """_default: uniform; novel favours even clusters, poetry odd ones (3:1)."""
    weights = np.ones(clusters)
    if partition_index > 0:
        weights[(np.arange(clusters) % 2) == (partition_index - 1)] = 3.0
    normalised: npt.NDArray[np.float64] = weights / weights.sum()
    return normalised


def segment_id_for(partition: str, index: int) -> str:
    return f"{partition.strip('_')}-{index:04d}"


@dataclass(frozen=True)
class _Block:
    """The random draws of one block of rows (everything but the primary keys)."""

    intro: npt.NDArray[np.float32]
    cover: npt.NDArray[np.float32]
    adjectives: npt.NDArray[np.int64]
    nouns: npt.NDArray[np.int64]
    genres: npt.NDArray[np.int64]
    years: npt.NDArray[np.int64]
    awards: npt.NDArray[np.bool_]
    award_idx: npt.NDArray[np.int64]
    word_count: npt.NDArray[np.int64]
    rating: npt.NDArray[np.float32]
    in_print: npt.NDArray[np.bool_]

    def rows(self, start: int, stop: int) -> _Block:
        return _Block(**{k: getattr(self, k)[start:stop] for k in self.__dataclass_fields__})

    @staticmethod
    def concat(blocks: list[_Block]) -> _Block:
        if len(blocks) == 1:
            return blocks[0]
        return _Block(
            **{k: np.concatenate([getattr(b, k) for b in blocks]) for k in _Block.__dataclass_fields__}
        )


def _block(seed: int, spec: SampleSpec, partition_index: int, block: int) -> _Block:
    """Block `block` of a partition: `BLOCK_ROWS` rows from the stream (seed, 2, partition, block)."""
    n = BLOCK_ROWS
    partition = PARTITIONS[partition_index]
    rng = np.random.default_rng([seed, 2, partition_index, block])
    intro_c, cover_c = _centers(seed, spec)
    assign = rng.choice(spec.clusters, size=n, p=_cluster_weights(partition_index, spec.clusters))
    intro = _clustered(rng, intro_c, assign, noise=0.35)
    cover = _clustered(rng, cover_c, assign % cover_c.shape[0], noise=0.3)
    low, high = _WORDS[partition]
    return _Block(
        intro=intro,
        cover=cover,
        adjectives=rng.integers(len(_ADJECTIVES), size=n),
        nouns=rng.integers(len(_NOUNS), size=n),
        genres=rng.integers(len(_GENRES[partition]), size=n),
        years=rng.integers(1800, 2025, size=n),
        awards=rng.random(n) < 0.1,
        award_idx=rng.integers(len(_AWARDS), size=n),
        word_count=rng.integers(low, high, size=n, dtype=np.int64),
        rating=np.round(rng.uniform(1.0, 5.0, size=n), 2).astype(np.float32),
        in_print=rng.random(n) < 0.7,
    )


def _titles(rows: _Block, book_id: npt.NDArray[np.int64]) -> list[str]:
    return [
        f"{_ADJECTIVES[a]} {_NOUNS[b]} {k}"
        for a, b, k in zip(rows.adjectives, rows.nouns, book_id, strict=True)
    ]


def _metas(rows: _Block, partition: str) -> list[dict[str, Any]]:
    genres = _GENRES[partition]
    out: list[dict[str, Any]] = []
    for g, year, award, a in zip(rows.genres, rows.years, rows.awards, rows.award_idx, strict=True):
        meta: dict[str, Any] = {"genre": genres[g], "year": int(year)}
        if award:
            meta["award"] = _AWARDS[a]
        out.append(meta)
    return out


def generate_rows(seed: int, spec: SampleSpec, partition_index: int, start: int, stop: int) -> SampleSegment:
    """Rows `start..stop-1` of a partition (segment id: the segment holding row `start`)."""
    if not 0 <= start < stop:
        raise ValueError(f"need 0 <= start < stop, got {start}, {stop}")
    partition = PARTITIONS[partition_index]
    first_block, last_block = start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS
    blocks = [_block(seed, spec, partition_index, b) for b in range(first_block, last_block + 1)]
    offset = first_block * BLOCK_ROWS
    rows = _Block.concat(blocks).rows(start - offset, stop - offset)
    first = partition_index * spec.rows_per_partition + start + 1
    book_id = np.arange(first, first + (stop - start), dtype=np.int64)
    return SampleSegment(
        partition=partition,
        segment_id=segment_id_for(partition, start // spec.rows_per_segment),
        vectors={"book_intro": rows.intro, "cover": rows.cover},
        primary_keys=book_id,
        scalars={
            "title": _titles(rows, book_id),
            "word_count": rows.word_count,
            "rating": rows.rating,
            "in_print": rows.in_print,
        },
        dynamic=_metas(rows, partition),
    )


def generate_segment(seed: int, spec: SampleSpec, partition_index: int, segment_index: int) -> SampleSegment:
    """One segment's data; depends only on its arguments (use it for ground truth in tests)."""
    n = spec.rows_per_segment
    return generate_rows(seed, spec, partition_index, segment_index * n, (segment_index + 1) * n)


def sample_queries(
    seed: int, count: int, field_name: str = "book_intro", spec: SampleSpec | None = None
) -> npt.NDArray[np.float32]:
    """Query vectors drawn from the same clusters as the sample (a separate random stream)."""
    spec = spec or SAMPLE_SIZES["tiny"]
    intro_c, cover_c = _centers(seed, spec)
    centers = intro_c if field_name == "book_intro" else cover_c
    rng = np.random.default_rng([seed, 3])
    assign = rng.integers(centers.shape[0], size=count)
    return _clustered(rng, centers, assign, noise=0.35)


def write_sample(
    root: Path,
    size: str = "small",
    seed: int = 0,
    progress: bool = False,
    spec: SampleSpec | None = None,
    num_threads: int = -1,
    segment_rows: int | None = None,
    segment_bytes: int | None = None,
) -> SampleInfo:
    """Write (or find) the sample collection `book` under `root`.

    `segment_rows` / `segment_bytes` re-cut the preset (or `spec`) into smaller or larger segments
    (`resolve_spec`); the rows are the same. StorageError('SampleMismatch') if `root` holds a
    `book` written with other arguments (including another segment layout)."""
    spec = resolve_spec(size, spec, segment_rows, segment_bytes)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise StorageError("InvalidArgument", f"seed must be a non-negative integer, got {seed!r}")
    writer = CollectionWriter(root)
    try:
        writer.create_collection(sample_schema(size, seed, spec))
    except StorageError as exc:
        if exc.reason != "SchemaMismatch":
            raise
        held = writer.schema(COLLECTION).description
        raise StorageError(
            "SampleMismatch",
            f"{root} already holds a collection {COLLECTION!r} written with different arguments "
            f"(not size={size} seed={seed} {spec.describe()} generator={GENERATOR}; it holds: {held!r}); "
            "use another --root or remove the old one",
        ) from exc
    todo: list[tuple[int, int]] = []
    for p_index, partition in enumerate(PARTITIONS):
        writer.create_partition(COLLECTION, partition)
        existing = {m.segment_id for m in writer.reader.segments(COLLECTION, partition)}
        todo += [(p_index, s) for s in range(spec.segments) if segment_id_for(partition, s) not in existing]
    with contextlib.ExitStack() as stack:
        bar = None
        if progress and todo:
            total = len(todo) * spec.rows_per_segment
            bar = stack.enter_context(ProgressBar(total, label=f"sample {COLLECTION} ({size})", unit="rows"))
        for p_index, s_index in todo:
            seg = generate_segment(seed, spec, p_index, s_index)
            writer.write_segment(
                COLLECTION,
                seg.partition,
                seg.segment_id,
                seg.vectors,
                seg.primary_keys,
                seg.scalars,
                seg.dynamic,
                M=spec.M,
                ef_construction=spec.ef_construction,
                num_threads=num_threads,
                on_rows=None if bar is None else _half_rows(bar),
            )
    return _info(writer, root, size, seed, spec, len(todo))


def _half_rows(bar: ProgressBar) -> Callable[[int], None]:
    """Index building reports rows per vector field; the sample has two."""
    return lambda n: bar.update(n / 2)


def _info(
    writer: CollectionWriter, root: Path, size: str, seed: int, spec: SampleSpec, written: int
) -> SampleInfo:
    partitions: dict[str, PartitionInfo] = {}
    for partition in PARTITIONS:
        manifests = [
            m
            for m in writer.reader.segments(COLLECTION, partition)
            if m.segment_id in {segment_id_for(partition, s) for s in range(spec.segments)}
        ]
        partitions[partition] = PartitionInfo(
            rows=sum(m.rows for m in manifests),
            segments=len(manifests),
            bytes=sum(m.total_bytes for m in manifests),
        )
    return SampleInfo(Path(root), COLLECTION, size, seed, spec, partitions, written)
