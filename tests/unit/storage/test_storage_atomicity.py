"""A failed or killed writer never leaves a visible segment; stale staging is cleaned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vectorload.storage import writer as writer_module
from vectorload.storage.reader import FilesystemReader
from vectorload.storage.writer import STAGING_DIR, CollectionWriter

MakeInputs = Callable[..., dict[str, Any]]


def _staging(root: Path) -> list[Path]:
    base = root / "book" / STAGING_DIR
    return sorted(base.iterdir()) if base.exists() else []


def test_exception_mid_write_leaves_nothing(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path] = []

    def failing_write(path: Path, values: object) -> None:
        seen.append(path)
        raise OSError("disk full")

    monkeypatch.setattr(writer_module, "write_varchar", failing_write)
    with pytest.raises(OSError, match="disk full"):
        writer.write_segment("book", "_default", "s", **make_inputs(rows=5), num_threads=1)
    assert seen and seen[0].parent.parent == root / "book" / STAGING_DIR  # it did write in staging
    assert FilesystemReader(root).segments("book", "_default") == []
    assert not (root / "book" / "_default" / "s").exists()
    assert _staging(root) == []


def test_manifest_is_present_when_the_directory_is_published(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_rename: list[set[str]] = []
    real_rename = os.rename

    def spy(src: Any, dst: Any) -> None:
        at_rename.append({p.name for p in Path(src).iterdir()})
        real_rename(src, dst)

    monkeypatch.setattr(writer_module.os, "rename", spy)
    manifest = writer.write_segment("book", "_default", "s", **make_inputs(rows=5), num_threads=1)
    assert at_rename == [{"manifest.json", *(f.path for f in manifest.files.values())}]


KILL_SCRIPT = """
import os, signal, sys
import numpy as np
from vectorload.storage import writer as w
from vectorload_dev.testing.storage import segment_inputs
real = w.write_npy
def write_then_die(path, values):
    real(path, values)
    os.kill(os.getpid(), signal.SIGKILL)
w.write_npy = write_then_die
w.CollectionWriter({root!r}).write_segment("book", "_default", "s", **segment_inputs(rows=20), num_threads=1)
"""


def test_killed_writer_leaves_invisible_staging_that_is_cleaned(
    writer: CollectionWriter, root: Path, make_inputs: MakeInputs
) -> None:
    script = KILL_SCRIPT.format(root=str(root))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    (left,) = _staging(root)
    assert (left / "intro.hnsw").exists() and not (left / "manifest.json").exists()
    reader = FilesystemReader(root)
    assert reader.partitions("book") == ["_default"]
    assert reader.segments("book", "_default") == []
    assert writer.clean_staging("book") == 1
    assert _staging(root) == []
    manifest = writer.write_segment("book", "_default", "s", **make_inputs(rows=20), num_threads=1)
    assert reader.segments("book", "_default") == [manifest]


def _fake_staging(root: Path, name: str, pid: int | None, age: float) -> Path:
    path = root / "book" / STAGING_DIR / name
    path.mkdir(parents=True)
    (path / "intro.hnsw").write_bytes(b"x")
    if pid is not None:
        import socket

        (path / ".owner").write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_clean_staging_keeps_live_and_fresh_writers(writer: CollectionWriter, root: Path) -> None:
    live = _fake_staging(root, "live", os.getpid(), age=5)
    fresh = _fake_staging(root, "fresh", None, age=5)
    old_live = _fake_staging(root, "oldlive", os.getpid(), age=7200)
    old_orphan = _fake_staging(root, "orphan", None, age=120)
    assert CollectionWriter(root, stale_after=3600).clean_staging("book") == 2
    assert live.exists() and fresh.exists()
    assert not old_live.exists() and not old_orphan.exists()
