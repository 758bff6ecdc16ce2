"""`vectorload-dev cluster build | up | down | status | kubeconfig | env`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from vectorload_dev.cluster.binaries import BinariesMissing, cache_root, ensure_built
from vectorload_dev.cluster.controlplane import ControlPlane, ControlPlaneError


def default_state_dir() -> Path:
    return Path(os.environ.get("VECTORLOAD_CLUSTER_DIR", cache_root() / "clusters" / "default"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vectorload-dev cluster", description=__doc__)
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="where the running cluster keeps its state"
    )
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("build", help="build missing control-plane binaries (cached by version)")
    up = sub.add_parser("up", help="start etcd, kube-apiserver and kube-controller-manager on 127.0.0.1")
    up.add_argument("--no-controller-manager", action="store_true")
    up.add_argument("--crds", action="store_true", help="also install the CollectionLoad CRD")
    sub.add_parser("down", help="stop everything and remove the state directory")
    sub.add_parser("status", help="is it running, and where")
    sub.add_parser("kubeconfig", help="print the kubeconfig path")
    sub.add_parser("env", help="print `export KUBECONFIG=...` for eval")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    state_dir: Path = args.state_dir or default_state_dir()
    try:
        return _dispatch(args, state_dir)
    except (ControlPlaneError, BinariesMissing) as exc:
        print(f"vectorload-dev cluster: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, state_dir: Path) -> int:
    action: str = args.action
    if action == "build":
        ensure_built()
        return 0
    if action == "up":
        if (state_dir / "state.json").exists():
            plane = ControlPlane.load(state_dir)
            if plane.is_running("kube-apiserver"):
                print(f"already running: {plane.server} (KUBECONFIG={plane.kubeconfig})")
                return 0
            plane.stop()
        started = time.monotonic()
        plane = ControlPlane(
            state_dir,
            ensure_built(),
            controller_manager=not args.no_controller_manager,
            die_with_parent=False,
            log_stream=sys.stderr,
        )
        plane.start()
        if args.crds:
            install_crds(plane)
        print(f"control plane up in {time.monotonic() - started:.1f} s: {plane.server}")
        print(f"export KUBECONFIG={plane.kubeconfig}")
        return 0
    if action == "down":
        if not (state_dir / "state.json").exists():
            print("not running")
            return 0
        from vectorload_dev.e2e.kubelet import stop_background_kubelet

        if stop_background_kubelet(state_dir):  # `vectorload-dev demo`'s kubelet and its pod processes
            print("kubelet stopped")
        ControlPlane.load(state_dir).stop(remove_state=True)
        print("control plane stopped; state removed")
        return 0
    if action == "status":
        if not (state_dir / "state.json").exists():
            print("not running")
            return 1
        plane = ControlPlane.load(state_dir)
        for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            print(f"{name:24} {'running' if plane.is_running(name) else 'stopped'}")
        print(f"server     {plane.server}\nkubeconfig {plane.kubeconfig}")
        return 0 if plane.is_running("kube-apiserver") else 1
    if action == "kubeconfig":
        print(ControlPlane.load(state_dir).kubeconfig)
        return 0
    if action == "env":
        print(f"export KUBECONFIG={ControlPlane.load(state_dir).kubeconfig}")
        return 0
    raise AssertionError(action)


def install_crds(plane: ControlPlane) -> None:
    """Apply the CollectionLoad CRD (the product's packaged copy, what `vectorload crd` prints)
    and wait until the API server serves it (Established)."""
    from vectorload.crd import CRD_NAME, crd_yaml

    plane.kubectl("apply", "--server-side", "-f", "-", input=crd_yaml())
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
