"""Helpers of the Helm chart tests (`tests/helm/`): run helm, render the chart, pick objects."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from vectorload_dev.checkout import repo_root
from vectorload_dev.cluster.binaries import K8S_VERSION
from vectorload_dev.cluster.binaries import expected as expected_binaries

REPO = repo_root()
CHART = REPO / "helm" / "vectorload"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
FIXTURES = REPO / "tests" / "helm" / "fixtures"
# `helm template` has no cluster to ask: render for the control plane's version.
KUBE_VERSION = K8S_VERSION.lstrip("v")

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


def helm_path() -> Path:
    return expected_binaries().helm


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


def template_args(
    values: Sequence[Path] = (),
    set_values: Mapping[str, str] | None = None,
    namespace: str = "vl",
    release: str = "rel",
) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for path in values:
        args += ["--values", str(path)]
    for key, value in (set_values or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def load_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(manifests: Iterable[Manifest], kind: str, name_suffix: str = "") -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)]


def one(manifests: Iterable[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    found = find(manifests, kind, name_suffix)
    names = [m["metadata"]["name"] for m in found]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {names}"
    return found[0]


def pod_specs(manifests: Iterable[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """(kind/name, pod spec) of every workload and bare pod."""
    for m in manifests:
        if m["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]["spec"]
        elif m["kind"] == "Pod":
            yield f"Pod/{m['metadata']['name']}", m["spec"]
