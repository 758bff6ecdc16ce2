"""`vectorload-dev kubelet`: a kubelet that runs pods as local processes (and binds pending pods to its
node, because the local control plane has no kube-scheduler)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from vectorload_dev.kubelet.api import ApiClient, Json, default_kubeconfig, load_kubeconfig
from vectorload_dev.kubelet.binder import UNBOUND_SELECTOR, Binder
from vectorload_dev.kubelet.informer import list_watch
from vectorload_dev.kubelet.ipam import DEFAULT_POD_NETWORK, IpAllocator, parse_pod_network
from vectorload_dev.kubelet.node import NodeAgent
from vectorload_dev.kubelet.pod import PodWorker, Services, Settings
from vectorload_dev.kubelet.runner import kill_stale

log = logging.getLogger("vectorload.kubelet")

DEFAULT_NODE = "local-process-node"
OWN_SCHEDULER = "vectorload-kubelet"
# our image's ENTRYPOINT (images/Dockerfile): the chart gives only `args`
DEFAULT_ENTRYPOINTS = (("vectorload/vectorload", "vectorload"), ("*/vectorload/vectorload", "vectorload"))


def parse_entrypoints(values: list[str] | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if values is None:
        return tuple((pattern, tuple(shlex.split(command))) for pattern, command in DEFAULT_ENTRYPOINTS)
    parsed: list[tuple[str, tuple[str, ...]]] = []
    for value in values:
        pattern, sep, command = value.partition("=")
        if not sep or not pattern or not shlex.split(command):
            raise SystemExit(f"vectorload-dev kubelet: --image-entrypoint wants IMAGE=COMMAND, got {value!r}")
        parsed.append((pattern, tuple(shlex.split(command))))
    return tuple(parsed)


class Kubelet:
    def __init__(
        self,
        api: ApiClient,
        settings: Settings,
        *,
        max_pods: int,
        heartbeat: float,
        bind: bool,
        scheduler_names: list[str],
        delete_node_on_exit: bool,
        pod_network: str = DEFAULT_POD_NETWORK,
    ) -> None:
        self.api = api
        self.settings = settings
        self.node = NodeAgent(api, settings.node_name, settings.state_dir, max_pods)
        ipam = IpAllocator.for_network(pod_network)
        self.services = Services(api, settings, ipam, self.node.allocatable)
        self.heartbeat = heartbeat
        self.bind = bind
        self.scheduler_names = scheduler_names
        self.delete_node_on_exit = delete_node_on_exit
        self.workers: dict[str, PodWorker] = {}
        self._housekeeping: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.node.register()
        log.info("node %s registered and Ready", self.settings.node_name)
        tasks = [asyncio.create_task(self.node.heartbeat(self.heartbeat), name="heartbeat")]
        node_pods = {"fieldSelector": f"spec.nodeName={self.settings.node_name}"}
        tasks.append(
            asyncio.create_task(
                list_watch(
                    self.api, "/api/v1/pods", node_pods, self.on_list, self.on_event, name="node pods"
                ),
                name="pods",
            )
        )
        if self.bind:
            binder = Binder(self.api, self.settings.node_name, self.scheduler_names, self.node.labels)
            unbound = {"fieldSelector": UNBOUND_SELECTOR}
            tasks.append(
                asyncio.create_task(
                    list_watch(
                        self.api,
                        "/api/v1/pods",
                        unbound,
                        binder.on_list,
                        binder.on_event,
                        name="unbound pods",
                    ),
                    name="binder",
                )
            )
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.shutdown()

    async def shutdown(self) -> None:
        log.info("stopping %d pod(s)", len(self.workers))
        grace = min(self.settings.max_grace, 10.0)
        await asyncio.gather(
            *(worker.shutdown(grace) for worker in self.workers.values()), return_exceptions=True
        )
        self.workers.clear()
        await self.node.shutdown(self.delete_node_on_exit)

    async def on_list(self, pods: list[Json]) -> None:
        present = {pod["metadata"]["uid"] for pod in pods}
        for uid in [uid for uid in self.workers if uid not in present]:
            await self.on_event("DELETED", self.workers[uid].pod)
        for pod in pods:
            await self.on_event("MODIFIED", pod)

    async def on_event(self, kind: str, pod: Json) -> None:
        uid = str(pod["metadata"]["uid"])
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.removed()
            return
        if worker is None:
            worker = PodWorker(self.services, pod)
            self.workers[uid] = worker
            worker.start()
            forget = asyncio.create_task(self._forget(worker))
            self._housekeeping.add(forget)
            forget.add_done_callback(self._housekeeping.discard)
        worker.update(pod)

    async def _forget(self, worker: PodWorker) -> None:
        await worker.wait_done()
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]


def _pod_network(text: str) -> str:
    try:
        return str(parse_pod_network(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vectorload-dev kubelet", description=__doc__)
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="default: $KUBECONFIG or ~/.kube/config"
    )
    parser.add_argument("--node-name", default=DEFAULT_NODE, help=f"default: {DEFAULT_NODE}")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="pod directories, logs, claims, process records (default: ~/.cache/vectorload/kubelet/<node>)",
    )
    parser.add_argument("--max-pods", type=int, default=110)
    parser.add_argument(
        "--pod-network",
        type=_pod_network,
        default=DEFAULT_POD_NETWORK,
        help="pod IPs are .2-.254 of this /24 of 127.0.0.0/8; kubelets on one machine need different "
        f"ones (default: {DEFAULT_POD_NETWORK})",
    )
    parser.add_argument(
        "--heartbeat-interval", type=float, default=10.0, help="lease and Ready renewal, seconds"
    )
    parser.add_argument("--backoff-base", type=float, default=1.0, help="first restart back-off, seconds")
    parser.add_argument("--backoff-max", type=float, default=30.0, help="restart back-off cap, seconds")
    parser.add_argument(
        "--max-grace-period", type=float, default=30.0, help="cap on terminationGracePeriodSeconds"
    )
    parser.add_argument("--no-bind", action="store_true", help="do not bind pending pods to this node")
    parser.add_argument(
        "--scheduler-name",
        action="append",
        default=None,
        help=f"schedulerName values to bind (repeatable; default: default-scheduler and {OWN_SCHEDULER})",
    )
    parser.add_argument(
        "--delete-node-on-exit", action="store_true", help="delete the Node instead of NotReady"
    )
    parser.add_argument(
        "--pass-env",
        action="append",
        default=[],
        help="pass this variable of the kubelet's environment to pods",
    )
    parser.add_argument(
        "--image-entrypoint",
        action="append",
        default=None,
        metavar="IMAGE=COMMAND",
        help="entrypoint for containers without `command` whose image repository matches the glob IMAGE "
        f"(repeatable; default: {' '.join(f'{k}={v}' for k, v in DEFAULT_ENTRYPOINTS)})",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "kubelet.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"vectorload-dev kubelet: another kubelet uses {state_dir}") from None
        lock.write(str(os.getpid()))
        lock.flush()
        yield


async def _amain(args: argparse.Namespace, state_dir: Path) -> int:
    config = load_kubeconfig(args.kubeconfig or default_kubeconfig(), state_dir / "credentials")
    api = ApiClient(config)
    settings = Settings(
        node_name=args.node_name,
        state_dir=state_dir,
        server=config.server,
        ca_pem=config.ca_pem,
        backoff_base=args.backoff_base,
        backoff_max=args.backoff_max,
        max_grace=args.max_grace_period,
        pass_env=tuple(args.pass_env),
        entrypoints=parse_entrypoints(args.image_entrypoint),
    )
    kubelet = Kubelet(
        api,
        settings,
        max_pods=args.max_pods,
        heartbeat=args.heartbeat_interval,
        bind=not args.no_bind,
        scheduler_names=args.scheduler_name or ["default-scheduler", OWN_SCHEDULER],
        delete_node_on_exit=args.delete_node_on_exit,
        pod_network=args.pod_network,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await kubelet.run(stop)
    finally:
        await api.close()
    log.info("kubelet stopped")
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    state_dir: Path = (
        args.state_dir or Path.home() / ".cache" / "vectorload" / "kubelet" / args.node_name
    ).resolve()
    with _locked(state_dir):
        killed = kill_stale(state_dir / "processes")
        if killed:
            log.info("killed %d process(es) left by a previous run: %s", len(killed), killed)
        return asyncio.run(_amain(args, state_dir))
