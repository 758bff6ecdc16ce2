"""The one RFC 3339 formatter of the product: the operator's Kubernetes timestamps and the proxy's
Milvus answers (`completeTime` of an import job) write time the same way."""

from __future__ import annotations

import datetime as dt


def rfc3339(wall: float) -> str:
    """Unix seconds as Kubernetes writes `metav1.Time`: UTC, whole seconds, `Z` (2026-01-01T00:00:00Z)."""
    return dt.datetime.fromtimestamp(wall, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
