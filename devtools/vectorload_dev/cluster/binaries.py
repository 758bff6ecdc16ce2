"""Where the control-plane binaries live, and how to build them when they are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vectorload_dev.checkout import repo_root

K8S_VERSION = "v1.33.13"
HELM_VERSION = "v3.19.5"
KUBECTL_MINOR = "1.33"


class BinariesMissing(RuntimeError):
    pass


def cache_root() -> Path:
    explicit = os.environ.get("VECTORLOAD_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vectorload"


def build_script() -> Path:
    explicit = os.environ.get("VECTORLOAD_BUILD_SCRIPT")
    return Path(explicit) if explicit else repo_root() / "devcluster" / "build.sh"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    helm: Path
    kubectl: Path

    @property
    def k8s_bin_dir(self) -> Path:
        return self.kube_apiserver.parent


def find_kubectl() -> Path:
    """kubectl matching the server's minor version when the machine ships several (gcloud's
    dispatcher keeps `kubectl.1.33` beside `kubectl`); otherwise whatever is on PATH."""
    explicit = os.environ.get("VECTORLOAD_KUBECTL")
    if explicit:
        return Path(explicit)
    found = shutil.which("kubectl")
    if not found:
        raise BinariesMissing("kubectl is not on PATH")
    versioned = Path(found).resolve().parent / f"kubectl.{KUBECTL_MINOR}"
    return versioned if versioned.exists() else Path(found)


def expected() -> Binaries:
    k8s = cache_root() / f"k8s-{K8S_VERSION}" / "bin"
    return Binaries(
        etcd=k8s / "etcd",
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        helm=cache_root() / f"helm-{HELM_VERSION}-k8s-{K8S_VERSION}" / "bin" / "helm",
        kubectl=find_kubectl(),
    )


def missing(binaries: Binaries) -> list[Path]:
    paths = [binaries.etcd, binaries.kube_apiserver, binaries.kube_controller_manager, binaries.helm]
    return [p for p in paths if not os.access(p, os.X_OK)]


def ensure_built(build: bool = True) -> Binaries:
    """Return the binaries, building missing ones first (minutes when cold, instant when cached)."""
    binaries = expected()
    if missing(binaries) and build:
        env = dict(os.environ, K8S_VERSION=K8S_VERSION, HELM_VERSION=HELM_VERSION)
        subprocess.run(["bash", str(build_script())], check=True, env=env)
    absent = missing(binaries)
    if absent:
        names = ", ".join(str(p) for p in absent)
        raise BinariesMissing(f"control-plane binaries missing: {names} (run `make binaries`)")
    return binaries
