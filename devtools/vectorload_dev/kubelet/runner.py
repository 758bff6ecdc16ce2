"""Container processes: start (own process group, dies with the kubelet), stop (SIGTERM, grace,
SIGKILL to the whole group), and a record of every live process in the state directory so a later
kubelet run can kill what a crashed one left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

from vectorload_dev.kubelet.podspec import Launch
from vectorload_dev.procutil import die_with_parent


def start_time(pid: int) -> int | None:
    """The process' start time in clock ticks since boot (guards against pid reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(") ", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def _write_record(record: Path, pid: int, argv: list[str]) -> None:
    record.write_text(json.dumps({"pid": pid, "start": start_time(pid), "argv": argv}))


def signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class Process:
    """One running container process; its process group is its own (pgid == pid)."""

    def __init__(self, proc: asyncio.subprocess.Process, record: Path) -> None:
        self._proc = proc
        self._record = record
        self.pid = proc.pid
        self.returncode: int | None = None

    @classmethod
    async def start(cls, launch: Launch, log_path: Path, record: Path) -> Process:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        record.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *die_with_parent(launch.argv),
                env=launch.env,
                cwd=str(launch.cwd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _write_record(record, proc.pid, launch.argv)
        return cls(proc, record)

    async def wait(self) -> int:
        """Wait for the process to exit; then kill anything left in its group. Returns the exit
        status as Kubernetes reports it (128 + signal for a killed process)."""
        code = await self._proc.wait()
        signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            self._record.unlink()
        self.returncode = 128 - code if code < 0 else code
        return self.returncode

    @property
    def signal(self) -> int | None:
        code = self._proc.returncode
        return -code if code is not None and code < 0 else None

    async def stop(self, grace: float) -> None:
        """SIGTERM the group, wait up to `grace` seconds, then SIGKILL it."""
        if self._proc.returncode is None:
            signal_group(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._proc.wait()), timeout=max(grace, 0.0))
            except TimeoutError:
                signal_group(self.pid, signal.SIGKILL)
        await self.wait()


def kill_stale(record_dir: Path) -> list[int]:
    """SIGKILL the process groups a previous kubelet run recorded (if they still are those
    processes), and forget the records."""
    killed: list[int] = []
    if not record_dir.is_dir():
        return killed
    for record in record_dir.glob("*.json"):
        try:
            data = json.loads(record.read_text())
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            record.unlink(missing_ok=True)
            continue
        # a pid cannot be reused while it names a live process group: if the leader is gone, a group
        # of that id still holds our grandchildren; if a process of that pid started at another
        # time, the pid was reused after our group died
        now = start_time(pid)
        if (now is None or now == data.get("start")) and signal_group(pid, signal.SIGKILL):
            killed.append(pid)
        record.unlink(missing_ok=True)
    return killed


async def run_once(launch: Launch, limit: float) -> tuple[int, str]:
    """Run a command to completion (exec probes): exit code and up to 1 KiB of output."""
    proc = await asyncio.create_subprocess_exec(
        *die_with_parent(launch.argv),
        env=launch.env,
        cwd=str(launch.cwd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=limit)
    except TimeoutError:
        signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()
        return -1, f"command timed out after {limit:g}s"
    finally:
        signal_group(proc.pid, signal.SIGKILL)
    return int(proc.returncode or 0), output[:1024].decode(errors="replace")
