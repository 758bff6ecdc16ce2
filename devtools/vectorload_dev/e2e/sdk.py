"""Build and run the SDK programs of `tests/sdk/` (Java, Node.js, Go) with their dependencies
cached under `~/.cache/vectorload/sdk/` (`$VECTORLOAD_SDK_CACHE`), keyed by their lock files.

Why a cache keyed by lock files: the dependencies come from Maven Central, npm and the Go module
proxy, a minute or more each on a cold machine; with the lock files unchanged a warm run touches
no registry at all. What keys what:

* Node.js: `package.json` + `package-lock.json` → a directory where `npm ci` ran once; the
  program (`seed.mjs`) is copied in before each run, so editing it costs nothing.
* Go: `go.sum` keys nothing by itself — `GOMODCACHE` and `GOCACHE` live in the cache, so `go
  build` is incremental; the binary is named by the hash of `go.mod`, `go.sum` and the sources.
* Java: the pinned `pom.xml` → a Maven repository (`-Dmaven.repo.local`) and the resolved
  classpath; the sources are compiled with `javac` into a directory named by their hash (Maven is
  run only to resolve, which is what costs time).

Concurrent test runs share the cache: every preparation holds an exclusive `flock` on the cache.
A program runs with a minimal environment plus what the caller passes (endpoint, token, query
vector), optionally inside another network namespace (`netns_pid`: `nsenter -t PID -n`), which is
how the programs reach a real Milvus kept in a private namespace (bench/milvus_env.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vectorload_dev.checkout import repo_root

SDK_DIR = repo_root() / "tests" / "sdk"
JAVA_MAIN = {"v2": "io.vectorload.sdktest.SeedV2", "v1": "io.vectorload.sdktest.SeedV1"}
GO_MODULES = ("milvusclient", "sdkgo")


class SdkError(RuntimeError):
    """A toolchain step failed (with its output)."""


def cache_root() -> Path:
    default = Path.home() / ".cache" / "vectorload" / "sdk"
    return Path(os.environ.get("VECTORLOAD_SDK_CACHE", default))


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 900) -> str:
    proc = subprocess.run(
        list(argv),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise SdkError(
            f"{' '.join(argv)} (in {cwd}) failed ({proc.returncode}):\n"
            f"{proc.stderr[-4000:]}{proc.stdout[-2000:]}"
        )
    return proc.stdout


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SdkError(f"{name} is not installed (.ci/run installs the SDK toolchains)")
    return path


@dataclass(frozen=True)
class Program:
    """One ready-to-run SDK program."""

    name: str
    argv: tuple[str, ...]
    cwd: Path

    def run(
        self, env: Mapping[str, str], *, netns_pid: int | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "JAVA_HOME") if k in os.environ}
        argv = list(self.argv)
        if netns_pid is not None:
            argv = [_tool("nsenter"), "-t", str(netns_pid), "-n", "--", *argv]
        return subprocess.run(
            argv,
            cwd=self.cwd,
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@dataclass(frozen=True)
class Endpoint:
    """A Milvus API endpoint the programs (and curl) talk to."""

    backend: str
    address: str  # host:port of gRPC + REST v2 (Milvus' 19530)
    http_uri: str  # REST v1 port (Milvus' 9091)
    token: str
    netns_pid: int | None  # run clients inside this process's network namespace
    rest_v2: bool  # serves REST v2 (Milvus 2.4 and later, the proxy)

    @property
    def uri(self) -> str:
        return f"http://{self.address}"

    def env(self, query: list[float]) -> dict[str, str]:
        """The programs' environment: the endpoint, the token and the search vector."""
        env = {
            "MILVUS_URI": self.uri,
            "MILVUS_ADDRESS": self.address,
            "MILVUS_TOKEN": self.token,
            "QUERY_VECTOR": ",".join(repr(x) for x in query),
        }
        if not self.rest_v2:
            env["SKIP_REST_V2"] = "1"  # the Node program reads the load_fields state through REST v2
        return env


# ---------------------------------------------------------------------------------------- Node.js
def prepare_node(cache: Path | None = None) -> Program:
    cache = cache or cache_root()
    src = SDK_DIR / "node"
    with locked(cache):
        work = cache / "node" / digest(src / "package.json", src / "package-lock.json")
        stamp = work / ".npm-ci-done"
        if not stamp.exists():
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True)
            for name in ("package.json", "package-lock.json", ".npmrc"):
                shutil.copy2(src / name, work / name)
            _run(
                [_tool("npm"), "ci", "--no-audit", "--no-fund"],
                work,
                {"npm_config_cache": str(cache / "npm")},
            )
            stamp.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        shutil.copy2(src / "seed.mjs", work / "seed.mjs")
    return Program("node", (_tool("node"), "seed.mjs"), work)


# --------------------------------------------------------------------------------------------- Go
def go_env(cache: Path) -> dict[str, str]:
    return {
        "GOMODCACHE": str(cache / "go" / "mod"),
        "GOCACHE": str(cache / "go" / "build"),
        "GOFLAGS": "-mod=readonly -modcacherw",
        "GOTOOLCHAIN": "local",
    }


def prepare_go(module: str, cache: Path | None = None) -> Program:
    if module not in GO_MODULES:
        raise ValueError(f"unknown Go program {module!r} (known: {', '.join(GO_MODULES)})")
    cache = cache or cache_root()
    src = SDK_DIR / "go" / module
    with locked(cache):
        sources = sorted(src.glob("*.go"))
        binary = cache / "go" / "bin" / f"{module}-{digest(src / 'go.mod', src / 'go.sum', *sources)}"
        if not binary.exists():
            binary.parent.mkdir(parents=True, exist_ok=True)
            partial = binary.with_suffix(".partial")
            _run([_tool("go"), "build", "-o", str(partial), "."], src, go_env(cache))
            partial.rename(binary)
    return Program(f"go-{module}", (str(binary),), src)


# ------------------------------------------------------------------------------------------- Java
def prepare_java(api: str, cache: Path | None = None) -> Program:
    if api not in JAVA_MAIN:
        raise ValueError(f"unknown Java program {api!r} (known: {', '.join(JAVA_MAIN)})")
    cache = cache or cache_root()
    src = SDK_DIR / "java"
    with locked(cache):
        work = cache / "java" / digest(src / "pom.xml")
        classpath_file = work / "classpath.txt"
        if not classpath_file.exists():
            work.mkdir(parents=True, exist_ok=True)
            partial = work / "classpath.partial"
            _run(
                [
                    _tool("mvn"), "-B", "-q", f"-Dmaven.repo.local={cache / 'm2'}",
                    "dependency:build-classpath", f"-Dmdep.outputFile={partial}",
                ],
                src,
            )  # fmt: skip
            partial.rename(classpath_file)
        classpath = classpath_file.read_text().strip()
        sources = sorted((src / "src" / "main" / "java").rglob("*.java"))
        classes = work / f"classes-{digest(*sources)}"
        if not classes.exists():
            partial_dir = work / "classes.partial"
            shutil.rmtree(partial_dir, ignore_errors=True)
            _run(
                [_tool("javac"), "-nowarn", "-d", str(partial_dir), "-cp", classpath, *map(str, sources)], src
            )
            partial_dir.rename(classes)
    return Program(f"java-{api}", (_tool("java"), "-cp", f"{classes}:{classpath}", JAVA_MAIN[api]), src)


def prepare_all(cache: Path | None = None) -> dict[str, Program]:
    """Every SDK program, keyed by name (node, go-milvusclient, go-sdkgo, java-v2, java-v1)."""
    programs = [prepare_node(cache), *(prepare_go(m, cache) for m in GO_MODULES)]
    programs += [prepare_java(api, cache) for api in JAVA_MAIN]
    return {p.name: p for p in programs}


def stdout_steps(stdout: str) -> dict[str, list[str]]:
    """The programs' output, `== step` headers → the lines printed under each."""
    steps: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("== "):
            current = steps.setdefault(line[3:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.rstrip())
    return steps
