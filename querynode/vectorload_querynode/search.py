"""Search, query and get over the segments one node serves (runs in worker threads).

Distances follow hnswlib and are "smaller is closer" for every metric:
l2 → squared Euclidean distance, ip → 1 − inner product, cosine → 1 − cosine similarity.
A distance is always a finite number in the answer (a non-finite one is clamped to float32's
largest value, so it sorts last), and every request has a time budget: the work checks its
`Deadline` between segments and stops with 408 DeadlineExceeded once the budget is spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorload.storage.api import DYNAMIC_FIELD, CollectionSchema
from vectorload.wire.hits import HitColumns, top_k_rows
from vectorload.wire.querynode import SearchRequest as SearchBody
from vectorload.wire.querynode import key

from .errors import ApiError, echo
from .filter_eval import evaluate
from .filter_expr import DEFAULT_LIMITS as DEFAULT_FILTER_LIMITS
from .filter_expr import BoundFilter, FilterError, FilterLimits, bind
from .requests import GetRequest, QueryRequest, SearchRequest
from .segment import LoadedSegment, VectorIndex

BRUTE_FORCE_ROWS = 4096  # filtered searches over at most this many allowed rows are exact
BRUTE_FORCE_CHUNK = 16384
DEFAULT_EF = 64
SEARCH_THREADS = 1  # hnswlib threads of a filtered knn_query (its filter calls Python per candidate)
FLOAT32_MAX = float(np.finfo(np.float32).max)
ANNS_FIELD = key(SearchBody, "anns_field")
DEADLINE_CHECK_ROWS = 1024  # rows built between two deadline checks
# an unfiltered search of a segment with at most this many hidden rows (deleted, or older
# versions of an upserted key) asks hnswlib for k + hidden neighbours and drops the hidden ones,
# keeping hnswlib's threads; more hidden rows go through the filter path like a filter does
OVERFETCH_HIDDEN_ROWS = 1024

Mask = npt.NDArray[np.bool_]
Hidden = Mapping[tuple[str, str], Mask]
"""Per (partition, segment id): the rows deletes and newer versions hide (visibility.py)."""
NO_HIDDEN: Hidden = MappingProxyType({})


@dataclass(frozen=True)
class Deadline:
    """The time budget of one request (`--request-timeout`); `check()` raises 408 once it is spent."""

    budget: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)

    @classmethod
    def start(cls, budget: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(budget, clock, clock())

    def check(self) -> None:
        if self.clock() - self.started > self.budget:
            raise ApiError(
                408,
                "DeadlineExceeded",
                f"the request needs more than its time budget --request-timeout {self.budget:g} s",
            )


def _check(deadline: Deadline | None) -> None:
    if deadline is not None:
        deadline.check()


def not_loaded(collection: str, node: str, loading: bool) -> ApiError:
    extra = " (its segments are still loading)" if loading else ""
    return ApiError(
        404, "CollectionNotLoaded", f"collection {collection} is not loaded on node {node}{extra}"
    )


def select_partitions(
    segments: list[LoadedSegment], partitions: list[str] | None, collection: str, node: str
) -> list[LoadedSegment]:
    """The segments of the asked partitions this node holds. A node answers for what it holds
    (a replica's partitions may be spread over nodes), so only holding none of them is an error."""
    if partitions is None:
        return segments
    wanted = set(partitions)
    chosen = [s for s in segments if s.partition in wanted]
    if not chosen:
        raise ApiError(
            409,
            "PartitionNotLoaded",
            f"partition(s) {echo(', '.join(partitions))} of collection {collection} "
            f"not loaded on node {node}",
        )
    return chosen


def field_not_loaded(name: str, segment: LoadedSegment) -> ApiError:
    return ApiError(
        400,
        "FieldNotLoaded",
        f"field {name} is not loaded (segment {segment.partition}/{segment.segment_id} holds "
        f"{', '.join(sorted(segment.fields))}{', $meta' if segment.dynamic else ''})",
    )


def bind_filter(
    text: str | None,
    schema: CollectionSchema,
    segments: list[LoadedSegment],
    limits: FilterLimits = DEFAULT_FILTER_LIMITS,
) -> BoundFilter | None:
    """The request's filter parsed within the node's `limits` (--filter-max-*) and checked
    against what the segments hold; 400 naming the problem."""
    if text is None:
        return None
    try:
        bound = bind(text, schema, limits)
    except FilterError as exc:
        raise ApiError(400, exc.reason, f"filter {_clip(text)}: {echo(exc.message)}") from exc
    for segment in segments:
        for name in sorted(bound.fields):
            if name not in segment.fields:
                raise field_not_loaded(name, segment)
        if bound.meta_keys and not segment.dynamic:
            key = sorted(bound.meta_keys)[0]
            raise field_not_loaded(f"{DYNAMIC_FIELD} (dynamic key {key})", segment)
    return bound


def _clip(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


# ------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class OutputPlan:
    names: tuple[str, ...]  # schema fields, "$meta", or dynamic keys
    star: bool

    def for_segment(self, schema: CollectionSchema, segment: LoadedSegment) -> list[str]:
        if not self.star:
            return list(self.names)
        names = [f.name for f in schema.scalar_fields if f.name in segment.fields]
        return [*names, DYNAMIC_FIELD] if segment.dynamic else names


def plan_outputs(
    requested: list[str] | None, schema: CollectionSchema, segments: list[LoadedSegment]
) -> OutputPlan:
    if not requested:
        return OutputPlan((), False)
    star = "*" in requested
    names = tuple(dict.fromkeys(n for n in requested if n != "*"))
    for name in names:
        field = schema.field(name)
        if field is None and name != DYNAMIC_FIELD and not schema.dynamic_field:
            raise ApiError(
                400, "FieldNotFound", f"output field {echo(name)} is not in collection {schema.name}"
            )
        for segment in segments:
            if field is not None and name not in segment.fields:
                raise field_not_loaded(name, segment)
            if field is None and not segment.dynamic:
                raise field_not_loaded(
                    name if name == DYNAMIC_FIELD else f"{DYNAMIC_FIELD} (key {name})", segment
                )
    return OutputPlan(tuple(n for n in names if n != schema.primary_key.name), star)


def _json_value(value: Any) -> Any:
    if isinstance(value, np.float32):
        value = float(str(value))  # the shortest decimal that round-trips (3.36, not 3.359999…)
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def row_fields(
    schema: CollectionSchema, segment: LoadedSegment, row: int, names: Iterable[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    meta: dict[str, Any] | None = None
    for name in names:
        if name in segment.columns:
            out[name] = _json_value(segment.columns[name][row])
        elif name in segment.vectors:
            vector = segment.vectors[name].vectors(np.asarray([row], dtype=np.int64))[0]
            out[name] = [float(x) for x in vector]
        elif segment.meta is not None:
            if meta is None:
                meta = segment.meta.row(row)
            out[name] = meta if name == DYNAMIC_FIELD else meta.get(name)
    return out


def _column_values(values: npt.NDArray[Any]) -> list[Any]:
    """`_json_value` of each value of a gathered column, the cheap way per dtype."""
    if values.dtype == np.float32:
        return [_json_value(v) for v in values]  # shortest decimals, per value
    if values.dtype.kind == "f":
        return [v if math.isfinite(v) else None for v in values.tolist()]
    plain: list[Any] = values.tolist()  # int64, bool, str objects: already JSON values
    return plain


def gather_fields(
    schema: CollectionSchema,
    segments: list[LoadedSegment],
    outputs: OutputPlan,
    owner: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    deadline: Deadline | None,
) -> list[dict[str, Any]]:
    """The output fields of each hit (`row_fields` of its row, same keys in the same order), one
    column at a time per segment: a numpy gather and one conversion per column instead of a
    lookup per hit and field."""
    out: list[dict[str, Any]] = [{} for _ in range(len(rows))]
    for s_index in np.unique(owner).tolist():
        _check(deadline)
        segment = segments[s_index]
        positions = np.flatnonzero(owner == s_index)
        seg_rows = rows[positions]
        dicts = [out[p] for p in positions.tolist()]
        metas: list[dict[str, Any]] | None = None
        for name in outputs.for_segment(schema, segment):
            if name in segment.columns:
                values = _column_values(segment.columns[name][seg_rows])
            elif name in segment.vectors:
                values = segment.vectors[name].vectors(seg_rows).astype(np.float64).tolist()
            elif segment.meta is not None:
                if metas is None:
                    metas = [segment.meta.row(r) for r in seg_rows.tolist()]
                values = metas if name == DYNAMIC_FIELD else [m.get(name) for m in metas]
            else:
                continue
            for d, value in zip(dicts, values, strict=True):
                d[name] = value
    return out


# -------------------------------------------------------------------------------------- search


def choose_anns_field(requested: str | None, schema: CollectionSchema, segments: list[LoadedSegment]) -> str:
    if requested is not None:
        field = schema.field(requested)
        if field is None or field.type != "float_vector":
            message = f"{ANNS_FIELD} {echo(requested)} is not a vector field of {schema.name}"
            raise ApiError(400, "InvalidAnnsField", message)
        for segment in segments:
            if requested not in segment.vectors:
                raise field_not_loaded(requested, segment)
        return requested
    loaded = sorted({name for s in segments for name in s.vectors})
    if len(loaded) != 1:
        raise ApiError(
            400,
            "AnnsFieldRequired",
            f"{ANNS_FIELD} is required: collection {schema.name} has vector fields "
            f"{', '.join(loaded)} loaded",
        )
    for segment in segments:
        if loaded[0] not in segment.vectors:
            raise field_not_loaded(loaded[0], segment)
    return loaded[0]


def _normalise(queries: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    out: npt.NDArray[np.float32] = (queries / np.maximum(norms, 1e-30)).astype(np.float32)
    return out


def exact_search(
    vindex: VectorIndex, queries: npt.NDArray[np.float32], rows: npt.NDArray[np.int64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Brute force over the given rows, in hnswlib's distance convention; (nq, k') labels/distances."""
    metric = vindex.field.metric
    q = _normalise(queries) if metric == "cosine" else queries
    best_d = np.full((len(q), 0), np.inf, dtype=np.float32)
    best_l = np.zeros((len(q), 0), dtype=np.int64)
    for start in range(0, len(rows), BRUTE_FORCE_CHUNK):
        chunk = rows[start : start + BRUTE_FORCE_CHUNK]
        vectors = vindex.vectors(chunk)
        dots = q @ vectors.T
        if metric == "l2":
            d = (q * q).sum(axis=1)[:, None] - 2 * dots + (vectors * vectors).sum(axis=1)[None, :]
            d = np.maximum(d, 0.0)
        else:
            d = 1.0 - dots
        all_d = np.concatenate([best_d, d.astype(np.float32)], axis=1)
        all_l = np.concatenate([best_l, np.broadcast_to(chunk, d.shape)], axis=1)
        keep = min(k, all_d.shape[1])
        idx = np.argpartition(all_d, keep - 1, axis=1)[:, :keep]
        best_d = np.take_along_axis(all_d, idx, axis=1)
        best_l = np.take_along_axis(all_l, idx, axis=1)
    return best_l, best_d


def segment_search(
    vindex: VectorIndex,
    queries: npt.NDArray[np.float32],
    k: int,
    ef: int,
    rows: int,
    mask: npt.NDArray[np.bool_] | None,
    num_threads: int = 1,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Top-k of one segment. Filters use hnswlib's `filter` callable, or brute force when few
    rows pass (exact, and avoids HNSW's poor recall on very selective filters). `num_threads`
    hnswlib threads share the queries of an unfiltered search (a filtered one calls back into
    Python per candidate, so it stays on one thread)."""
    allowed_rows: npt.NDArray[np.int64] | None = None
    if mask is not None:
        allowed_rows = np.flatnonzero(mask).astype(np.int64)
        rows = len(allowed_rows)
    k = min(k, rows)
    empty = (np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32))
    if k == 0:
        return empty
    if allowed_rows is not None and rows <= max(BRUTE_FORCE_ROWS, 8 * k):
        return exact_search(vindex, queries, allowed_rows, k)
    allowed = mask.tolist() if mask is not None else None
    try:
        with vindex.gate.searching(max(ef, k)):
            if allowed is None:
                labels, dists = vindex.index.knn_query(queries, k=k, num_threads=num_threads)
            else:
                labels, dists = vindex.index.knn_query(
                    queries, k=k, num_threads=SEARCH_THREADS, filter=allowed.__getitem__
                )
    except RuntimeError:
        # hnswlib found fewer than k neighbours (tiny ef/M or a sparse filter): be exact instead
        candidates = allowed_rows if allowed_rows is not None else np.arange(rows, dtype=np.int64)
        return exact_search(vindex, queries, candidates, k)
    out_labels: npt.NDArray[np.int64] = np.asarray(labels, dtype=np.int64)
    out_dists: npt.NDArray[np.float32] = np.asarray(dists, dtype=np.float32)
    return out_labels, out_dists


def overfetch_search(
    vindex: VectorIndex,
    req: SearchRequest,
    ef: int,
    rows: int,
    hidden: Mask,
    count: int,
    num_threads: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Top-k of a segment with `count` hidden rows and no filter: hnswlib's top k + count (at
    most `count` of them hidden, so at least k visible per query), the hidden ones dropped. The
    same answer as the filter path, without a Python call per candidate."""
    k = req.top_k + count
    labels, dists = segment_search(vindex, req.vectors, k, max(ef, k), rows, None, num_threads)
    if labels.shape[1] == 0:
        return labels, dists
    order = np.argsort(hidden[labels], axis=1, kind="stable")[:, : req.top_k]  # visible first, in order
    return np.take_along_axis(labels, order, axis=1), np.take_along_axis(dists, order, axis=1)


@dataclass(frozen=True)
class Parallelism:
    """How one search may use the node's cores: `threads` in all, `pool` (a dedicated executor
    of that many threads, never the data pool) to search segments side by side.

    hnswlib releases the GIL inside `knn_query`, so threads search truly in parallel. A batch of
    at least `threads` queries is split by hnswlib itself (`num_threads`, balanced per query)
    segment after segment; fewer queries -- a single one above all -- search the segments in
    parallel, one thread each. Filtered searches call Python per candidate and stay sequential.
    The indexes and ef are the same either way, so are the answers."""

    threads: int = 1
    pool: Executor | None = None

    def plan(self, nq: int, segments: int, filtered: bool) -> tuple[bool, int]:
        """(search segments in the pool, hnswlib num_threads per knn_query)."""
        if self.threads <= 1 or filtered:
            return False, 1
        if nq >= self.threads or segments <= 1 or self.pool is None:
            return False, self.threads if nq > 1 else 1
        return True, 1


SEQUENTIAL = Parallelism()


SegmentAnswer = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class PreparedSearch:
    """A search checked against the schema and the serving segments, ready to run: the segment
    searches (`segment`, any thread, any order) and then `finish` (the merge)."""

    schema: CollectionSchema
    segments: list[LoadedSegment]
    req: SearchRequest
    anns: str
    bound: BoundFilter | None
    outputs: OutputPlan
    ef: int
    in_pool: bool  # search the segments side by side (else one after another)
    num_threads: int  # hnswlib threads per knn_query
    deadline: Deadline | None
    hidden: Hidden = field(default_factory=dict)  # rows of held segments deletes and upserts hide

    @classmethod
    def prepare(
        cls,
        schema: CollectionSchema,
        segments: list[LoadedSegment],
        req: SearchRequest,
        default_ef: int = DEFAULT_EF,
        deadline: Deadline | None = None,
        parallel: Parallelism = SEQUENTIAL,
        hidden: Hidden = NO_HIDDEN,
    ) -> PreparedSearch:
        anns = choose_anns_field(req.anns_field, schema, segments)
        field = schema.field(anns)
        assert field is not None
        dim = field.dim
        if req.vectors.shape[1] != dim:
            raise ApiError(
                400,
                "DimensionMismatch",
                f"query vectors have {req.vectors.shape[1]} dimensions; field {anns} has dim {dim}",
            )
        bound = bind_filter(req.filter, schema, segments, req.filter_limits)
        outputs = plan_outputs(req.output_fields, schema, segments)
        ef = req.ef if req.ef is not None else max(default_ef, req.top_k)
        in_pool, num_threads = parallel.plan(len(req.vectors), len(segments), bound is not None)
        return cls(schema, segments, req, anns, bound, outputs, ef, in_pool, num_threads, deadline, hidden)

    @property
    def light(self) -> bool:
        """No filter, no output fields: everything but `knn_query` is a few numpy calls."""
        return self.bound is None and not (self.outputs.names or self.outputs.star) and not self.hidden

    def segment(self, segment: LoadedSegment) -> SegmentAnswer:
        _check(self.deadline)
        mask = evaluate(self.bound.expr, segment) if self.bound is not None else None
        req = self.req
        vindex = segment.vectors[self.anns]
        hidden = self.hidden.get((segment.partition, segment.segment_id))
        if hidden is not None:
            count = int(hidden.sum())
            if mask is None and count <= OVERFETCH_HIDDEN_ROWS and req.top_k + count <= segment.rows:
                return overfetch_search(vindex, req, self.ef, segment.rows, hidden, count, self.num_threads)
            mask = ~hidden if mask is None else mask & ~hidden
        return segment_search(vindex, req.vectors, req.top_k, self.ef, segment.rows, mask, self.num_threads)

    def all_segments(self) -> list[SegmentAnswer]:
        return [self.segment(s) for s in self.segments]

    def finish(self, answers: list[SegmentAnswer]) -> HitColumns:
        req = self.req
        return _merge(
            self.schema, self.segments, self.outputs, req.top_k, len(req.vectors), answers, self.deadline
        )


def run_search(
    schema: CollectionSchema,
    segments: list[LoadedSegment],
    req: SearchRequest,
    default_ef: int = DEFAULT_EF,
    deadline: Deadline | None = None,
    parallel: Parallelism = SEQUENTIAL,
) -> HitColumns:
    """The whole search in the calling thread (a data worker), with the segments side by side in
    `parallel.pool` when the plan says so."""
    return run_prepared(
        PreparedSearch.prepare(schema, segments, req, default_ef, deadline, parallel), parallel
    )


def run_prepared(prepared: PreparedSearch, parallel: Parallelism = SEQUENTIAL) -> HitColumns:
    segments = prepared.segments
    if prepared.in_pool:
        assert parallel.pool is not None
        futures = [parallel.pool.submit(prepared.segment, segment) for segment in segments[1:]]
        try:
            answers = [prepared.segment(segments[0])] + [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()
    else:
        answers = prepared.all_segments()
    return prepared.finish(answers)


def _merge(
    schema: CollectionSchema,
    segments: list[LoadedSegment],
    outputs: OutputPlan,
    top_k: int,
    nq: int,
    answers: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]],
    deadline: Deadline | None,
) -> HitColumns:
    """Every segment's top-k candidates side by side, one row per query, then the one top-k rule
    (`vectorload.wire.hits`: closest first, equal distances by the primary key's text, each primary
    key once) in numpy. Python touches hits only to gather output fields."""
    partitions = tuple(dict.fromkeys(s.partition for s in segments))
    used = [
        (i, seg_labels, seg_dists) for i, (seg_labels, seg_dists) in enumerate(answers) if seg_labels.shape[1]
    ]
    if not used:
        empty = np.zeros(0, dtype=np.int64)
        return HitColumns(np.zeros(nq, np.int64), empty, np.zeros(0, np.float32), partitions, empty)
    # (nq, C): every segment's top-k side by side, segment after segment
    labels = np.hstack([seg_labels for _, seg_labels, _ in used])
    all_dists = np.hstack([seg_dists for _, _, seg_dists in used]).astype(np.float32)
    all_dists[~np.isfinite(all_dists)] = FLOAT32_MAX
    all_pks = np.hstack([segments[s_index].pks[seg_labels] for s_index, seg_labels, _ in used])
    column_owner = np.concatenate([np.full(seg_labels.shape[1], i, np.int64) for i, seg_labels, _ in used])
    kept, counts = top_k_rows(all_dists, all_pks, top_k)
    owner = column_owner[kept % labels.shape[1]]
    rows = labels.reshape(-1)[kept]
    all_dists, all_pks = all_dists.reshape(-1), all_pks.reshape(-1)
    number = {name: i for i, name in enumerate(partitions)}
    seg_partition = np.asarray([number[s.partition] for s in segments], dtype=np.int64)
    fields: list[dict[str, Any]] | None = None
    if outputs.names or outputs.star:
        fields = gather_fields(schema, segments, outputs, owner, rows, deadline)
    ids = all_pks[kept]
    return HitColumns(counts, ids, all_dists[kept], partitions, seg_partition[owner], fields)


# --------------------------------------------------------------------------------- query / get


def _row(schema: CollectionSchema, segment: LoadedSegment, row: int, outputs: OutputPlan) -> dict[str, Any]:
    out = {segment.pk_field: _json_value(segment.pks[row])}
    out.update(row_fields(schema, segment, row, outputs.for_segment(schema, segment)))
    return out


def run_query(
    schema: CollectionSchema,
    segments: list[LoadedSegment],
    req: QueryRequest,
    deadline: Deadline | None = None,
    hidden: Hidden = NO_HIDDEN,
) -> list[dict[str, Any]]:
    bound = bind_filter(req.filter, schema, segments, req.filter_limits)
    assert bound is not None
    outputs = plan_outputs(req.output_fields, schema, segments)
    rows: list[dict[str, Any]] = []
    for segment in segments:
        _check(deadline)
        matched = evaluate(bound.expr, segment)
        gone = hidden.get((segment.partition, segment.segment_id))
        if gone is not None:
            matched = matched & ~gone
        for row in np.flatnonzero(matched).tolist():
            if len(rows) % DEADLINE_CHECK_ROWS == 0:
                _check(deadline)
            rows.append(_row(schema, segment, row, outputs))
            if len(rows) >= req.limit:
                return rows
    return rows


def run_get(
    schema: CollectionSchema,
    segments: list[LoadedSegment],
    req: GetRequest,
    deadline: Deadline | None = None,
    hidden: Hidden = NO_HIDDEN,
) -> list[dict[str, Any]]:
    pk = schema.primary_key
    want_int = pk.type == "int64"
    for value in req.ids:
        if want_int != isinstance(value, int):
            raise ApiError(
                400,
                "InvalidRequest",
                f"primary key {echo(repr(value))} does not match {pk.name}'s type {pk.type}",
            )
        if want_int and not -(2**63) <= int(value) < 2**63:
            raise ApiError(400, "InvalidRequest", f"primary key {value} is out of the int64 range")
    outputs = plan_outputs(req.output_fields, schema, segments)
    found: dict[Any, dict[str, Any]] = {}
    wanted = np.asarray(req.ids, dtype=np.int64) if want_int else np.asarray(req.ids, dtype=object)
    for segment in segments:
        _check(deadline)
        if want_int:
            hits = np.flatnonzero(np.isin(segment.pks, wanted))
        else:
            ids = set(req.ids)
            hits = np.flatnonzero(
                np.fromiter((v in ids for v in segment.pks), dtype=bool, count=segment.rows)
            )
        gone = hidden.get((segment.partition, segment.segment_id))
        if gone is not None:
            hits = hits[~gone[hits]]
        for row in hits.tolist():
            key = _json_value(segment.pks[row])
            found.setdefault(key, _row(schema, segment, row, outputs))
    return [found[i] for i in dict.fromkeys(req.ids) if i in found]
