"""The image, built for real and run as its non-root user.

`images/build_image.py` builds images/Dockerfile with buildah from a Debian base made by
mmdebstrap (what `make image` runs; every layer cached, this takes seconds). The checks run
inside the built image with `buildah run` (chroot isolation, the image's own user, environment
and working directory; the host's network, so a server in it listens on the host's loopback):
the CLI's version and commands, that nothing but the locked dependencies and the product is
installed (no dev tooling, no test helper, no pip), and a querynode that loads the sample
collection — written by the image's own `vectorload sample` into a directory mounted from the
host — and answers a search over HTTP from the host.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vectorload.storage.sample import PARTITIONS, generate_segment, resolve_spec
from vectorload_dev.procutil import die_with_parent

REPO = Path(__file__).resolve().parents[2]
IMAGE_UID = 10001
# the product's import packages: the only top-level names its distribution may install
PRODUCT_PACKAGES = {"vectorload", "vectorload_operator", "vectorload_querynode", "vectorload_proxy"}
# what must not be importable in the image: dev tooling, test helpers, test and build tools
NOT_IN_IMAGE = (
    "vectorload.devcluster",
    "vectorload.e2e",
    "vectorload.demo",
    "vectorload_operator.testing",
    "vectorload_querynode.testing",
    "vectorload_dev",
    "devtools",
    "pytest",
    "_pytest",
    "hypothesis",
    "mypy",
    "ruff",
    "pip",
    "setuptools",
)
DEV_COMMANDS = ("cluster", "kubelet", "demo")
PRODUCT_COMMANDS = ("operator", "querynode", "proxy", "ingest", "sample", "search")

# a cold build (empty ~/.cache/vectorload/image) takes about 4 minutes, warm seconds
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "vectorload_build_image", REPO / "images" / "build_image.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Container:
    """A working container of the image; each `run` is one process in it."""

    argv: Callable[..., list[str]]  # buildah with the build's storage flags
    name: str

    def command(self, *argv: str, volumes: Sequence[tuple[Path, str]] = ()) -> list[str]:
        mounts = [f"--volume={host}:{inside}" for host, inside in volumes]
        return self.argv("run", "--isolation", "chroot", *mounts, self.name, "--", *argv)

    def run(
        self, *argv: str, volumes: Sequence[tuple[Path, str]] = (), timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*argv, volumes=volumes), capture_output=True, text=True, timeout=timeout, check=False
        )


@pytest.fixture(scope="module")
def build_image() -> ModuleType:
    return _build_module()


@pytest.fixture(scope="module")
def built(build_image: ModuleType) -> Any:
    try:
        return build_image.build(log=False)
    except build_image.BuildError as exc:
        pytest.fail(f"the image does not build: {exc}")


@pytest.fixture(scope="module")
def container(build_image: ModuleType, built: Any) -> Iterator[Container]:
    buildah = build_image.Buildah(built.driver)
    name = f"vectorload-image-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        buildah.argv("from", "--quiet", "--name", name, built.image), capture_output=True, check=True
    )
    try:
        yield Container(buildah.argv, name)
    finally:
        subprocess.run(buildah.argv("rm", name), capture_output=True, check=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A host directory the image's user may write, mounted at /data."""
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, IMAGE_UID, IMAGE_UID)
    return data


def test_version_is_the_projects(container: Container, build_image: ModuleType) -> None:
    proc = container.run("vectorload", "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == build_image.project_version()


def test_every_command_module_imports(container: Container) -> None:
    """The modules behind the CLI's commands import with the image's dependencies (kopf,
    kubernetes, hnswlib, numpy, aiohttp, prometheus_client) — `--help` alone imports none."""
    script = (
        "import importlib\n"
        "from vectorload.cli import SUBCOMMANDS\n"
        "for target, _ in SUBCOMMANDS.values():\n"
        "    module, _, func = target.partition(':')\n"
        "    assert callable(getattr(importlib.import_module(module), func)), target\n"
        "print(len(SUBCOMMANDS))\n"
    )
    proc = container.run("python", "-c", script)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= len(PRODUCT_COMMANDS)


def test_runs_as_the_non_root_user(container: Container, build_image: ModuleType, built: Any) -> None:
    proc = container.run("id", "-u")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(IMAGE_UID)
    user = subprocess.run(
        build_image.Buildah(built.driver).argv(
            "inspect", "--type", "image", "--format", "{{.Docker.Config.User}}", built.image
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    assert user.stdout.strip() == f"{IMAGE_UID}:{IMAGE_UID}"


def test_help_lists_the_product_commands_only(container: Container) -> None:
    proc = container.run("vectorload", "--help")
    assert proc.returncode == 0, proc.stderr
    commands = [line.split()[0] for line in proc.stdout.split("commands:", 1)[1].splitlines() if line.strip()]
    assert set(PRODUCT_COMMANDS) <= set(commands), proc.stdout
    assert not set(DEV_COMMANDS) & set(commands), f"dev commands in the image: {proc.stdout}"


INSPECT = """
import importlib.metadata as md, importlib.util, json, sys
def importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False
print(json.dumps({
    "dists": {d.metadata["Name"]: d.version for d in md.distributions()},
    "requires": {d.metadata["Name"]: d.requires or [] for d in md.distributions()},
    "files": [str(f) for f in md.distribution("vectorload").files],
    "importable": [m for m in sys.argv[1:] if importable(m)],
}))
"""


@pytest.fixture(scope="module")
def installed(container: Container) -> dict[str, Any]:
    proc = container.run("python", "-c", INSPECT, *NOT_IN_IMAGE)
    assert proc.returncode == 0, proc.stderr
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


def test_installed_are_the_locked_dependencies_and_the_product(
    installed: dict[str, Any], build_image: ModuleType
) -> None:
    versions = {canonicalize_name(name): version for name, version in installed["dists"].items()}
    lock = (REPO / "images" / "requirements.lock").read_text(encoding="utf-8")
    locked: dict[str, str] = {
        canonicalize_name(name): version.strip()
        for name, _, version in (line.split("#", 1)[0].strip().partition("==") for line in lock.splitlines())
        if name
    }
    assert versions == {**locked, "vectorload": build_image.project_version()}
    unmet = []
    for name, requires in installed["requires"].items():
        for req in map(Requirement, requires):
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            have = versions.get(canonicalize_name(req.name))
            if have is None or not req.specifier.contains(have, prereleases=True):
                unmet.append(f"{name} needs {req}, installed: {have}")
    assert unmet == [], f"the installed versions do not satisfy each other: {unmet}"


def test_no_dev_or_test_module_is_in_the_image(installed: dict[str, Any]) -> None:
    assert installed["importable"] == [], (
        f"dev/test modules importable in the image: {installed['importable']}"
    )
    files = [Path(f) for f in installed["files"]]
    top_level = {f.parts[0].removesuffix(".py") for f in files if not f.parts[0].endswith(".dist-info")}
    top_level -= {"..", "__pycache__"}  # the console script lands in ../../../bin
    assert top_level == PRODUCT_PACKAGES, top_level
    test_like = [f for f in files if f.name in {"testing.py", "conftest.py"} or "tests" in f.parts]
    assert test_like == [], test_like


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _http(port: int, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """One JSON request to the querynode on 127.0.0.1:port (GET without a body, else POST)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request("GET" if body is None else "POST", path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _poll(what: str, check: Callable[[], bool], timeout: float, alive: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive.poll() is not None:
            out, _ = alive.communicate()
            pytest.fail(f"the querynode in the image exited ({alive.returncode}) waiting for {what}:\n{out}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_querynode_in_the_image_loads_the_sample_and_answers_a_search(
    container: Container, data_dir: Path
) -> None:
    volumes = [(data_dir, "/data")]
    sample = container.run(
        "vectorload",
        "sample",
        "--root",
        "/data/collections",
        "--size",
        "tiny",
        "--no-progress",
        volumes=volumes,
    )
    assert sample.returncode == 0, sample.stdout + sample.stderr
    assert (data_dir / "collections" / "book" / "collection.json").stat().st_uid == IMAGE_UID

    token = secrets.token_hex(16)
    (data_dir / "token").write_text(token, encoding="utf-8")
    (data_dir / "token").chmod(0o644)
    port = _free_port()
    argv = container.command(
        "vectorload",
        "querynode",
        "--root",
        "/data/collections",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--token-file",
        "/data/token",
        "--node-name",
        "image-test",
        "--memory-limit",
        "1Gi",
        volumes=volumes,
    )
    # buildah passes SIGTERM on to the querynode; it gets one when this process dies, too
    node = subprocess.Popen(
        die_with_parent(argv, signal.SIGTERM),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _poll("/healthz", lambda: _http(port, "/healthz")[0] == 200, 60, node)
        status, catalog = _http(port, "/v1/catalog/book", token=token)
        assert status == 200, catalog
        expected = 0
        for partition in catalog["partitions"]:
            ids = [s["id"] for s in partition["segments"]]
            expected += len(ids)
            body = {"collection": "book", "partition": partition["name"], "segments": ids}
            status, answer = _http(port, "/v1/segments/load", body, token=token)
            assert status == 200, answer
            assert {r["state"] for r in answer["results"]} <= {"loading", "loaded"}, answer
        spec = resolve_spec("tiny")  # the layout `vectorload sample` writes by default
        assert expected == len(PARTITIONS) * spec.segments

        def all_loaded() -> bool:
            segments: list[dict[str, Any]] = _http(port, "/v1/distribution", token=token)[1]["segments"]
            loaded = [s for s in segments if s["state"] == "loaded"]
            return len(loaded) == expected

        _poll("every sample segment loaded", all_loaded, 120, node)

        # ground truth from the host's own generator: a stored row's vector finds that row
        segment = generate_segment(0, spec, 1, spec.segments - 1)
        row = 17
        query = segment.vectors["book_intro"][row]
        body = {"collection": "book", "vectors": [query.tolist()], "annsField": "book_intro", "topK": 3}
        status, answer = _http(port, "/v1/search", body, token=token)  # the data API is closed by default
        assert status == 200, answer
        (hits,) = answer["results"]
        assert len(hits) == 3
        assert hits[0]["id"] == int(segment.primary_keys[row])
        assert hits[0]["partition"] == PARTITIONS[1]
        assert hits[0]["distance"] == pytest.approx(0.0, abs=1e-4)
        assert np.all(np.diff([h["distance"] for h in hits]) >= 0)
    finally:
        node.terminate()
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    assert node.returncode is not None
