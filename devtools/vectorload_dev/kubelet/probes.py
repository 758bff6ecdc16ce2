"""Readiness, liveness and startup probes: httpGet (against the pod IP), tcpSocket and exec."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from vectorload_dev.kubelet.podspec import Launch, SpecError
from vectorload_dev.kubelet.runner import run_once

Json = dict[str, Any]


def resolve_port(port: int | str, container: Json) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise SpecError(f"probe port {port!r} is not a named port of container {container.get('name')!r}")


@dataclass(frozen=True)
class ProbeTarget:
    pod_ip: str
    container: Json
    launch: Launch  # env and cwd for exec probes


async def probe_once(probe: Json, target: ProbeTarget) -> tuple[bool, str]:
    """Run one probe: (success, message)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            return await _http(probe["httpGet"], target, timeout)
        if "tcpSocket" in probe:
            return await _tcp(probe["tcpSocket"], target, timeout)
        if "exec" in probe:
            command = [str(part) for part in probe["exec"].get("command") or []]
            if not command:
                return False, "exec probe without command"
            launch = Launch(command, target.launch.env, target.launch.cwd)
            code, output = await run_once(launch, timeout)
            return code == 0, output.strip() or f"exit code {code}"
    except SpecError as exc:
        return False, str(exc)
    return False, f"unsupported probe handler {sorted(set(probe) & {'grpc'}) or sorted(probe)}"


async def _http(action: Json, target: ProbeTarget, limit: float) -> tuple[bool, str]:
    scheme = str(action.get("scheme", "HTTP")).lower()
    host = action.get("host") or target.pod_ip
    port = resolve_port(action["port"], target.container)
    path = str(action.get("path", "/"))
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": "kube-probe/1.33", "Accept": "*/*"}
    headers.update({h["name"]: h["value"] for h in action.get("httpHeaders") or []})
    context: ssl.SSLContext | bool = False
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url = f"{scheme}://{host}:{port}{path}"
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, force_close=True)) as session,
            session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=limit), allow_redirects=False
            ) as resp,
        ):
            await resp.read()
            ok = 200 <= resp.status < 400
            return ok, f"HTTP probe {url}: {resp.status}"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return False, f"HTTP probe {url} failed: {exc or type(exc).__name__}"


async def _tcp(action: Json, target: ProbeTarget, limit: float) -> tuple[bool, str]:
    host = action.get("host") or target.pod_ip
    port = resolve_port(action["port"], target.container)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), limit)
    except (OSError, TimeoutError) as exc:
        return False, f"TCP probe {host}:{port} failed: {exc or type(exc).__name__}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, f"TCP probe {host}:{port} connected"


async def probe_loop(
    probe: Json,
    target: ProbeTarget,
    on_result: Callable[[bool, str], Awaitable[None]],
    *,
    stop_on_success: bool = False,
) -> None:
    """Probe every `periodSeconds` after `initialDelaySeconds`; report each change of the thresholded
    result (successThreshold consecutive successes, failureThreshold consecutive failures)."""
    period = max(float(probe.get("periodSeconds", 10)), 0.1)
    success_threshold = max(int(probe.get("successThreshold", 1)), 1)
    failure_threshold = max(int(probe.get("failureThreshold", 3)), 1)
    await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
    current: bool | None = None
    successes = failures = 0
    while True:
        ok, message = await probe_once(probe, target)
        if ok:
            successes, failures = successes + 1, 0
        else:
            successes, failures = 0, failures + 1
        if ok and successes >= success_threshold and current is not True:
            current = True
            await on_result(True, message)
            if stop_on_success:
                return
        elif not ok and failures >= failure_threshold and current is not False:
            current = False
            await on_result(False, message)
        await asyncio.sleep(period)


def probe_settings(container: Mapping[str, Any]) -> dict[str, Json]:
    return {
        kind: dict(container[key])
        for kind, key in (
            ("startup", "startupProbe"),
            ("liveness", "livenessProbe"),
            ("readiness", "readinessProbe"),
        )
        if container.get(key)
    }
