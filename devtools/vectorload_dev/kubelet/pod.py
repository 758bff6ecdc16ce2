"""One pod's life on this node: IP, volumes, service-account identity, init containers, app
containers with restart policy, back-off and probes, truthful status, and termination."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from vectorload_dev.kubelet.api import ApiClient, ApiError, Json, q
from vectorload_dev.kubelet.ipam import AddressesExhausted, IpAllocator
from vectorload_dev.kubelet.podspec import (
    Launch,
    SpecError,
    Volume,
    plan_container,
    pod_volumes,
    referenced_objects,
    service_account_name,
)
from vectorload_dev.kubelet.probes import ProbeTarget, probe_loop, probe_settings
from vectorload_dev.kubelet.runner import Process
from vectorload_dev.kubelet.status import (
    HOST_IP,
    ContainerView,
    PodView,
    now_rfc3339,
    pod_status,
    will_restart,
    without_times,
)
from vectorload_dev.kubelet.tokens import Token, request_token, write_file, write_service_account_dir
from vectorload_dev.kubelet.volumes import fetch_objects, materialize

log = logging.getLogger("vectorload.kubelet.pod")

TRANSIENT = (ApiError, aiohttp.ClientError, OSError, TimeoutError)


@dataclass(frozen=True)
class Settings:
    node_name: str
    state_dir: Path
    server: str
    ca_pem: bytes | None
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    max_grace: float = 30.0
    pass_env: tuple[str, ...] = ()
    entrypoints: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass
class Services:
    """What every pod worker shares."""

    api: ApiClient
    settings: Settings
    ipam: IpAllocator
    allocatable: dict[str, str]


@dataclass
class Prepared:
    """Everything needed to plan a container's process."""

    volumes: dict[str, Volume]
    secrets: dict[str, dict[str, bytes] | None]
    config_maps: dict[str, dict[str, bytes] | None]
    service_account_dir: Path | None
    base_env: dict[str, str]
    tokens: list[tuple[Callable[[Token], None], str | None, int, Token]] = field(default_factory=list)


def backoff_delay(consecutive: int, base: float, cap: float) -> float:
    """No delay for the first restart, then base, 2*base, ... capped (Kubernetes: 10 s .. 5 min)."""
    return 0.0 if consecutive <= 0 else min(base * 2 ** (consecutive - 1), cap)


class ContainerRunner:
    def __init__(self, worker: PodWorker, spec: Json, view: ContainerView) -> None:
        self.worker = worker
        self.spec = spec
        self.view = view
        self.process: Process | None = None
        self.stopping = False
        self._probes: list[asyncio.Task[None]] = []

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def _terminated(self, code: int, reason: str, started: str, signal: int | None) -> Json:
        state: Json = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now_rfc3339(),
            "containerID": self.view.container_id,
        }
        if signal is not None:
            state["signal"] = signal
        return {"terminated": state}

    async def run_once(self, with_probes: bool) -> int | None:
        """Start the process and wait for it; None if it could not be started."""
        worker = self.worker
        try:
            launch = worker.plan(self.spec)
        except SpecError as exc:
            self.view.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            worker.publish()
            return None
        log_path = worker.logs_dir / f"{self.name}.log"
        record = worker.services.settings.state_dir / "processes" / f"{worker.uid}_{self.name}.json"
        try:
            self.process = await Process.start(launch, log_path, record)
        except OSError as exc:
            self.view.state = {"waiting": {"reason": "RunContainerError", "message": str(exc)}}
            worker.publish()
            return None
        if self.stopping:  # stopped while starting
            await self.process.stop(0)
        started = now_rfc3339()
        self.view.container_id = f"process://{self.process.pid}"
        self.view.state = {"running": {"startedAt": started}}
        probes = probe_settings(self.spec)
        self.view.started = "startup" not in probes
        self.view.ready = not with_probes or ("readiness" not in probes and self.view.started)
        worker.publish()
        log.info("%s: started container %s (pid %d)", worker.key, self.name, self.process.pid)
        if with_probes:
            self._start_probes(launch, probes)
        try:
            code = await self.process.wait()
        finally:
            for task in self._probes:
                task.cancel()
            self._probes.clear()
        reason = "Completed" if code == 0 else "Error"
        self.view.state = self._terminated(code, reason, started, self.process.signal)
        self.view.ready = False
        self.view.started = False
        worker.publish()
        log.info("%s: container %s exited with %d", worker.key, self.name, code)
        return code

    def _start_probes(self, launch: Launch, probes: dict[str, Json]) -> None:
        target = ProbeTarget(self.worker.pod_ip or HOST_IP, self.spec, launch)

        async def readiness(ok: bool, message: str) -> None:
            self.view.ready = ok
            self.worker.publish()

        async def liveness(ok: bool, message: str) -> None:
            if not ok and self.process is not None:
                log.info(
                    "%s: container %s failed liveness (%s): restarting", self.worker.key, self.name, message
                )
                await self.process.stop(self.worker.grace_period())

        def after_start() -> None:
            self.view.started = True
            if "readiness" in probes:
                self._spawn(probe_loop(probes["readiness"], target, readiness))
            else:
                self.view.ready = True
            if "liveness" in probes:
                self._spawn(probe_loop(probes["liveness"], target, liveness))
            self.worker.publish()

        async def startup(ok: bool, message: str) -> None:
            if ok:
                after_start()
            else:
                await liveness(False, message)

        if "startup" in probes:
            self._spawn(probe_loop(probes["startup"], target, startup, stop_on_success=True))
        else:
            after_start()

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        self._probes.append(asyncio.create_task(run()))

    async def _back_off(self, consecutive: int, code: int | None) -> bool:
        """Wait before the next start; False if the pod is being stopped meanwhile."""
        settings = self.worker.services.settings
        delay = backoff_delay(consecutive, settings.backoff_base, settings.backoff_max)
        if "terminated" in self.view.state:
            self.view.last_state = self.view.state
        if delay > 0:
            reason = (
                "CrashLoopBackOff" if code is not None else self.view.state.get("waiting", {}).get("reason")
            )
            message = f"back-off {delay:g}s restarting failed container={self.name} pod={self.worker.key}"
            if code is None:
                message = self.view.state.get("waiting", {}).get("message", message)
            self.view.state = {"waiting": {"reason": reason, "message": message}}
            self.worker.publish()
            await self.worker.sleep(delay)
        return not self.stopping

    async def run_init(self) -> bool:
        """Run an init container until it succeeds (or fails for good with restartPolicy Never)."""
        consecutive = 0
        while not self.stopping:
            code = await self.run_once(with_probes=False)
            if self.stopping:
                return False
            if code == 0:
                return True
            if code is not None and self.worker.restart_policy == "Never":
                return False
            if not await self._back_off(consecutive, code):
                return False
            consecutive += 1
            if code is not None:
                self.view.restart_count += 1
        return False

    async def supervise(self) -> None:
        """Run the container, restarting it per restartPolicy with exponential back-off."""
        settings = self.worker.services.settings
        consecutive = 0
        while not self.stopping:
            began = time.monotonic()
            code = await self.run_once(with_probes=True)
            if self.stopping:
                return
            if code is not None and not will_restart(self.worker.restart_policy, code):
                return
            if time.monotonic() - began > 2 * settings.backoff_max:
                consecutive = 0
            if code is None:
                consecutive = max(consecutive, 1)
            if not await self._back_off(consecutive, code):
                return
            consecutive += 1
            if code is not None:
                self.view.restart_count += 1

    async def stop(self, grace: float) -> None:
        self.stopping = True
        self.worker.wake()
        if self.process is not None:
            await self.process.stop(grace)
            running: Json | None = self.view.state.get("running")
            if running is not None and self.process.returncode is not None:
                code = self.process.returncode
                self.view.state = self._terminated(
                    code, "Error" if code else "Completed", running["startedAt"], self.process.signal
                )
                self.view.ready = self.view.started = False


class PodWorker:
    def __init__(self, services: Services, pod: Json) -> None:
        self.services = services
        self.pod = pod
        meta: Json = pod["metadata"]
        self.uid = str(meta["uid"])
        self.namespace = str(meta["namespace"])
        self.name = str(meta["name"])
        self.key = f"{self.namespace}/{self.name}"
        settings = services.settings
        self.dir = settings.state_dir / "pods" / self.uid
        self.logs_dir = settings.state_dir / "logs" / f"{self.namespace}_{self.name}_{self.uid}"
        spec: Json = pod.get("spec", {})
        self.restart_policy = str(spec.get("restartPolicy", "Always"))
        self.init_runners = [
            ContainerRunner(self, c, ContainerView(c["name"], str(c.get("image", ""))))
            for c in spec.get("initContainers") or []
        ]
        self.runners = [
            ContainerRunner(self, c, ContainerView(c["name"], str(c.get("image", ""))))
            for c in spec.get("containers") or []
        ]
        self.view = PodView(
            restart_policy=self.restart_policy,
            pod_ip=None,
            start_time=str((pod.get("status") or {}).get("startTime") or now_rfc3339()),
            init_containers=[r.view for r in self.init_runners],
            containers=[r.view for r in self.runners],
            initialized=not self.init_runners,
        )
        self.prepared: Prepared | None = None
        self.deleting = asyncio.Event()
        self.gone = False
        self.finished = False  # terminated and deleted
        self.done = asyncio.Event()
        self._wake = asyncio.Event()
        self._dirty = asyncio.Event()
        self._last_sent: Json = {}
        self._old_status: Json = dict(pod.get("status") or {})
        self._tasks: list[asyncio.Task[None]] = []
        self._main: asyncio.Task[None] | None = None

    # ----- inputs from the kubelet -------------------------------------------------------------
    def start(self) -> None:
        self._main = asyncio.create_task(self._run(), name=f"pod {self.key}")
        self._tasks.append(asyncio.create_task(self._status_loop(), name=f"status {self.key}"))

    def update(self, pod: Json) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()
            self.wake()

    def removed(self) -> None:
        """The pod object is gone from the API (force-deleted): stop without deleting it again."""
        self.gone = True
        self.deleting.set()
        self.wake()

    # ----- helpers -----------------------------------------------------------------------------
    @property
    def pod_ip(self) -> str | None:
        return self.view.pod_ip

    def wake(self) -> None:
        self._wake.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but return early when the pod is being deleted or stopped."""
        self._wake.clear()
        if self.deleting.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def publish(self) -> None:
        self._dirty.set()

    def grace_period(self) -> float:
        meta: Json = self.pod["metadata"]
        seconds = meta.get("deletionGracePeriodSeconds")
        if seconds is None:
            seconds = self.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        return float(min(float(seconds), self.services.settings.max_grace))

    def _pod_with_status(self) -> Json:
        pod = dict(self.pod)
        status = dict(pod.get("status") or {})
        status.update({"hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}]})
        if self.pod_ip:
            status.update({"podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}]})
        pod["status"] = status
        return pod

    def plan(self, container: Json) -> Launch:
        prepared = self.prepared
        if prepared is None:
            raise SpecError("pod volumes are not ready")
        return plan_container(
            self._pod_with_status(),
            container,
            volumes=prepared.volumes,
            service_account_dir=prepared.service_account_dir,
            base_env=prepared.base_env,
            secrets=prepared.secrets,
            config_maps=prepared.config_maps,
            allocatable=self.services.allocatable,
            default_cwd=self.dir,
            entrypoints=dict(self.services.settings.entrypoints),
        )

    # ----- status ------------------------------------------------------------------------------
    def current_status(self) -> Json:
        return pod_status(self.view, self._old_status)

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.05)  # coalesce bursts
            self._dirty.clear()
            await self.send_status()

    async def send_status(self) -> None:
        status = self.current_status()
        if without_times(status) == without_times(self._last_sent):
            return
        try:
            path = f"/api/v1/namespaces/{q(self.namespace)}/pods/{q(self.name)}/status"
            await self.services.api.merge_patch(path, {"status": status})
            self._last_sent = status
            self._old_status = status
        except ApiError as exc:
            if exc.status == 404:
                return
            log.warning("%s: status update failed: %s", self.key, exc)
            self._retry_status()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("%s: status update failed: %s", self.key, exc)
            self._retry_status()

    def _retry_status(self) -> None:
        async def later() -> None:
            await asyncio.sleep(1.0)
            self.publish()

        self._tasks.append(asyncio.create_task(later()))

    # ----- the pod's life ----------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            phase = (self.pod.get("status") or {}).get("phase")
            if phase not in ("Succeeded", "Failed") and not self.deleting.is_set() and await self._sandbox():
                await self._prepare_until_ready()
                if self.prepared is not None and await self._initialize():
                    for runner in self.runners:
                        self._tasks.append(
                            asyncio.create_task(runner.supervise(), name=f"{self.key}/{runner.name}")
                        )
            await self.deleting.wait()
            await self._terminate()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: pod worker failed", self.key)
            await self.deleting.wait()
            await self._terminate()
        finally:
            self.done.set()

    async def _sandbox(self) -> bool:
        """The pod's IP (its previous one when still free) and directories."""
        preferred = (self.pod.get("status") or {}).get("podIP")
        while not self.deleting.is_set():
            try:
                self.view.pod_ip = self.services.ipam.allocate(self.uid, preferred)
                break
            except AddressesExhausted as exc:
                self.view.reason, self.view.message = "NoIPAvailable", str(exc)
                self.publish()
                await self.sleep(5)
        if self.deleting.is_set():
            return False
        self.view.reason = self.view.message = ""
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.view.sandbox_ready = True
        self.publish()
        log.info("%s: pod IP %s", self.key, self.view.pod_ip)
        return True

    async def _prepare_until_ready(self) -> None:
        delay = 1.0
        while not self.deleting.is_set():
            try:
                self.prepared = await self._prepare()
                return
            except (SpecError, *TRANSIENT) as exc:
                log.warning("%s: cannot prepare pod: %s", self.key, exc)
                for view in self.view.containers + self.view.init_containers:
                    view.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
                self.publish()
                await self.sleep(delay)
                delay = min(delay * 2, self.services.settings.backoff_max)

    async def _prepare(self) -> Prepared:
        api = self.services.api
        settings = self.services.settings
        pod = self._pod_with_status()
        secret_names, config_map_names = referenced_objects(pod)
        secrets = await fetch_objects(api, self.namespace, "secrets", secret_names)
        config_maps = await fetch_objects(api, self.namespace, "configmaps", config_map_names)
        volumes = pod_volumes(pod, self.dir, settings.state_dir)
        token_files = materialize(
            pod, volumes, secrets=secrets, config_maps=config_maps, allocatable=self.services.allocatable
        )
        prepared = Prepared(volumes, secrets, config_maps, None, self._base_env())
        account = service_account_name(pod)
        for directory, token_file in token_files:
            path = directory / token_file.path

            def write_token(token: Token, path: Path = path, mode: int = token_file.mode) -> None:
                write_file(path, token.token.encode(), mode)

            token = await request_token(
                api,
                pod,
                account,
                audience=token_file.audience,
                expiration_seconds=token_file.expiration_seconds,
            )
            write_token(token)
            prepared.tokens.append((write_token, token_file.audience, token_file.expiration_seconds, token))
        if await self._automount(account):
            sa_dir = self.dir / "serviceaccount"

            def write_identity(token: Token) -> None:
                write_service_account_dir(
                    sa_dir,
                    token=token.token,
                    ca_pem=settings.ca_pem,
                    namespace=self.namespace,
                    server=settings.server,
                )

            token = await request_token(api, pod, account)
            write_identity(token)
            prepared.tokens.append((write_identity, None, 3607, token))
            prepared.service_account_dir = sa_dir
            prepared.base_env["KUBECONFIG"] = str(sa_dir / "kubeconfig")
        if prepared.tokens:
            self._tasks.append(asyncio.create_task(self._refresh_tokens(prepared), name=f"tokens {self.key}"))
        return prepared

    async def _automount(self, account: str) -> bool:
        explicit = self.pod.get("spec", {}).get("automountServiceAccountToken")
        if explicit is not None:
            return bool(explicit)
        path = f"/api/v1/namespaces/{q(self.namespace)}/serviceaccounts/{q(account)}"
        try:
            service_account = await self.services.api.get(path)
        except ApiError as exc:
            if exc.status == 404:
                raise SpecError(f'serviceaccount "{account}" not found') from exc
            raise
        return service_account.get("automountServiceAccountToken") is not False

    async def _refresh_tokens(self, prepared: Prepared) -> None:
        """Mint tokens again at 80 % of their lifetime."""
        while True:
            due = min(token.refresh_due() for _, _, _, token in prepared.tokens)
            wait = (due - now_datetime()).total_seconds()
            await asyncio.sleep(min(max(wait, 1.0), 300.0))
            for index, (write, audience, expiration, token) in enumerate(prepared.tokens):
                if token.refresh_due() > now_datetime():
                    continue
                try:
                    fresh = await request_token(
                        self.services.api,
                        self.pod,
                        service_account_name(self.pod),
                        audience=audience,
                        expiration_seconds=expiration,
                    )
                except TRANSIENT as exc:
                    log.warning("%s: token refresh failed: %s", self.key, exc)
                    continue
                write(fresh)
                prepared.tokens[index] = (write, audience, expiration, fresh)

    def _base_env(self) -> dict[str, str]:
        settings = self.services.settings
        port = settings.server.rsplit(":", 1)[-1].strip("/") if settings.server.count(":") >= 2 else "443"
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
        env = {
            "PATH": path,
            "HOME": os.environ.get("HOME", str(self.dir)),
            "HOSTNAME": self.name,
            "TMPDIR": str(self.dir / "tmp"),
            "KUBERNETES_SERVICE_HOST": HOST_IP,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{HOST_IP}:{port}",
        }
        for name in ("LANG", "LC_ALL", "TZ", *settings.pass_env):
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    async def _initialize(self) -> bool:
        for runner in self.init_runners:
            if not await runner.run_init():
                if not self.deleting.is_set():
                    self.view.init_failed = True
                    self.publish()
                return False
        self.view.initialized = True
        self.publish()
        return True

    # ----- the end -----------------------------------------------------------------------------
    async def stop_processes(self, grace: float) -> None:
        runners = self.init_runners + self.runners
        await asyncio.gather(*(runner.stop(grace) for runner in runners))

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    async def _terminate(self) -> None:
        """deletionTimestamp set (or the pod vanished): stop the processes within the grace period,
        then delete the pod object for good (grace period 0)."""
        grace = self.grace_period()
        log.info("%s: terminating (grace %gs)", self.key, grace)
        await self.stop_processes(grace)
        self._cancel_tasks()
        self.services.ipam.release(self.uid)
        if not self.gone:
            path = f"/api/v1/namespaces/{q(self.namespace)}/pods/{q(self.name)}"
            body: Json = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid},
            }
            for attempt in range(5):
                try:
                    await self.services.api.request("DELETE", path, body=body)
                    break
                except ApiError as exc:
                    if exc.status in (404, 409):
                        break
                    log.warning("%s: delete failed: %s", self.key, exc)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("%s: delete failed: %s", self.key, exc)
                await asyncio.sleep(0.5 * (attempt + 1))
        shutil.rmtree(self.dir, ignore_errors=True)
        self.finished = True
        log.info("%s: deleted", self.key)

    async def shutdown(self, grace: float) -> None:
        """The kubelet stops: stop every process, report the containers terminated and not ready."""
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        await self.stop_processes(grace)
        self._cancel_tasks()
        if not self.gone and not self.finished:
            for view in self.view.containers:
                view.ready = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.send_status(), timeout=3)
        self.services.ipam.release(self.uid)

    async def wait_done(self) -> None:
        await self.done.wait()


def now_datetime() -> datetime:
    return datetime.now(UTC)
