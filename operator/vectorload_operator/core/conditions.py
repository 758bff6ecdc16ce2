"""loadState and metav1.Conditions (Ready, Progressing, Degraded) from what the core computed.

Every state a CollectionLoad can be in is decided here, including the ones without a target: being
released, a spec problem or a lost conflict (Failed), and waiting (no ready querynode of the pool
could read the collection's catalog yet, so there is nothing to plan; what was loaded stays).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vectorload_operator.core.conflicts import CONFLICT
from vectorload_operator.core.model import (
    LoadTarget,
    Problem,
    SegmentFailure,
    SpecProblem,
    TargetResult,
)
from vectorload_operator.core.progress import NewData, Progress

LoadState = Literal["NotLoad", "Loading", "Loaded", "Releasing", "Failed"]
NEW_DATA = "LoadingNewData"  # the reason while segments published after the load are loading
ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class LoadStatus:
    load_state: LoadState
    conditions: tuple[Condition, ...]

    def condition(self, type_: str) -> Condition:
        return next(c for c in self.conditions if c.type == type_)


def _status(state: LoadState, ready: Condition, progressing: Condition, degraded: Condition) -> LoadStatus:
    return LoadStatus(state, (ready, progressing, degraded))


def _progress_text(progress: Progress) -> str:
    parts = ", ".join(
        f"replica {r.id} {r.loaded_segments}/{r.total_segments} segments" for r in progress.replicas
    )
    ready = f"{progress.complete_replicas}/{progress.desired_replicas} replicas loaded"
    return f"{progress.percent}% loaded, {ready}" + (f" ({parts})" if parts else "")


def compute_state(
    target: TargetResult | None,
    progress: Progress | None,
    problems: Sequence[Problem] = (),
    failures: Sequence[SegmentFailure] = (),
    *,
    was_loaded: bool = False,
    releasing_segments: int = 0,
) -> LoadStatus:
    """loadState + conditions for one CollectionLoad.

    `target` None: the resource is being deleted (or wants nothing); `releasing_segments` is how
    many of its segments nodes still hold. A SpecProblem (or a `CollectionConflict` problem)
    gives Failed (what is loaded is kept).
    `was_loaded`: the resource reached Loaded in this generation; a loaded collection that loses
    a replica's copy but still has a serving replica stays Loaded (Milvus) and turns Degraded.
    `failures` is `Plan.failures[key]` (most recent first). When the only segments missing are
    new data (`progress.new_data`, published after the load), a loaded collection stays Loaded
    and Ready while they load, or turns Loading when they are large; never Degraded for them.
    """
    if target is None:
        if releasing_segments > 0:
            msg = f"releasing {releasing_segments} segment(s)"
            return _status(
                "Releasing",
                Condition("Ready", "False", "Releasing", msg),
                Condition("Progressing", "True", "Releasing", msg),
                Condition("Degraded", "False", "AsExpected", ""),
            )
        return _status(
            "NotLoad",
            Condition("Ready", "False", "NotLoaded", "nothing is loaded"),
            Condition("Progressing", "False", "NotLoaded", "nothing is loaded"),
            Condition("Degraded", "False", "AsExpected", ""),
        )
    if isinstance(target, SpecProblem):
        return _failed(target)
    return _target_status(target, progress, problems, failures, was_loaded)


def _failed(problem: Problem) -> LoadStatus:
    kept = f"{problem.message}; segments already loaded are kept"
    return _status(
        "Failed",
        Condition("Ready", "False", problem.reason, problem.message),
        Condition("Progressing", "False", problem.reason, problem.message),
        Condition("Degraded", "True", problem.reason, kept),
    )


def catalog_waiting(collection: str, ready_nodes: int, replicas: int) -> Problem:
    """The problem of a CollectionLoad whose catalog no ready querynode of its pool could read."""
    return Problem(
        "InsufficientNodes",
        f'no ready querynode to read the catalog of collection "{collection}" '
        f"[currentNodeNum={ready_nodes}][expectedNodeNum={replicas}]",
    )


def compute_waiting_state(waiting: Problem, *, was_loaded: bool = False) -> LoadStatus:
    """loadState + conditions while there is no target yet (see `catalog_waiting`).

    Nothing is planned, so nothing changes on the nodes: a resource that reached Loaded in this
    generation stays Loaded (and Degraded: it cannot be checked), any other stays NotLoad.
    """
    w = waiting
    return _status(
        "Loaded" if was_loaded else "NotLoad",
        Condition("Ready", "False", w.reason, w.message),
        Condition("Progressing", "False", w.reason, w.message),
        Condition("Degraded", "True" if was_loaded else "False", w.reason, w.message),
    )


def _target_status(
    target: LoadTarget,
    progress: Progress | None,
    problems: Sequence[Problem],
    failures: Sequence[SegmentFailure],
    was_loaded: bool,
) -> LoadStatus:
    conflict = next((p for p in problems if p.reason == CONFLICT), None)
    if conflict is not None:
        return _failed(conflict)  # the planner's conflict: the same state as the adapter's
    percent = progress.percent if progress is not None else 0
    text = _progress_text(progress) if progress is not None else "0% loaded"
    complete = percent == 100
    serving = progress is not None and progress.serving_replicas > 0
    new = progress.new_data if progress is not None else None
    if was_loaded and not complete and not problems and not failures and new and new.only_new:
        return _new_data_status(new)

    if complete:
        ready = Condition("Ready", "True", "Loaded", text)
        progressing = Condition("Progressing", "False", "Loaded", text)
    elif problems:
        ready = Condition("Ready", "False", problems[0].reason, problems[0].message)
        progressing = Condition("Progressing", "False", problems[0].reason, problems[0].message)
    else:
        reason = "Retrying" if failures else "Loading"
        ready = Condition("Ready", "False", "Loading", text)
        progressing = Condition("Progressing", "True", reason, text)

    if problems:
        degraded = Condition("Degraded", "True", problems[0].reason, problems[0].message)
    elif failures:
        f = failures[0]
        where = f"{f.segment.collection}/{f.segment.partition}/{f.segment.segment}"
        msg = f"loading segment {where} on node {f.node} failed ({f.attempts} attempt(s)): {f.message}"
        degraded = Condition("Degraded", "True", "SegmentLoadFailed", msg)
    elif was_loaded and not complete:
        degraded = Condition("Degraded", "True", "ReplicaIncomplete", text)
    else:
        degraded = Condition("Degraded", "False", "AsExpected", "")

    state: LoadState = "Loaded" if complete or (was_loaded and serving) else "Loading"
    return _status(state, ready, progressing, degraded)


def _new_data_status(new: NewData) -> LoadStatus:
    """A Loaded collection whose only missing segments are data published after it was loaded:
    what was loaded keeps serving; small new data keeps it Loaded (and Ready), large new data
    (`NewDataSettings`) makes it Loading until it is in."""
    msg = (
        f"loading {len(new.segments)} new segment(s) ({new.bytes} bytes) published after the "
        "collection was loaded; everything loaded before keeps serving"
    )
    degraded = Condition("Degraded", "False", "AsExpected", "")
    progressing = Condition("Progressing", "True", NEW_DATA, msg)
    if new.large:
        return _status("Loading", Condition("Ready", "False", NEW_DATA, msg), progressing, degraded)
    return _status("Loaded", Condition("Ready", "True", "Loaded", msg), progressing, degraded)


def merge_conditions(
    previous: Sequence[Mapping[str, Any]],
    new: Sequence[Condition],
    now: str,
    generation: int,
) -> list[dict[str, Any]]:
    """Conditions as status dicts; `lastTransitionTime` is kept while a condition's status holds."""
    old = {str(c.get("type")): c for c in previous}
    out: list[dict[str, Any]] = []
    for c in new:
        before = old.get(c.type)
        since = now
        if before is not None and before.get("status") == c.status and before.get("lastTransitionTime"):
            since = str(before["lastTransitionTime"])
        out.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }
        )
    return out
