"""Build images/Dockerfile with buildah on a machine that has no Docker engine and reaches no
container registry (`make image`).

Why this exists: the Dockerfile starts `FROM ${PYTHON_IMAGE}` (python:3.11-slim on a normal
machine, where `docker build -f images/Dockerfile .` is all it takes). Here only the Debian
mirror and PyPI are reachable, so the base is bootstrapped from Debian packages with mmdebstrap —
a minimal bookworm holding what the Dockerfile asks of python:3.11-slim (a `python` that makes
venvs with pip, the headers hnswlib compiles against, CA certificates, tzdata) — imported into
buildah's storage and passed as `PYTHON_IMAGE`. The Dockerfile itself is not changed for this.

What is expensive is cached under ~/.cache/vectorload/image/, keyed by what produced it:
- the base tarball by the mmdebstrap inputs (suite, packages, dpkg filters, mirrors, arch);
- pip's downloads and the hnswlib compile by buildah's layer cache (`--layers`), in a storage
  root of its own there: a layer is reused while its instruction, its base layer and the files
  it copies are unchanged, so editing the product's source rebuilds only the product wheel and
  the stages after it; superseded layers are pruned after each build;
- the last build of each tag by the inputs key (base, Dockerfile, every file of the build
  context): while it matches, nothing runs at all (buildah's own check of every layer takes
  7-14 s with overlay storage, 6 minutes with vfs).
A cold build (empty cache) needs only mmdebstrap, buildah, the Debian mirror and PyPI.

The build trusts what the host trusts: the host's CA bundle is mounted read-only into the RUN
steps (a TLS-inspecting egress proxy signs PyPI's certificate with a CA only the host knows); it
is a build-time mount, never part of a layer.
"""

from __future__ import annotations

import argparse
import fcntl
import fnmatch
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "images" / "Dockerfile"
IGNOREFILE = REPO / "images" / "Dockerfile.dockerignore"
# as devcluster/build.sh: $VECTORLOAD_CACHE, else $XDG_CACHE_HOME/vectorload, else ~/.cache/vectorload
CACHE = (
    Path(
        os.environ.get("VECTORLOAD_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vectorload"
    )
    / "image"
)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_DEBIAN = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
BASE_REPOSITORY = "localhost/vectorload-base"
# bumped when the way the base is made changes in a way its inputs below do not show
BASE_RECIPE = 1


class BuildError(Exception):
    """A build step failed or a tool is missing; the message says which and what to do."""


@dataclass(frozen=True)
class Mirrors:
    debian: str
    security: str


def _deb822_stanzas(text: str) -> Iterable[dict[str, str]]:
    stanza: dict[str, str] = {}
    last = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanza:
                yield stanza
            stanza, last = {}, ""
            continue
        if raw[0] in " \t" and last:
            stanza[last] += " " + raw.strip()
            continue
        key, sep, value = raw.partition(":")
        if sep:
            last = key.strip().lower()
            stanza[last] = value.strip()


def _entries(name: str, text: str) -> Iterable[tuple[list[str], list[str]]]:
    """(URIs, suites) of the enabled `deb` entries of one apt sources file."""
    if name.endswith(".sources"):
        for stanza in _deb822_stanzas(text):
            if "deb" not in stanza.get("types", "").split():
                continue
            if stanza.get("enabled", "yes").lower() == "no":
                continue
            yield stanza.get("uris", "").split(), stanza.get("suites", "").split()
        return
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            yield [words[0]], [words[1]]


_DEBIAN_SUITE = re.compile(
    r"(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable)"
    r"(-updates|-backports|-security|/updates)?"
)


def apt_mirrors(sources: Iterable[tuple[str, str]]) -> Mirrors:
    """The Debian and Debian-security mirrors that the host's apt uses, from (file name, text)
    pairs of /etc/apt/sources.list and sources.list.d/*.{list,sources}. A mirror is recognised by
    the suites it serves (`<codename>-security` for security, a Debian codename, `-updates` or
    `-backports` for the archive); other repositories (third-party suites, Ubuntu) are ignored.
    Missing ones fall back to deb.debian.org."""
    debian = security = None
    for name, text in sources:
        for uris, suites in _entries(name, text):
            for uri in uris:
                uri = uri.rstrip("/")
                if any(_DEBIAN_SUITE.fullmatch(s) and "security" in s for s in suites):
                    security = security or uri
                elif any(_DEBIAN_SUITE.fullmatch(s) for s in suites):
                    debian = debian or uri
    return Mirrors(debian or DEFAULT_DEBIAN, security or DEFAULT_SECURITY)


def host_apt_sources(etc: Path = Path("/etc/apt")) -> list[tuple[str, str]]:
    """The apt sources files apt itself reads (sources.list, sources.list.d/*.list|*.sources)."""
    files = [etc / "sources.list"]
    parts = etc / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in {".list", ".sources"})
    return [(p.name, p.read_text(encoding="utf-8", errors="replace")) for p in files if p.is_file()]


@dataclass(frozen=True)
class BaseSpec:
    """What the mmdebstrap base is made of; its key names the cached tarball and the image."""

    mirrors: Mirrors
    suite: str = "bookworm"
    arch: str = "amd64"
    variant: str = "minbase"  # priority `required` + apt, like debian:bookworm-slim
    # python:3.11-slim has `python`, venv+pip, the C headers, CA certificates, netbase, tzdata
    packages: tuple[str, ...] = (
        "python3",
        "python3-venv",
        "python-is-python3",
        "python3.11-dev",
        "ca-certificates",
        "netbase",
        "tzdata",
    )
    # as in debian:*-slim: no docs (copyrights kept), man pages or translations; the static
    # libpython (27 MB) is for embedding, the wheels link against nothing
    dpkg_filters: tuple[str, ...] = (
        "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright",
        "path-exclude=/usr/share/man/*",
        "path-exclude=/usr/share/info/*",
        "path-exclude=/usr/share/groff/*",
        "path-exclude=/usr/share/lintian/*",
        "path-exclude=/usr/share/locale/*",
        "path-exclude=/usr/lib/python3.11/config-3.11-*/libpython3.11*.a",
        "path-exclude=/usr/lib/*-linux-gnu/libpython3.11*.a",
    )
    env: tuple[tuple[str, str], ...] = (
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("LANG", "C.UTF-8"),
    )

    def sources(self) -> list[str]:
        return [
            f"deb {self.mirrors.debian} {self.suite} main",
            f"deb {self.mirrors.debian} {self.suite}-updates main",
            f"deb {self.mirrors.security} {self.suite}-security main",
        ]

    def key(self) -> str:
        inputs = {
            "recipe": BASE_RECIPE,
            "suite": self.suite,
            "arch": self.arch,
            "variant": self.variant,
            "packages": sorted(self.packages),
            "dpkg": list(self.dpkg_filters),
            "sources": self.sources(),
            "env": [list(e) for e in self.env],
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]

    def image(self) -> str:
        return f"{BASE_REPOSITORY}:{self.suite}-{self.key()}"

    def mmdebstrap_argv(self, tarball: Path) -> list[str]:
        argv = [
            "mmdebstrap",
            f"--variant={self.variant}",
            f"--architectures={self.arch}",
            f"--include={','.join(self.packages)}",
            # merged /usr set up by mmdebstrap itself: without it bookworm pulls `usrmerge`
            # and with it perl (40 MB) into the image
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            # no device nodes in the tarball: buildah's rootfs gets its own /dev at run time
            "--skip=output/dev",
            "--skip=output/mknod",
        ]
        argv += [f"--dpkgopt={f}" for f in self.dpkg_filters]
        return [*argv, self.suite, str(tarball), *self.sources()]


def debian_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def overlay_works(where: Path) -> bool:
    """Whether the kernel mounts an overlayfs on the filesystem of `where` (buildah's overlay
    driver then works: layers are diffs, ~1 GB of storage per build instead of vfs' full copy of
    the root filesystem per layer, ~7 GB). Not inside every container: then vfs."""
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=where, prefix="overlay-probe-") as tmp:
        lower, upper, work, merged = (Path(tmp) / d for d in ("lower", "upper", "work", "merged"))
        for d in (lower, upper, work, merged):
            d.mkdir()
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        argv = ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)]
        mounted = subprocess.run(argv, capture_output=True, check=False)
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", str(merged)], capture_output=True, check=False)
        return True


def storage_driver(cache: Path = CACHE) -> str:
    """$VECTORLOAD_STORAGE_DRIVER, else overlay where the kernel allows it, else vfs."""
    chosen = os.environ.get("VECTORLOAD_STORAGE_DRIVER")
    if chosen:
        return chosen
    return "overlay" if os.geteuid() == 0 and overlay_works(cache) else "vfs"


@dataclass(frozen=True)
class StoredImage:
    id: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Buildah:
    """buildah with a storage root of its own under the cache, one per storage driver (a root
    cannot change driver)."""

    driver: str
    cache: Path = CACHE

    @property
    def root(self) -> Path:
        return self.cache / f"containers-{self.driver}"

    @property
    def runroot(self) -> Path:
        """Run-time state (locks, mount counts): on tmp, one per storage root."""
        root = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"vectorload-buildah-{os.getuid()}-{root}"

    def argv(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            self.driver,
            *args,
        ]

    def run(self, *args: str, quiet: bool = False) -> str:
        proc = subprocess.run(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if quiet else None,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            detail = f": {proc.stderr.strip()}" if quiet and proc.stderr else ""
            raise BuildError(f"buildah {' '.join(args[:2])} failed (exit {proc.returncode}){detail}")
        return proc.stdout.strip()

    def image_id(self, ref: str) -> str | None:
        """The id of the image named ref, None when there is none."""
        proc = subprocess.run(
            self.argv("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            return None
        return proc.stdout.strip() or None

    def images(self) -> list[StoredImage]:
        """Every image in the storage, the intermediate ones of --layers builds included."""
        listed = json.loads(self.run("images", "--all", "--no-trunc", "--json", quiet=True) or "[]")
        return [
            StoredImage(str(i["id"]).removeprefix("sha256:"), tuple(str(n) for n in i.get("names") or ()))
            for i in listed
        ]

    def image_size(self, ref: str) -> str:
        """The image's layers, uncompressed, as `buildah images` (and `docker images`) shows it."""
        listed = json.loads(self.run("images", "--json", ref, quiet=True))
        return str(listed[0]["size"])

    def parent(self, image_id: str) -> str | None:
        """The image a --layers build step committed on top of (the Docker config's `parent`)."""
        config = json.loads(self.run("inspect", "--type", "image", image_id, quiet=True))
        parent = config.get("Docker", {}).get("parent") or ""
        return parent.removeprefix("sha256:") or None


def keep_set(named: Iterable[str], parent_of: Callable[[str], str | None]) -> set[str]:
    """Ids of the named images and all their ancestors: the layer cache still in use."""
    keep: set[str] = set()
    for image_id in named:
        current: str | None = image_id
        while current is not None and current not in keep:
            keep.add(current)
            current = parent_of(current)
    return keep


def prunable(images: Sequence[StoredImage], base: str, parent_of: Callable[[str], str | None]) -> list[str]:
    """Ids of the images nothing named builds on: layers whose name moved on to a newer build,
    and base images of other keys than `base` with what was built on them. Any other named
    image (this build's, one built with --tag, somebody's own) keeps its ancestors."""

    def stale_base(names: tuple[str, ...]) -> bool:
        return all(n.startswith(BASE_REPOSITORY + ":") and n != base for n in names)

    named = [i.id for i in images if i.names and not stale_base(i.names)]
    keep = keep_set(named, parent_of)
    return [i.id for i in images if i.id not in keep]


def prune(buildah: Buildah, base: str, log: bool = True) -> int:
    """Remove the layers of superseded builds (each source change leaves a few hundred MB
    behind) and base images of other keys. An image still used by a container (another build
    in progress) is left alone. Returns how many images went."""
    doomed = prunable(buildah.images(), base, buildah.parent)
    removed = 0
    while doomed:  # an image with children cannot go before them: repeat while that helps
        left = [
            image_id
            for image_id in doomed
            if subprocess.run(buildah.argv("rmi", image_id), capture_output=True, check=False).returncode != 0
        ]
        removed += len(doomed) - len(left)
        if len(left) == len(doomed):
            break
        doomed = left
    if removed and log:
        print(f"==> pruned {removed} superseded images from {buildah.root}", flush=True)
    return removed


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise BuildError(
            f"{', '.join(missing)} not installed: apt-get install {' '.join(missing)} "
            "(`.ci/run` does this on a fresh machine)"
        )
    if os.geteuid() != 0:
        raise BuildError("the image build runs as root here (mmdebstrap and buildah without subuid maps)")


def ensure_base_tarball(spec: BaseSpec, cache: Path = CACHE, log: bool = True) -> Path:
    """The mmdebstrap tarball for spec, made once per key (written aside, then renamed); the
    tarballs of other keys are removed."""
    tarball = cache / f"base-{spec.suite}-{spec.key()}.tar"
    if tarball.exists():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".partial-{os.getpid()}-{tarball.name}"
    if log:
        print(f"==> mmdebstrap {spec.suite} ({', '.join(spec.packages)})", flush=True)
    try:
        proc = subprocess.run(
            spec.mmdebstrap_argv(partial), stderr=None if log else subprocess.DEVNULL, check=False
        )
        if proc.returncode != 0:
            raise BuildError(f"mmdebstrap failed (exit {proc.returncode}); sources {spec.sources()}")
        partial.rename(tarball)
    finally:
        partial.unlink(missing_ok=True)
    for stale in cache.glob("base-*.tar"):
        if stale != tarball:
            stale.unlink(missing_ok=True)
    return tarball


def ensure_base_image(spec: BaseSpec, buildah: Buildah, log: bool = True) -> str:
    """The base imported into buildah's storage as spec.image() (from scratch + the tarball)."""
    ref = spec.image()
    if buildah.image_id(ref) is not None:
        return ref
    tarball = ensure_base_tarball(spec, buildah.cache, log)
    if log:
        print(f"==> import {tarball.name} as {ref}", flush=True)
    container = buildah.run("from", "--quiet", "scratch", quiet=True)
    try:
        buildah.run("add", "--quiet", container, str(tarball), "/", quiet=True)
        config = ["config", "--cmd", "python3", "--label", f"io.vectorload.base.key={spec.key()}"]
        for name, value in spec.env:
            config += ["--env", f"{name}={value}"]
        buildah.run(*config, container, quiet=True)
        buildah.run("commit", "--quiet", "--format", "docker", container, ref, quiet=True)
    finally:
        subprocess.run(buildah.argv("rm", container), capture_output=True, check=False)
    return ref


def context_files(repo: Path = REPO, ignorefile: Path = IGNOREFILE) -> list[Path]:
    """The files of the build context that the allow-list ignore file lets through, as relative
    paths: its `!path` lines include, `**/name` lines exclude by name, and `**` (everything
    else out) must come first. Any other form is refused rather than guessed at, so this list
    can never miss a file buildah sends (a missed file would make `build` reuse a stale image)."""
    included: list[str] = []
    excluded: list[str] = []
    lines = [ln.strip() for ln in ignorefile.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines or lines[0] != "**":
        raise BuildError(f"{ignorefile.name}: expected an allow-list starting with `**`")
    for line in lines[1:]:
        if line.startswith("!") and "*" not in line:
            included.append(line[1:].rstrip("/"))
        elif line.startswith("**/") and "/" not in line[3:]:
            excluded.append(line[3:])
        else:
            raise BuildError(f"{ignorefile.name}: unsupported pattern {line!r} (only `!path` and `**/name`)")
    found: list[Path] = []
    for entry in included:
        path = repo / entry
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path] if path.exists() else []
        for file in candidates:
            rel = file.relative_to(repo)
            if file.is_file() and not any(
                fnmatch.fnmatch(part, pat) for part in rel.parts for pat in excluded
            ):
                found.append(rel)
    return sorted(set(found))


def inputs_key(base: str, repo: Path = REPO) -> str:
    """What the image is made of: the base image, the Dockerfile, and every context file."""
    digest = hashlib.sha256(f"{base}\n".encode())
    for rel in [DOCKERFILE.relative_to(REPO), IGNOREFILE.relative_to(REPO), *context_files(repo)]:
        digest.update(f"{rel}\n".encode())
        digest.update(hashlib.sha256((repo / rel).read_bytes()).digest())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Record:
    """The last build of a tag: its image id and the inputs it was built from."""

    tag: str
    image_id: str
    inputs: str

    @staticmethod
    def path(cache: Path, tag: str) -> Path:
        return cache / "built" / (hashlib.sha256(tag.encode()).hexdigest()[:16] + ".json")

    @classmethod
    def load(cls, cache: Path, tag: str) -> Record | None:
        try:
            data = json.loads(cls.path(cache, tag).read_text(encoding="utf-8"))
            return cls(str(data["tag"]), str(data["image_id"]), str(data["inputs"]))
        except (OSError, ValueError, KeyError):
            return None

    def save(self, cache: Path) -> None:
        path = self.path(cache, self.tag)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(self.__dict__), encoding="utf-8")
        partial.replace(path)


def project_version(repo: Path = REPO) -> str:
    project = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return str(project["version"])


def default_tag(repo: Path = REPO) -> str:
    """The chart's default image (values.yaml `image.repository`, tag = appVersion)."""
    return f"localhost/vectorload/vectorload:{project_version(repo)}"


def build_stage_tag(tag: str) -> str:
    """Where the first stage is tagged, so that pruning knows its layers are in use."""
    name, _, version = tag.rpartition(":")
    return f"{name}-build:{version}" if name else f"{tag}-build"


def bud_argv(
    buildah: Buildah,
    base: str,
    tag: str,
    repo: Path = REPO,
    ca_bundle: Path | None = None,
    target: str | None = None,
) -> list[str]:
    argv = [
        "bud",
        "--isolation",
        "chroot",
        "--layers",
        "--format",
        "docker",  # the OCI format drops SHELL (the Dockerfile's `bash -o pipefail`)
        "--ignorefile",
        str(repo / IGNOREFILE.relative_to(REPO)),
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "-f",
        str(repo / DOCKERFILE.relative_to(REPO)),
        "-t",
        tag,
    ]
    if target is not None:
        argv += ["--target", target]
    if ca_bundle is not None and ca_bundle.is_file():
        argv += ["--volume", f"{ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    return buildah.argv(*argv, str(repo))


@dataclass(frozen=True)
class Built:
    image: str
    base: str
    driver: str
    seconds: float
    size: str
    reused: bool  # the tag already held an image of the same inputs: nothing was built


def _bud(argv: list[str], log: bool) -> None:
    proc = subprocess.run(
        argv, stdout=None if log else subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "" if log else "\n" + "\n".join((proc.stdout or "").splitlines()[-40:])
        raise BuildError(f"buildah bud failed (exit {proc.returncode}){tail}")


def build(
    tag: str | None = None,
    cache: Path = CACHE,
    repo: Path = REPO,
    log: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> Built:
    """Build the image; returns its name, size and how long it took. When the tag holds what
    the last build made from the same inputs (base, Dockerfile, context files), nothing runs;
    otherwise buildah reuses every layer whose inputs are unchanged. Superseded layers are
    pruned afterwards."""
    start = clock()
    require_tools("mmdebstrap", "buildah")
    cache.mkdir(parents=True, exist_ok=True)
    # one build at a time per cache: two test runs started together would otherwise import the
    # base twice and prune each other's layers mid-build; the second finds the first's result
    with (cache / "build.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(tag, cache, repo, log, clock, start)


def _build(
    tag: str | None, cache: Path, repo: Path, log: bool, clock: Callable[[], float], start: float
) -> Built:
    buildah = Buildah(storage_driver(cache), cache)
    tag = tag or default_tag(repo)
    spec = BaseSpec(mirrors=apt_mirrors(host_apt_sources()), arch=debian_arch())
    base = ensure_base_image(spec, buildah, log)
    inputs = inputs_key(base, repo)
    last = Record.load(cache, tag)
    if last is not None and last.inputs == inputs and buildah.image_id(tag) == last.image_id:
        if log:
            print(f"==> {tag} is up to date (inputs {inputs})", flush=True)
        return Built(tag, base, buildah.driver, clock() - start, buildah.image_size(tag), reused=True)
    if log:
        print(f"==> buildah bud -> {tag} ({buildah.driver} storage, PYTHON_IMAGE={base})", flush=True)
    stage = build_stage_tag(tag)
    _bud(bud_argv(buildah, base, stage, repo, HOST_CA_BUNDLE, target="build"), log)
    _bud(bud_argv(buildah, base, tag, repo, HOST_CA_BUNDLE), log)
    image_id = buildah.image_id(tag)
    if image_id is None:
        raise BuildError(f"buildah bud succeeded but {tag} is not in {buildah.root}")
    Record(tag, image_id, inputs).save(cache)
    built = Built(tag, base, buildah.driver, clock() - start, buildah.image_size(tag), reused=False)
    prune(buildah, base, log)
    return built


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tag", default=None, help="image name (default: the chart's image and version)")
    parser.add_argument("--print-base", action="store_true", help="print how the base is made and exit")
    args = parser.parse_args(argv)
    if args.print_base:
        spec = BaseSpec(mirrors=apt_mirrors(host_apt_sources()), arch=debian_arch())
        print(f"{spec.image()}\n" + " \\\n  ".join(spec.mmdebstrap_argv(CACHE / "base.tar")))
        return 0
    try:
        built = build(args.tag)
    except BuildError as exc:
        print(f"make image: {exc}", file=sys.stderr)
        return 1
    flags = " ".join(Buildah(built.driver).argv()[1:])
    archive = f"docker-archive:vectorload.tar:{built.image.removeprefix('localhost/')}"
    print(
        f"==> {built.image}: {built.size}, {built.seconds:.1f} s\n"
        f"    list:   buildah {flags} images\n"
        f"    export: buildah {flags} push {built.image} {archive}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
