"""JSON shapes of the querynode API (see DEVELOPERS.md)."""

from __future__ import annotations

from typing import Any, TypedDict


class Hit(TypedDict):
    id: Any
    distance: float
    partition: str
    fields: dict[str, Any]


class LoadResult(TypedDict):
    segment: str
    state: str  # loading | loaded | refused
    reason: str
    message: str


class Capacity(TypedDict):
    memoryLimitBytes: int
    usedBytes: int
    reservedBytes: int
    threshold: float


class SegmentState(TypedDict, total=False):
    collection: str
    partition: str
    segment: str
    state: str  # loading | loaded | failed
    reason: str
    message: str
    bytes: int
    rows: int
    fields: list[str]
    dynamicField: bool
    reloading: dict[str, Any]


class Distribution(TypedDict):
    node: str
    bootId: str
    capacity: Capacity
    segments: list[SegmentState]


class SegmentSummary(TypedDict):
    id: str
    rows: int
    bytes: dict[str, int]
    totalBytes: int


class PartitionCatalog(TypedDict):
    name: str
    segments: list[SegmentSummary]


class CollectionCatalog(TypedDict):
    name: str
    schema: dict[str, Any]
    partitions: list[PartitionCatalog]
