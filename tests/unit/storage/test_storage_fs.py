from __future__ import annotations

from pathlib import Path

import pytest

from vectorload.storage.api import StorageError
from vectorload.storage.fs import FilesystemBackend


@pytest.fixture
def backend(tmp_path: Path) -> FilesystemBackend:
    (tmp_path / "root" / "c").mkdir(parents=True)
    (tmp_path / "root" / "c" / "f.bin").write_bytes(b"hello")
    (tmp_path / "secret").write_bytes(b"outside")
    return FilesystemBackend(tmp_path / "root")


@pytest.mark.parametrize("bad", ["../secret", "c/../../secret", "/etc/passwd", "c/f\x00.bin", "c\\f.bin"])
def test_rejects_paths_escaping_the_root(backend: FilesystemBackend, bad: str) -> None:
    for call in (backend.exists, backend.read_bytes, backend.local_path, backend.list_dir):
        with pytest.raises(StorageError) as err:
            call(bad)
        assert err.value.reason == "InvalidName"


def test_rejects_symlink_escape(backend: FilesystemBackend, tmp_path: Path) -> None:
    (backend.root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(StorageError) as err:
        backend.read_bytes("link")
    assert err.value.reason == "InvalidName"


def test_reads_lists_and_maps_paths(backend: FilesystemBackend) -> None:
    assert backend.exists("c/f.bin") and not backend.exists("c/nope")
    assert backend.list_dir("") == ["c"]
    assert backend.list_dir("c") == ["f.bin"]
    assert backend.read_bytes("c/f.bin") == b"hello"
    with backend.open("c/f.bin") as fh:
        assert fh.read(2) == b"he"
    assert backend.local_path("c/f.bin") == backend.root / "c" / "f.bin"


def test_missing_entries_raise_storage_errors(backend: FilesystemBackend) -> None:
    with pytest.raises(StorageError) as err:
        backend.read_bytes("c/missing.bin")
    assert err.value.reason == "FileMissing" and "missing.bin" in err.value.message
    with pytest.raises(StorageError) as err:
        backend.list_dir("c/f.bin")
    assert err.value.reason == "NotFound"
