"""What ships: the product wheel holds the product only, and works from an installed wheel.

The wheel is built the way images/Dockerfile builds it (`pip wheel --no-deps
--no-build-isolation`, offline) from a copy of exactly the files the image's build context has,
so a stale `build/` directory of the checkout cannot hide or add anything. It is then installed
into a fresh venv that sees the development venv's third-party packages but not its editable
installs: `vectorload` there is the wheel's, and `vectorload_dev` does not exist.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "collectionload.yaml"
PRODUCT_ROOTS = ("src", "operator", "querynode", "proxy")
# module or package names of development and test tooling: none may appear in a shipped path
DEV_NAMES = {"vectorload_dev", "devcluster", "kubelet", "e2e", "demo", "testing", "procutil", "devtools"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for root in PRODUCT_ROOTS:
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / root, source / root, symlinks=True, ignore=skip)
    (source / "crds").mkdir()
    shutil.copy2(CRD, source / "crds" / CRD.name)  # the target of src/vectorload/collectionload.yaml
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("vectorload-*.whl")
    return built


def shipped(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return [n for n in zf.namelist() if ".dist-info/" not in n]


def test_the_wheel_holds_no_dev_or_test_module(wheel: Path) -> None:
    names = shipped(wheel)
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"vectorload", "vectorload_operator", "vectorload_querynode", "vectorload_proxy"}, tops
    offending = [n for n in names if DEV_NAMES & {Path(p).stem for p in n.split("/")}]
    assert offending == [], f"dev/test modules in the product wheel: {offending}"
    assert "vectorload_operator/core/planner.py" in names and "vectorload_querynode/node.py" in names
    assert "vectorload_proxy/grpc_service.py" in names


def test_the_wheel_carries_the_crd_and_one_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("vectorload/collectionload.yaml") == CRD.read_bytes()
        (entry_points,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points).decode()
    assert scripts.split() == ["[console_scripts]", "vectorload", "=", "vectorload.cli:main"]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed; third-party packages come from this venv's
    site-packages through a path entry (its .pth files, which hold the editable installs, are not
    read from there)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "dev-venv-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python),
         "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv


def run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=120, env=env, cwd=venv, check=False
    )


def test_the_installed_product_is_the_wheel_and_has_no_dev_package(installed: Path) -> None:
    python = str(installed / "bin" / "python")
    code = (
        "import vectorload, vectorload_operator.core, vectorload_proxy.grpc_service, "
        "vectorload_querynode.node as n; print(n.__file__)"
    )
    where = run(installed, python, "-c", code)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed)
    dev = ("vectorload_dev", "vectorload.devcluster", "vectorload.e2e", "vectorload_operator.testing")
    for module in dev:
        absent = run(installed, python, "-c", f"import {module}")
        assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, module


def test_the_installed_cli_lists_production_commands_only(installed: Path) -> None:
    cli = str(installed / "bin" / "vectorload")
    shown = run(installed, cli, "--help")
    assert shown.returncode == 0, shown.stderr
    listing = shown.stdout.split("commands:", 1)[1]
    commands = {line.split()[0] for line in listing.splitlines() if line.strip()}
    assert commands == {
        "operator",
        "querynode",
        "proxy",
        "ingest",
        "sample",
        "compact",
        "search",
        "load",
        "release",
        "load-state",
        "crd",
    }
    for dev in ("cluster", "kubelet", "demo"):
        refused = run(installed, cli, dev)
        assert refused.returncode == 2 and f"unknown command {dev!r}" in refused.stderr
    assert run(installed, cli, "--version").stdout.strip() == "0.1.0"


def test_vectorload_crd_prints_the_crd_from_the_installed_wheel(installed: Path) -> None:
    printed = run(installed, str(installed / "bin" / "vectorload"), "crd")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == CRD.read_text()
    helped = run(installed, str(installed / "bin" / "vectorload"), "crd", "--help")
    assert helped.returncode == 0 and "kubectl apply" in helped.stdout
    extra = run(installed, str(installed / "bin" / "vectorload"), "crd", "--bogus")
    assert extra.returncode == 2 and "unrecognized arguments: --bogus" in extra.stderr


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_no_product_module_imports_the_dev_package() -> None:
    offending = [
        f"{path.relative_to(REPO)}: {module}"
        for root in PRODUCT_ROOTS
        for path in sorted((REPO / root).rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] == "vectorload_dev"
    ]
    assert offending == []


def test_the_operator_package_never_names_the_querynode_package() -> None:
    """`grep -rn vectorload_querynode operator/` finds nothing: the operator talks to querynodes
    over HTTP only (through vectorload.client), never by importing their code."""
    offending = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "operator").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "vectorload_querynode" in line
    ]
    assert offending == []


def test_the_proxy_package_names_neither_the_operator_nor_the_querynode_package() -> None:
    """The proxy reaches the operator through CollectionLoads and the querynodes over HTTP
    (vectorload.client), never by importing their code."""
    offending = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "proxy").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "vectorload_querynode" in line or "vectorload_operator" in line
    ]
    assert offending == []
