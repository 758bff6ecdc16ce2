"""images/build_image.py without building: the apt mirrors it takes from the host, the cache key of
the base, the buildah command line, and which images pruning removes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bi() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "vectorload_build_image", REPO / "images" / "build_image.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""

THIRD_PARTY = """\
Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
"""


def test_mirrors_from_deb822_sources(bi: Any) -> None:
    mirrors = bi.apt_mirrors([("nodesource.sources", THIRD_PARTY), ("debian.sources", DEB822)])
    assert mirrors == bi.Mirrors("http://mirror.example/debian", "http://mirror.example/debian-security")


def test_mirrors_from_one_line_sources(bi: Any) -> None:
    text = (
        "# a comment\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n"
        "deb http://sec.example/debian-security bookworm-security main\n"
        "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
    )
    mirrors = bi.apt_mirrors([("sources.list", text)])
    assert mirrors == bi.Mirrors("http://one.example/debian", "http://sec.example/debian-security")


def test_disabled_and_foreign_sources_fall_back_to_deb_debian_org(bi: Any) -> None:
    disabled = DEB822.replace("Types: deb\n", "Types: deb\nEnabled: no\n")
    ubuntu = "deb http://archive.ubuntu.com/ubuntu jammy main\n"
    mirrors = bi.apt_mirrors(
        [("debian.sources", disabled), ("sources.list", ubuntu), ("x.sources", THIRD_PARTY)]
    )
    assert mirrors == bi.Mirrors(bi.DEFAULT_DEBIAN, bi.DEFAULT_SECURITY)


def test_host_sources_are_the_files_apt_reads(bi: Any, tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://a.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "old.list.disabled-by-farm").write_text(
        "deb http://no.example/debian sid main\n"
    )
    names = [name for name, _ in bi.host_apt_sources(tmp_path)]
    assert names == ["sources.list", "debian.sources"]
    assert bi.apt_mirrors(bi.host_apt_sources(tmp_path)).debian == "http://a.example/debian"


def test_base_key_follows_every_input(bi: Any) -> None:
    mirrors = bi.Mirrors("http://m.example/debian", "http://m.example/debian-security")
    spec = bi.BaseSpec(mirrors=mirrors)
    assert spec.key() == bi.BaseSpec(mirrors=mirrors).key()
    changed = [
        bi.BaseSpec(mirrors=bi.Mirrors("http://other.example/debian", mirrors.security)),
        bi.BaseSpec(mirrors=mirrors, suite="trixie"),
        bi.BaseSpec(mirrors=mirrors, arch="arm64"),
        bi.BaseSpec(mirrors=mirrors, packages=(*spec.packages, "curl")),
        bi.BaseSpec(mirrors=mirrors, dpkg_filters=spec.dpkg_filters[:-1]),
    ]
    keys = {spec.key(), *(c.key() for c in changed)}
    assert len(keys) == len(changed) + 1
    assert spec.image() == f"localhost/vectorload-base:bookworm-{spec.key()}"


def test_mmdebstrap_command_line(bi: Any, tmp_path: Path) -> None:
    spec = bi.BaseSpec(mirrors=bi.Mirrors("http://m.example/debian", "http://s.example/debian-security"))
    argv = spec.mmdebstrap_argv(tmp_path / "base.tar")
    assert argv[0] == "mmdebstrap"
    assert argv[-5:] == [
        "bookworm",
        str(tmp_path / "base.tar"),
        "deb http://m.example/debian bookworm main",
        "deb http://m.example/debian bookworm-updates main",
        "deb http://s.example/debian-security bookworm-security main",
    ]
    include = next(a for a in argv if a.startswith("--include="))
    # what the Dockerfile needs of its base: `python -m venv` with pip, Python.h for hnswlib
    for package in ("python3", "python3-venv", "python-is-python3", "python3.11-dev"):
        assert package in include.removeprefix("--include=").split(",")
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv


def test_bud_command_line(bi: Any, tmp_path: Path) -> None:
    buildah = bi.Buildah("vfs", tmp_path)
    bundle = tmp_path / "ca.crt"
    argv = bi.bud_argv(buildah, "localhost/base:1", "localhost/x:1", REPO, bundle)
    assert argv[:7] == [
        "buildah",
        "--root",
        str(tmp_path / "containers-vfs"),
        "--runroot",
        argv[4],
        "--storage-driver",
        "vfs",
    ]
    assert "--layers" in argv and argv[argv.index("--isolation") + 1] == "chroot"
    assert argv[argv.index("--format") + 1] == "docker"
    assert argv[argv.index("--build-arg") + 1] == "PYTHON_IMAGE=localhost/base:1"
    assert argv[argv.index("--ignorefile") + 1] == str(REPO / "images" / "Dockerfile.dockerignore")
    assert "--volume" not in argv, "no CA bundle on the host: nothing mounted"
    assert argv[-1] == str(REPO)
    bundle.write_text("certificates")
    argv = bi.bud_argv(buildah, "localhost/base:1", "localhost/x:1", REPO, bundle, target="build")
    assert argv[argv.index("--volume") + 1] == f"{bundle}:/etc/ssl/certs/ca-certificates.crt:ro"
    assert argv[argv.index("--target") + 1] == "build"


def test_build_stage_tag(bi: Any) -> None:
    assert (
        bi.build_stage_tag("localhost/vectorload/vectorload:0.1.0")
        == "localhost/vectorload/vectorload-build:0.1.0"
    )
    assert bi.default_tag(REPO) == f"localhost/vectorload/vectorload:{bi.project_version(REPO)}"


def test_prune_keeps_what_named_images_build_on(bi: Any) -> None:
    base = "localhost/vectorload-base:bookworm-new"
    parents = {
        "final": "f2",
        "f2": "f1",
        "f1": "base",
        "stage": "s1",
        "s1": "base",
        "old-final": "old-f1",
        "old-f1": "base",
        "old-base-child": "old-base",
        "mine": "old-base-mine",
    }
    images = [
        bi.StoredImage("base", (base,)),
        bi.StoredImage("final", ("localhost/vectorload/vectorload:0.1.0",)),
        bi.StoredImage("stage", ("localhost/vectorload/vectorload-build:0.1.0",)),
        bi.StoredImage("mine", ("localhost/me/mine:dev",)),
        bi.StoredImage("old-base", ("localhost/vectorload-base:bookworm-old",)),
        bi.StoredImage("old-base-mine", ("localhost/vectorload-base:bookworm-older",)),
        *(bi.StoredImage(i, ()) for i in ("f2", "f1", "s1", "old-final", "old-f1", "old-base-child")),
    ]
    doomed = bi.prunable(images, base, parents.get)
    assert sorted(doomed) == ["old-base", "old-base-child", "old-f1", "old-final"]


def test_missing_tools_are_named(bi: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(bi.BuildError, match=r"mmdebstrap, buildah not installed: apt-get install"):
        bi.require_tools("mmdebstrap", "buildah")


def _context(tmp_path: Path, ignore: str) -> tuple[Path, Path]:
    (tmp_path / "src" / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (tmp_path / "src" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    ignorefile = tmp_path / "Dockerfile.dockerignore"
    ignorefile.write_text(ignore)
    return tmp_path, ignorefile


def test_context_files_follow_the_allow_list(bi: Any, tmp_path: Path) -> None:
    repo, ignorefile = _context(
        tmp_path, "# allow-list\n**\n!pyproject.toml\n!src/\n!missing.txt\n**/__pycache__\n"
    )
    assert bi.context_files(repo, ignorefile) == [Path("pyproject.toml"), Path("src/pkg/mod.py")]


@pytest.mark.parametrize("ignore", ["!src/\n", "**\n!src/*.py\n", "**\nsrc/\n", "**\n**/a/b\n"])
def test_context_files_refuse_patterns_they_do_not_understand(bi: Any, tmp_path: Path, ignore: str) -> None:
    repo, ignorefile = _context(tmp_path, ignore)
    with pytest.raises(bi.BuildError, match=r"Dockerfile\.dockerignore"):
        bi.context_files(repo, ignorefile)


def test_the_repositorys_context_is_the_product_and_the_locks(bi: Any) -> None:
    files = {str(f) for f in bi.context_files()}
    assert {"pyproject.toml", "README.md", "images/requirements.lock", "src/vectorload/cli.py"} <= files
    assert not {
        f for f in files if f.startswith(("tests/", ".venv/", "helm/", "bench/")) or "__pycache__" in f
    }


def test_inputs_key_follows_the_context_only(bi: Any, tmp_path: Path) -> None:
    repo, ignorefile = _context(tmp_path, "**\n!pyproject.toml\n!src/\n**/__pycache__\n")
    (repo / "images").mkdir()
    for name in ("Dockerfile", "Dockerfile.dockerignore"):
        (repo / "images" / name).write_text(ignorefile.read_text())

    def key(base: str = "localhost/base:1") -> str:
        return str(bi.inputs_key(base, repo))

    first = key()
    (repo / "tests" / "test_x.py").write_text("changed")
    (repo / "src" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"changed")
    assert key() == first
    assert key("localhost/base:2") != first
    (repo / "src" / "pkg" / "mod.py").write_text("x = 2\n")
    assert key() != first


def test_build_record_round_trip(bi: Any, tmp_path: Path) -> None:
    record = bi.Record("localhost/x:1", "abc", "0123")
    record.save(tmp_path)
    assert bi.Record.load(tmp_path, "localhost/x:1") == record
    assert bi.Record.load(tmp_path, "localhost/y:1") is None
    bi.Record.path(tmp_path, "localhost/x:1").write_text("{not json")
    assert bi.Record.load(tmp_path, "localhost/x:1") is None
