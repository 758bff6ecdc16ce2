"""images/: the Dockerfile (hadolint, non-root, multi-stage without build tools in the final stage,
pinned base) and the dependency lock it installs."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from vectorload_dev.testing.chart import REPO

IMAGES = REPO / "images"
DOCKERFILE = IMAGES / "Dockerfile"


@pytest.fixture(scope="module")
def make_lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_lock", IMAGES / "make_lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def stages() -> list[list[tuple[str, str]]]:
    """Dockerfile instructions (KEYWORD, arguments) per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            result.append([])
        result[-1].append((keyword.upper(), " ".join(args.split())))
    return result


def test_hadolint() -> None:
    binary = hadolint()
    if binary is None:
        pytest.fail("hadolint is not installed: it is a dependency of vectorload-dev (make venv)")
    proc = subprocess.run(
        [binary, "--failure-threshold", "style", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_is_pinned_python_311_slim() -> None:
    (preamble, *_) = stages()
    (arg,) = [a for k, a in preamble if k == "ARG"]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-[a-z]+", arg), arg
    froms = [a for stage in stages()[1:] for k, a in stage if k == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]


def test_final_stage_is_non_root_and_has_no_build_tools() -> None:
    final = stages()[-1]
    keywords = [k for k, _ in final]
    assert ("USER", "10001:10001") in final
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k in {"RUN", "COPY"})
    runs = " ".join(a for k, a in final if k == "RUN")
    assert "apt-get install" not in runs and "pip" not in runs
    assert "useradd --system --uid 10001 --gid 10001" in runs
    copies = [a for k, a in final if k == "COPY"]
    assert copies == ["--from=build /opt/vectorload /opt/vectorload"]
    assert ("ENTRYPOINT", '["vectorload"]') in final
    build = " ".join(a for k, a in stages()[1] if k == "RUN")
    assert "--without-pip /opt/vectorload" in build, "the runtime venv carries no pip/setuptools"
    assert "--no-deps" in build and "requirements.lock" in build
    env = " ".join(a for k, a in stages()[1] if k == "ENV")
    assert "HNSWLIB_NO_NATIVE=1" in env, "hnswlib must not be compiled for the build machine's CPU only"


def test_every_pip_and_apt_install_is_pinned() -> None:
    build = " ".join(a for k, a in stages()[1] if k == "RUN")
    for package in re.findall(r"apt-get install [^&]*", build):
        names = [w for w in package.split()[2:] if not w.startswith("-")]
        assert names and all("=" in n for n in names), package
    for line in (IMAGES / "build-requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^ ]*", line.strip()), line


def test_lock_pins_exact_versions(make_lock: Any) -> None:
    locked = make_lock.read_lock((IMAGES / "requirements.lock").read_text())
    assert len(locked) >= 20
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in locked.values())
    with pytest.raises(ValueError, match="exact pin"):
        make_lock.read_lock("numpy>=2\n")


def test_lock_satisfies_the_project_dependencies(make_lock: Any) -> None:
    """Every `dependencies` entry of pyproject.toml is locked, at a version it accepts."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    locked = make_lock.read_lock((IMAGES / "requirements.lock").read_text())
    for text in project["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is a dependency but not in images/requirements.lock"
        assert req.specifier.contains(Version(locked[name]), prereleases=True), (
            f"{name}=={locked[name]} vs {req}"
        )


def test_lock_is_closed_under_the_locked_versions_requirements(make_lock: Any) -> None:
    """For each locked package installed here at the locked version, its own requirements are
    locked at versions it accepts (so `pip install --no-deps -r requirements.lock` is complete)."""
    locked = make_lock.read_lock((IMAGES / "requirements.lock").read_text())
    checked = 0
    missing = []
    for name, version in locked.items():
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        if dist.version != version:
            continue  # this environment drifted from the lock: its metadata says nothing about it
        checked += 1
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in locked:
                missing.append(f"{name} needs {req}, not locked")
            elif not req.specifier.contains(Version(locked[dep]), prereleases=True):
                missing.append(f"{name} needs {req}, locked {dep}=={locked[dep]}")
    assert checked > 0, "no locked version is installed here: regenerate with images/make_lock.py"
    assert not missing, missing


def test_lock_problems_are_reported(make_lock: Any) -> None:
    pins = make_lock.resolve()
    locked = {pin.name: pin.version for pin in pins.values()}
    assert make_lock.problems(pins, locked) == []
    numpy = canonicalize_name("numpy")
    assert any("does not satisfy" in p for p in make_lock.problems(pins, {**locked, numpy: "1.0"}))
    del locked[numpy]
    assert any(p.startswith("numpy (required by") for p in make_lock.problems(pins, locked))
