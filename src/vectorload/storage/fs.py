"""The local-filesystem `StorageBackend`: every path is relative to a root it cannot escape."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import BinaryIO

from vectorload.storage.api import StorageError


class FilesystemBackend:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def resolve(self, rel_path: str) -> Path:
        """Map a '/'-separated relative path to a path under the root.

        Rejects NUL bytes, absolute paths, backslashes, `..` components and paths that leave the
        root through a symlink, with StorageError('InvalidName').
        """
        if not isinstance(rel_path, str) or "\x00" in rel_path or "\\" in rel_path:
            raise StorageError("InvalidName", f"invalid storage path {rel_path!r}")
        pure = PurePosixPath(rel_path)
        if pure.is_absolute() or any(part == ".." for part in pure.parts):
            raise StorageError("InvalidName", f"storage path {rel_path!r} escapes the storage root")
        path = self.root.joinpath(*pure.parts) if pure.parts else self.root
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise StorageError("InvalidName", f"storage path {rel_path!r} escapes the storage root")
        return path

    def exists(self, rel_path: str) -> bool:
        return self.resolve(rel_path).exists()

    def is_dir(self, rel_path: str) -> bool:
        return self.resolve(rel_path).is_dir()

    def list_dir(self, rel_path: str) -> list[str]:
        """Sorted entry names; StorageError('NotFound') if `rel_path` is not a directory."""
        path = self.resolve(rel_path)
        try:
            return sorted(entry.name for entry in path.iterdir())
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise StorageError("NotFound", f"no directory {rel_path!r} in {self.root}") from exc

    def read_bytes(self, rel_path: str) -> bytes:
        with self.open(rel_path) as fh:
            return fh.read()

    def open(self, rel_path: str) -> BinaryIO:
        path = self.resolve(rel_path)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise StorageError("FileMissing", f"file {rel_path!r} is missing in {self.root}") from exc

    def mtime_ns(self, rel_path: str) -> int:
        """Modification time of a file or directory in ns (0 when it does not exist)."""
        try:
            return self.resolve(rel_path).stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def local_path(self, rel_path: str) -> Path:
        return self.resolve(rel_path)
