"""`vectorload-dev demo` (what `make demo` runs): the whole system on this machine, end to end.

local control plane → process kubelet → sample collection `book` → `helm install` of the chart
(operator + two querynodes as local processes) → `kubectl apply` a CollectionLoad → progress to
Loaded → a search → release partition `novel` → the querynodes' memory before and after → the seed
document's pymilvus snippet through the proxy (the Milvus front door the chart also runs):
`load_collection` → `get_load_state` → `{'state': <LoadState: Loaded>}`, then release.

Running it again reuses what is running and converges to the same end state. Everything stays
up afterwards so you can explore with kubectl (`eval $(vectorload-dev cluster env)`); `make down`
stops the kubelet, every pod process and the control plane.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from vectorload.progress import ProgressBar
from vectorload.storage.sample import write_sample
from vectorload_dev.cluster.binaries import ensure_built
from vectorload_dev.cluster.cli import default_state_dir, install_crds
from vectorload_dev.cluster.controlplane import ControlPlane, ControlPlaneError
from vectorload_dev.e2e.system import LocalSystem, Release, SystemError_
from vectorload_dev.testing.wait import WaitTimeout, wait_for

NAMESPACE = "vectorload"
RELEASE = "vectorload"
TOTAL_STEPS = 9
# The seed's pymilvus snippet, endpoint aside (uri and token are the installed release's).
PYMILVUS_SNIPPET = """\
from pymilvus import MilvusClient

client = MilvusClient(
    uri="{uri}",
    token="{token}"
)

# 7. Load the collection
client.load_collection(
    collection_name="book"
)

res = client.get_load_state(
    collection_name="book"
)

print(res)

# 8. Release the collection
client.release_collection(
    collection_name="book"
)

res = client.get_load_state(
    collection_name="book"
)

print(res)
"""
LOAD_SPEC: dict[str, Any] = {
    "collection": "book",
    "partitions": ["_default", "novel", "poetry"],
    "replicas": 1,
}


def _step(number: int, text: str) -> None:
    print(f"\n[{number}/{TOTAL_STEPS}] {text}", flush=True)


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vectorload-dev demo", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=None, help="cluster state directory")
    parser.add_argument("--size", default="small", help="sample size (tiny, small, medium, large)")
    parser.add_argument("--querynodes", type=int, default=2)
    parser.add_argument("--memory", default="512Mi", help="memory limit (= capacity) of each querynode")
    return parser


def control_plane(state_dir: Path) -> ControlPlane:
    binaries = ensure_built()
    if (state_dir / "state.json").exists():
        plane = ControlPlane.load(state_dir, binaries)
        if plane.is_running("kube-apiserver"):
            print(f"  already running at {plane.server}")
            return plane
        plane.stop()
    plane = ControlPlane(state_dir, binaries, die_with_parent=False, log_stream=sys.stdout)
    plane.start()
    return plane


def wait_loaded_with_bar(release: Release, name: str, timeout: float = 180) -> dict[str, Any]:
    """A progress bar over status.loadProgress until the current generation is Loaded."""
    deadline = time.monotonic() + timeout
    with ProgressBar(100, label=f"  {name}", unit="%", stream=sys.stdout) as bar:
        while time.monotonic() < deadline:
            obj = release.cload(name) or {}
            status = obj.get("status") or {}
            current = status.get("observedGeneration") == obj.get("metadata", {}).get("generation")
            if current:
                bar.update_to(float(status.get("loadProgress", 0)))
                if status.get("loadState") == "Loaded":
                    return status
                if status.get("loadState") == "Failed":
                    raise SystemError_(f"{name} failed: {json.dumps(status.get('conditions'))}")
            time.sleep(0.2)
    raise SystemError_(f"{name} not Loaded in {timeout:.0f} s: {json.dumps(release.status(name))[:800]}")


def memory_table(before: dict[str, int], after: dict[str, int]) -> str:
    lines = [f"  {'querynode':<28} {'before':>12} {'after':>12} {'freed':>12}"]
    for node in sorted(before):
        b, a = before[node], after.get(node, 0)
        lines.append(f"  {node:<28} {_mib(b):>12} {_mib(a):>12} {_mib(b - a):>12}")
    tb, ta = sum(before.values()), sum(after.values())
    lines.append(f"  {'total':<28} {_mib(tb):>12} {_mib(ta):>12} {_mib(tb - ta):>12}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    state_dir: Path = args.state_dir or default_state_dir()
    try:
        return _run(args, state_dir)
    except (ControlPlaneError, SystemError_, WaitTimeout) as exc:
        print(f"\nvectorload-dev demo: {exc}", file=sys.stderr)
        print(f"logs: {state_dir}/logs, {state_dir}/kubelet/logs", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, state_dir: Path) -> int:
    started = time.monotonic()
    timings: dict[str, float] = {}

    def mark(what: str, since: float) -> float:
        now = time.monotonic()
        timings[what] = now - since
        return now

    t = started
    _step(1, "local control plane: etcd + kube-apiserver + kube-controller-manager on 127.0.0.1")
    plane = control_plane(state_dir)
    install_crds(plane)
    version = plane.kubectl("version").stdout.splitlines()[-1]
    print(f"  {version}; CRD collectionloads.vectorload.io Established")
    t = mark("control plane", t)

    _step(2, "process kubelet (background): registers a Node, runs pods as local processes on 127.0.0.N")
    system = LocalSystem(plane, state_dir, detached=True)
    fresh = system.start()
    how = "started" if fresh else "already running"
    print(f"  {how}: pid {system.kubelet.pid}, log {system.kubelet.log}")
    print("  " + plane.kubectl("get", "nodes", "--no-headers").stdout.strip())
    t = mark("kubelet", t)

    _step(3, f"vectorload sample --size {args.size}: collection `book` (partitions _default, novel, poetry)")
    root = state_dir / "storage"
    info = write_sample(root, args.size, seed=0, num_threads=-1)
    state = "written" if info.written_segments else "already present"
    print(f"  {info.rows} rows, {info.segments} segments, {_mib(info.bytes)} on disk, {state} in {root}")
    t = mark("sample", t)

    _step(4, f"helm install {RELEASE} helm/vectorload -n {NAMESPACE} (storage.hostPath={root})")
    release = system.install(
        RELEASE, NAMESPACE, root, wait=False, querynodes=args.querynodes, memory=args.memory, proxy=2
    )
    release.wait_ready(timeout=120)
    for pod in [*release.querynodes(), release.operator_pod(), *release.proxies()]:
        if pod is not None:
            print(f"  pod/{pod['metadata']['name']:<40} Running  {pod['status']['podIP']}")
    t = mark("helm install", t)

    _step(5, "kubectl apply -f - (CollectionLoad book), progress from status.loadProgress")
    doc = {"apiVersion": "vectorload.io/v1alpha1", "kind": "CollectionLoad", "metadata": {"name": "book"}}
    print("  " + yaml.safe_dump({**doc, "spec": LOAD_SPEC}, sort_keys=False).rstrip().replace("\n", "\n  "))
    release.apply_cload("book", LOAD_SPEC)
    status = wait_loaded_with_bar(release, "book")
    print(f"  loadState {status['loadState']}, {status.get('loadedBytesText', '')} in memory")
    print("  " + release.kubectl("get", "cload", "book").rstrip().replace("\n", "\n  "))
    t = mark("load", t)

    _step(6, "vectorload search --collection-load book --random --top-k 5 --output-fields title,word_count")
    code, out, err = release.search_cli(
        "book", "--random", "--seed=7", "--top-k=5", "--output-fields=title,word_count"
    )
    if code != 0:
        raise SystemError_(f"search failed: {err.strip()}")
    print("  " + (err.strip() + "\n" + out.rstrip()).replace("\n", "\n  "))
    t = mark("search", t)

    _step(7, "release partition novel: kubectl patch cload book --type=merge -p partitions=[_default,poetry]")
    before = release.used_bytes()
    loaded_before = int(status.get("loadedBytes", 0))
    release.patch_cload("book", {"partitions": ["_default", "poetry"]})
    status = release.wait_state("book", "Loaded")["status"]
    novel = loaded_before - int(status.get("loadedBytes", 0))

    def settled() -> dict[str, int] | None:  # status is Loaded; wait until the nodes have freed it
        now = release.used_bytes()
        return now if sum(before.values()) - sum(now.values()) >= 0.9 * novel else None

    after = wait_for("querynode memory to drop", settled, 30)
    print(memory_table(before, after))
    print(f"  novel's segments per status.loadedBytes: {_mib(novel)}; `poetry` and `_default` stay loaded")
    t = mark("release novel", t)

    _step(
        8, "the seed's pymilvus snippet through the proxy (Milvus API on 19530, root token from its Secret)"
    )
    snippet = PYMILVUS_SNIPPET.format(uri=release.proxy_uri(), token=release.milvus_token())
    shown = snippet.replace(release.milvus_token(), "root:<password>")
    print("  " + shown.rstrip().replace("\n", "\n  "))
    proc = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        raise SystemError_(f"the pymilvus snippet failed: {proc.stderr.strip()[-1500:]}")
    print("  # Output\n  " + proc.stdout.rstrip().replace("\n", "\n  "))
    print(
        f"  $ vectorload load -c book --uri {release.proxy_uri()}   # milvus_cli's load, with a progress bar"
    )
    cli = subprocess.run(
        [sys.executable, "-m", "vectorload.cli", "load", "-c", "book", "--uri", release.proxy_uri()],
        env={**os.environ, "MILVUS_TOKEN": release.milvus_token()},
        text=True,
        stdout=subprocess.PIPE,
        timeout=300,
        check=False,
    )
    if cli.returncode != 0:
        raise SystemError_(f"vectorload load failed ({cli.returncode})")
    print("  " + cli.stdout.rstrip())
    t = mark("pymilvus", t)

    _step(9, "summary")
    print("  " + release.kubectl("get", "cload", "-o", "wide").rstrip().replace("\n", "\n  "))
    spent = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    print(f"\ndone in {time.monotonic() - started:.1f} s ({spent}).")
    print(
        "Everything keeps running:\n"
        f"  export KUBECONFIG={plane.kubeconfig}\n"
        f"  kubectl -n {NAMESPACE} get cload,pods -o wide\n"
        f"  vectorload search -n {NAMESPACE} --collection-load book --random --anns-field book_intro "
        f"--token-secret {release.fullname}-token\n"
        f"  MILVUS_TOKEN=$(kubectl -n {NAMESPACE} get secret {release.fullname}-proxy-credentials "
        f"-o jsonpath='{{.data.credentials}}' | base64 -d) \\\n"
        f"    vectorload load-state -c book --uri {release.proxy_uri()}\n"
        "  make down   # stop the kubelet, every pod process and the control plane"
    )
    return 0
