"""The internal gRPC socket's directory: private, and short enough for a Unix socket path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vectorload_proxy.server import MAX_SOCKET_PATH, SOCKET_NAME, socket_dir


def test_a_short_temporary_directory_is_used_as_is(tmp_path: Path) -> None:
    made = socket_dir((str(tmp_path),))
    assert made.parent == tmp_path
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


def test_a_deep_temporary_directory_falls_back_to_a_short_one(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    short = tmp_path / "s"
    short.mkdir()
    if len(os.fsencode(short)) + len("/vlproxy-xxxxxxxx/") + len(SOCKET_NAME) > MAX_SOCKET_PATH:
        pytest.skip("pytest's base temporary directory is itself too deep for this test")
    made = socket_dir((str(deep), str(short)))
    assert made.parent == short
    assert len(os.fsencode(made / SOCKET_NAME)) <= MAX_SOCKET_PATH
    assert list(deep.iterdir()) == []  # the too-deep attempt is cleaned up


def test_no_usable_directory_names_every_candidate(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    missing = tmp_path / "missing"
    with pytest.raises(RuntimeError) as err:
        socket_dir((str(deep), str(missing)))
    assert "too deep" in str(err.value) and str(missing) in str(err.value)
