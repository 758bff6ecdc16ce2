"""How many rows a sealed segment holds, and why the default is what it is.

Every hnswlib index pays a fixed cost whatever its size: 65,536 `std::mutex` for label
operations (`label_op_locks_`, 40 bytes each on x86-64 glibc = 2,621,440 bytes), allocated by
`init_index` and `load_index` alike. Per row it pays its level-0 record (links, vector, label)
plus about 100 bytes of bookkeeping. A segment of 8,000 rows of the sample's 16-d `cover`
field therefore spends more on the fixed part (2.6 MB) than on its rows (2.4 MB), and a
collection cut into many small segments multiplies it. So segment size is a storage choice
with a default derived from these costs: the smallest segment whose every index spends less than
`MAX_FIXED_SHARE` (5 %) of its memory on the fixed part — per index, so the bound holds for any
`load_fields` subset, not only for a load of every field.

The figures are hnswlib 0.8's data layout (`hnswalg.h`), checked against allocator-measured
memory by tests/unit/storage/test_storage_segsize.py. Everything here is pure arithmetic so the
ingest, the sample, the docs and the tests use one set of numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vectorload.storage.api import CollectionSchema, StorageError

# The fixed part of one index: MAX_LABEL_OPERATION_LOCKS (65536) std::mutex of 40 bytes.
HNSW_FIXED_BYTES = 65_536 * 40
# Per element, beyond its level-0 record and upper-level links: linkLists_ pointer (8),
# element_levels_ (4), link_list_locks_ mutex (40), visited-list slot (2 bytes of unsigned short),
# label_lookup_ hash node and bucket (~40). Measured: 99-105 bytes including upper levels, so this
# slightly underestimates memory, which makes the derived default slightly larger, never smaller.
HNSW_ELEMENT_BYTES = 94
MAX_FIXED_SHARE = 0.05


def level0_bytes(dim: int, M: int) -> int:
    """One element's level-0 record: 2M links of 4 bytes + 4-byte count, the float32 vector,
    the 8-byte label (hnswlib's `size_data_per_element_`)."""
    return 2 * M * 4 + 4 + 4 * dim + 8


def upper_link_bytes(M: int) -> float:
    """Expected upper-level link bytes per element: each level holds M links + count
    (4M + 4 bytes); an element reaches level l with probability M^-l, so 1/(M-1) levels."""
    return (4 * M + 4) / (M - 1)


def index_file_row_bytes(dim: int, M: int) -> float:
    """Bytes per row of a saved `.hnsw` file: the level-0 record, a 4-byte upper-level size and
    the upper-level links."""
    return level0_bytes(dim, M) + 4 + upper_link_bytes(M)


def index_memory_row_bytes(dim: int, M: int) -> float:
    """Bytes per row of a loaded index, beyond the fixed part."""
    return level0_bytes(dim, M) + HNSW_ELEMENT_BYTES + upper_link_bytes(M)


def fixed_share(rows: int, dim: int, M: int) -> float:
    """The fixed part's share of a loaded index of `rows` rows, by the model."""
    return HNSW_FIXED_BYTES / (HNSW_FIXED_BYTES + rows * index_memory_row_bytes(dim, M))


def min_segment_rows(dims: Iterable[int], M: int, share: float = MAX_FIXED_SHARE) -> int:
    """The fewest rows for which every index (one per dim) has fixed share < `share`.

    F / (F + n r) < s  <=>  n > F (1 - s) / (s r); the smallest per-row cost r is the binding one."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be in (0, 1), got {share}")
    cheapest = min(index_memory_row_bytes(d, M) for d in dims)
    return math.floor(HNSW_FIXED_BYTES * (1.0 - share) / (share * cheapest)) + 1


def default_segment_rows(schema: CollectionSchema, M: int) -> int:
    """`min_segment_rows` for the collection's vector fields."""
    return min_segment_rows((f.dim or 1 for f in schema.vector_fields), M)


def estimate_row_bytes(
    schema: CollectionSchema,
    M: int,
    varchar_bytes: Mapping[str, float] | None = None,
    dynamic_bytes: float = 2.0,
) -> float:
    """Bytes of segment files per row: each index's file row, 8/4/1 bytes per int64/float/bool
    value, 8 bytes of offset plus the mean UTF-8 length per varchar value (`varchar_bytes`, by
    field), and the mean `meta.jsonl` line including its newline (`dynamic_bytes`, `{}` + `\\n`
    when unknown) if the schema has the dynamic field."""
    varchar_bytes = varchar_bytes or {}
    total = 0.0
    for f in schema.fields:
        if f.type == "float_vector":
            total += index_file_row_bytes(f.dim or 1, M)
        elif f.type == "varchar":
            total += 8 + varchar_bytes.get(f.name, 0.0)
        else:
            total += {"int64": 8, "float": 4, "bool": 1}[f.type]
    if schema.dynamic_field:
        total += dynamic_bytes
    return total


def _positive(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise StorageError("InvalidArgument", f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class SegmentSize:
    """The target size of the segments an ingest writes.

    `rows` / `bytes` (of segment files) cap each segment; with both, the smaller cap wins, and the
    input is cut into segments of exactly that many rows, the last one shorter. With neither, the
    default: the input is split evenly into `floor(total / min_rows)` segments (at least one), so
    each holds between `min_rows` and `2 * min_rows` rows and no short tail is left behind."""

    rows: int | None = None
    bytes: int | None = None

    def __post_init__(self) -> None:
        _positive("segment_rows", self.rows)
        _positive("segment_bytes", self.bytes)

    @property
    def is_default(self) -> bool:
        return self.rows is None and self.bytes is None

    def max_rows(self, row_bytes: float) -> int | None:
        """The row cap these targets give for rows of `row_bytes` bytes (None = default)."""
        caps = [] if self.rows is None else [self.rows]
        if self.bytes is not None:
            caps.append(max(1, math.floor(self.bytes / max(row_bytes, 1e-9))))
        return min(caps) if caps else None

    def plan(self, total: int, min_rows: int, row_bytes: float) -> list[int]:
        """Row counts of the segments for `total` input rows."""
        cap = self.max_rows(row_bytes)
        if cap is None:
            return even_split(total, max(1, total // min_rows))
        return cut(total, cap)


def cut(total: int, max_rows: int) -> list[int]:
    """Segments of `max_rows` rows, the last one shorter."""
    full, rest = divmod(total, max_rows)
    return [max_rows] * full + ([rest] if rest else [])


def even_split(total: int, parts: int) -> list[int]:
    """`parts` segments whose sizes differ by at most one row."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def equal_segments(total: int, max_rows: int) -> int:
    """The fewest equal-sized segments of at most `max_rows` rows that `total` divides into."""
    return next(k for k in range(max(1, math.ceil(total / max_rows)), total + 1) if total % k == 0)


def equal_default_segments(total: int, min_rows: int) -> int:
    """The most equal-sized segments of at least `min_rows` rows that `total` divides into (one
    when `total < 2 * min_rows`)."""
    most = max(1, total // min_rows)
    return max(k for k in range(1, most + 1) if total % k == 0)
