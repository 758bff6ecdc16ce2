"""`vectorload demo` (what `make demo` runs): the system on this machine, end to end.

Each step prints what it does; the local control plane keeps running afterwards so you can
explore with kubectl (`eval $(vectorload cluster env)`); `make down` stops it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vectorload.devcluster.binaries import ensure_built, repo_root
from vectorload.devcluster.cli import default_state_dir, install_crds
from vectorload.devcluster.controlplane import ControlPlane


def _step(number: int, total: int, text: str) -> None:
    print(f"\n[{number}/{total}] {text}", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vectorload demo", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=None)
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    state_dir: Path = args.state_dir or default_state_dir()
    started = time.monotonic()
    total = 4
    _step(1, total, "local control plane: etcd + kube-apiserver + kube-controller-manager on 127.0.0.1")
    binaries = ensure_built()
    if (state_dir / "state.json").exists() and ControlPlane.load(state_dir, binaries).is_running(
        "kube-apiserver"
    ):
        plane = ControlPlane.load(state_dir, binaries)
        print(f"  already running at {plane.server}")
    else:
        if (state_dir / "state.json").exists():
            ControlPlane.load(state_dir, binaries).stop()
        plane = ControlPlane(state_dir, binaries, die_with_parent=False, log_stream=sys.stdout)
        plane.start()
    print(plane.kubectl("version").stdout.rstrip())

    _step(2, total, "install the CollectionLoad CRD (crds/collectionload.yaml)")
    install_crds(plane)
    print("  customresourcedefinition.apiextensions.k8s.io/collectionloads.vectorload.io Established")

    _step(3, total, "kubectl apply -f crds/examples/book.yaml")
    print(plane.kubectl("apply", "-f", str(repo_root() / "crds" / "examples" / "book.yaml")).stdout.rstrip())

    _step(4, total, "kubectl get cload")
    print(plane.kubectl("get", "cload", "-o", "wide").stdout.rstrip())

    print(
        f"\ndone in {time.monotonic() - started:.1f} s. The control plane keeps running:\n"
        f"  export KUBECONFIG={plane.kubeconfig}\n  kubectl get cload\n  make down   # stop and clean up"
    )
    return 0
