"""Name checks shared by the backend, reader and writer."""

from __future__ import annotations

from vectorload.storage.api import NAME_PATTERN, SEGMENT_ID_PATTERN, StorageError


def check_name(kind: str, value: object, reason: str = "InvalidName") -> str:
    """Return `value` if it is a valid collection/partition/field name, else raise StorageError."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise StorageError(reason, f"invalid {kind} name {value!r}: must match {NAME_PATTERN.pattern}")
    return value


def check_segment_id(value: object, reason: str = "InvalidName") -> str:
    if not isinstance(value, str) or not SEGMENT_ID_PATTERN.fullmatch(value):
        raise StorageError(reason, f"invalid segment id {value!r}: must match {SEGMENT_ID_PATTERN.pattern}")
    return value
