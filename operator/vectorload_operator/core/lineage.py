"""Compaction lineage of a target: what replaces a retired segment, and when a live segment's rows
are already served by copies of the segments it was compacted from.

Why (the swap Milvus does between its current and next target): when compaction merges A and B
into C, the catalog lists C as live and A, B as retired. A replica that holds A and B already
serves every row of C, so

- progress counts C as covered there while A and B are loaded (a load in progress when the
  compaction lands still reaches Loaded — milvus#39680 — and progress never drops for data that
  was already loaded);
- the planner loads C and releases A and B only once C is loaded in that replica, so searches
  never miss a row; the querynode resolves a key found in both to the newest row.

Chains (C and D compacted into E while A, B are still held) resolve transitively.

Pure: a `Lineage` is built from a `LoadTarget`; "is this copy in the replica" is a callback.
"""

from __future__ import annotations

from collections.abc import Callable

from vectorload_operator.core.model import LoadTarget, RetiredTargetSegment, SegmentRef, TargetSegment

HasCopy = Callable[[SegmentRef], bool]


class Lineage:
    def __init__(self, target: LoadTarget) -> None:
        self.target = target
        self.live: dict[SegmentRef, TargetSegment] = {target.ref(s): s for s in target.segments}
        self.retired: dict[SegmentRef, RetiredTargetSegment] = {target.ref(r): r for r in target.retired}

    def _ref(self, partition: str, segment_id: str) -> SegmentRef:
        return SegmentRef(self.target.collection, partition, segment_id)

    def sources(self, ref: SegmentRef) -> tuple[SegmentRef, ...]:
        """The segments `ref` was compacted from (() when it was not compacted)."""
        seg: TargetSegment | RetiredTargetSegment | None = self.live.get(ref) or self.retired.get(ref)
        if seg is None:
            return ()
        return tuple(self._ref(ref.partition, s) for s in seg.compacted_from)

    def replacements(self, ref: SegmentRef) -> frozenset[SegmentRef]:
        """The live segments holding the surviving rows of retired `ref`, through retired
        intermediates; empty when every row was deleted (or `ref` is not retired). A replacement
        the catalog no longer knows (garbage-collected) is not waited for."""
        out: set[SegmentRef] = set()
        todo, seen = [ref], {ref}
        while todo:
            current = todo.pop()
            retired = self.retired.get(current)
            if retired is None:
                continue
            for sid in retired.replaced_by:
                nxt = self._ref(current.partition, sid)
                if nxt in seen:
                    continue
                seen.add(nxt)
                if nxt in self.live:
                    out.add(nxt)
                else:
                    todo.append(nxt)
        return frozenset(out)

    def covered(self, ref: SegmentRef, has_copy: HasCopy) -> bool:
        """`ref`'s rows are served: a copy of it, or (compacted) every source is covered."""
        return self._covered(ref, has_copy, frozenset())

    def _covered(self, ref: SegmentRef, has_copy: HasCopy, path: frozenset[SegmentRef]) -> bool:
        if has_copy(ref):
            return True
        sources = self.sources(ref)
        if not sources or ref in path:
            return False
        inner = path | {ref}
        return all(self._covered(s, has_copy, inner) for s in sources)

    def uncovered_is_new(self, ref: SegmentRef, has_copy: HasCopy, loaded_generation: int) -> bool:
        """Every part of `ref` that is not served was published after `loaded_generation` (new
        data), as opposed to data that was loaded once and is missing now (a lost copy)."""
        return self._new(ref, has_copy, loaded_generation, frozenset())

    def _new(self, ref: SegmentRef, has_copy: HasCopy, generation: int, path: frozenset[SegmentRef]) -> bool:
        if has_copy(ref):
            return True
        seg: TargetSegment | RetiredTargetSegment | None = self.live.get(ref) or self.retired.get(ref)
        sources = self.sources(ref)
        if sources and ref not in path and all(s in self.live or s in self.retired for s in sources):
            inner = path | {ref}
            return all(self._new(s, has_copy, generation, inner) for s in sources)
        return seg is not None and seg.generation > generation
