"""hnswlib index build and open for one vector field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt

from vectorload.storage.api import FieldSchema, Metric

SPACES: dict[Metric, str] = {"l2": "l2", "ip": "ip", "cosine": "cosine"}
ADD_CHUNK = 4096


def space_for(field: FieldSchema) -> str:
    if field.metric is None:
        raise ValueError(f"field {field.name!r} has no metric")
    return SPACES[field.metric]


def build_index(
    path: Path,
    field: FieldSchema,
    vectors: npt.NDArray[np.float32],
    M: int,
    ef_construction: int,
    num_threads: int = -1,
    seed: int = 100,
    on_rows: Callable[[int], None] | None = None,
) -> None:
    """Build an index whose labels are the row positions 0..n-1 and save it to `path`."""
    rows = vectors.shape[0]
    index = hnswlib.Index(space=space_for(field), dim=field.dim)
    index.init_index(max_elements=max(rows, 1), ef_construction=ef_construction, M=M, random_seed=seed)
    for start in range(0, rows, ADD_CHUNK):
        stop = min(start + ADD_CHUNK, rows)
        index.add_items(vectors[start:stop], np.arange(start, stop, dtype=np.int64), num_threads=num_threads)
        if on_rows is not None:
            on_rows(stop - start)
    index.save_index(str(path))


def open_index(path: Path, field: FieldSchema, ef: int | None = None) -> Any:
    """Load a saved index (an `hnswlib.Index`)."""
    index = hnswlib.Index(space=space_for(field), dim=field.dim)
    index.load_index(str(path))
    if ef is not None:
        index.set_ef(ef)
    return index
