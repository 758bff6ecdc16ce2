"""Does a copy a querynode holds match what a target wants? (fields and the dynamic field)

Why a module of its own: the planner (what to load or reload) and the observers (what counts as
loaded in progress) answer the same question; both import it from here, so no observer depends on
the planner.
"""

from __future__ import annotations

from vectorload_operator.core.model import HeldSegment, LoadTarget, SegmentState


def copy_matches(target: LoadTarget, held: HeldSegment) -> bool:
    """A held copy has the target's field set (and dynamic-field choice)."""
    if held.fields is not None and held.fields != target.loaded_fields:
        return False
    return not (target.has_dynamic_field and held.dynamic != target.dynamic)


def reload_matches(target: LoadTarget, held: HeldSegment) -> bool:
    """The node is already reloading this copy with the target's field set."""
    r = held.reloading
    return r is not None and copy_matches(target, HeldSegment(SegmentState.LOADED, r.fields, r.dynamic))
