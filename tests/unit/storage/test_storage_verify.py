"""verify_file detects missing, truncated and corrupted segment files."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vectorload.storage.api import SegmentManifest, StorageError
from vectorload.storage.reader import FilesystemReader, segment_file_rel_path, verify_file
from vectorload.storage.writer import CollectionWriter

MakeInputs = Callable[..., dict[str, Any]]


@pytest.fixture
def segment(writer: CollectionWriter, make_inputs: MakeInputs) -> SegmentManifest:
    return writer.write_segment("book", "_default", "s", **make_inputs(rows=30), num_threads=1)


def _check(root: Path, manifest: SegmentManifest, field: str) -> StorageError:
    reader = FilesystemReader(root)
    with pytest.raises(StorageError) as err:
        verify_file(reader.backend, segment_file_rel_path(manifest, field), manifest.files[field])
    assert manifest.files[field].path in err.value.message
    return err.value


def test_intact_files_verify(root: Path, segment: SegmentManifest) -> None:
    FilesystemReader(root).verify_segment(segment)


def test_corrupted_byte(root: Path, segment: SegmentManifest) -> None:
    path = FilesystemReader(root).segment_file_path(segment, "intro")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert _check(root, segment, "intro").reason == "ChecksumMismatch"


def test_truncated_file(root: Path, segment: SegmentManifest) -> None:
    path = FilesystemReader(root).segment_file_path(segment, "title")
    path.write_bytes(path.read_bytes()[:-3])
    err = _check(root, segment, "title")
    assert err.reason == "SizeMismatch" and str(segment.files["title"].bytes) in err.message


def test_missing_file(root: Path, segment: SegmentManifest) -> None:
    FilesystemReader(root).segment_file_path(segment, "$meta").unlink()
    assert _check(root, segment, "$meta").reason == "FileMissing"


def test_wrong_expected_checksum(root: Path, segment: SegmentManifest) -> None:
    wrong = dataclasses.replace(segment.files["cover"], sha256="0" * 64)
    bad = dataclasses.replace(segment, files={**segment.files, "cover": wrong})
    assert _check(root, bad, "cover").reason == "ChecksumMismatch"


def test_streams_large_files_in_chunks(
    root: Path, segment: SegmentManifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files bigger than one 1 MiB chunk hash the same as hashlib over the whole file."""
    path = FilesystemReader(root).segment_file_path(segment, "intro")
    blob = (b"0123456789abcdef" * (1 << 17)) + b"tail"  # 2 MiB + 4 bytes
    path.write_bytes(blob)
    expected = dataclasses.replace(
        segment.files["intro"], bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest()
    )
    reader = FilesystemReader(root)
    verify_file(reader.backend, segment_file_rel_path(segment, "intro"), expected)
