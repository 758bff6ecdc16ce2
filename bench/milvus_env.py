"""A real Milvus for `bench_vs_milvus`, kept out of the project's environment.

`ensure_venv` installs the embedded Milvus standalone (PyPI `milvus==2.3.5`, which bundles its
binaries) and a pymilvus of the same generation into a venv of its own under the bench cache --
not a project dependency: the project will pin a newer pymilvus for its proxy, and pymilvus 2.3.5's
open-ended requirements no longer resolve to a working set today (marshmallow 4 breaks its
`environs`, protobuf 5+ its generated code), so the whole set is pinned to releases of January 2024.

`PymilvusDriver` runs `bench/milvus_driver.py` with that venv's python and speaks its line
protocol. In `serve` mode the driver starts Milvus in a private network namespace (Milvus 2.3.5
binds its gRPC and HTTP ports on all interfaces, hard-coded); `isolation_report` checks from the
outside, in /proc, that none of Milvus' listening sockets is in this machine's network namespace
and that its namespace has no interface but `lo`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from vectorload_dev.procutil import die_with_parent

MILVUS_VERSION = "2.3.5"
PINS = (
    f"milvus=={MILVUS_VERSION}",
    "pymilvus==2.3.5",
    "grpcio==1.58.0",
    "protobuf==4.25.2",
    "marshmallow==3.20.2",
    "numpy==1.26.3",
    "pandas==2.1.4",
    "pyarrow==15.0.0",
)
DEFAULT_MILVUS_CACHE = Path(
    os.environ.get(
        "VECTORLOAD_BENCH_MILVUS_CACHE",
        Path.home() / ".cache" / "vectorload" / "bench" / f"milvus-{MILVUS_VERSION}",
    )
)
DRIVER = Path(__file__).resolve().parent / "milvus_driver.py"


def ensure_venv(cache: Path) -> Path:
    """The python of `cache`/venv with `PINS` installed (created on first use; a stamp file
    records the pins, so changing them rebuilds it). Binaries are unpacked to `cache`/bin later."""
    venv = cache / "venv"
    python = venv / "bin" / "python"
    stamp = venv / ".bench-pins"
    wanted = "\n".join(PINS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"installing Milvus {MILVUS_VERSION} and pymilvus into {venv} (once) ...", flush=True)
    if venv.exists():
        shutil.rmtree(venv)
    cache.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *PINS], check=True)
    subprocess.run([str(python), "-c", "import milvus, pymilvus"], check=True)
    stamp.write_text(wanted)
    return python


class DriverError(RuntimeError):
    pass


TOKEN_ENV = "VECTORLOAD_BENCH_MILVUS_TOKEN"


class PymilvusDriver:
    """`milvus_driver.py` as a child process: `serve` (start Milvus, then be its client) or
    `connect` (be the client of an existing Milvus-API endpoint, e.g. vectorload's proxy)."""

    def __init__(
        self, python: Path, args: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.proc: subprocess.Popen[str] = subprocess.Popen(
            die_with_parent([str(python), str(DRIVER), *args]),
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.hello = self._read()

    @classmethod
    def serve(cls, python: Path, data_dir: Path, bin_base: Path, log_path: Path) -> PymilvusDriver:
        return cls(python, ["serve", "--data-dir", str(data_dir), "--bin-base", str(bin_base)], log_path)

    @classmethod
    def connect(cls, python: Path, host: str, port: int, log_path: Path, token: str = "") -> PymilvusDriver:
        """The driver as a client of `host:port`; `token` (user:password) reaches it through its
        environment, not its command line (visible in /proc to every user)."""
        args = ["connect", "--host", host, "--port", str(port)]
        if token:
            args += ["--token-env", TOKEN_ENV]
        return cls(python, args, log_path, {TOKEN_ENV: token} if token else None)

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(30)
            raise DriverError(f"the Milvus driver exited ({self.proc.returncode}): {self.log_tail()}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise DriverError(f"{answer.get('error')} (driver log: {self.log_path})")
        return answer

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def close(self, timeout: float = 90.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, DriverError, ValueError):
                self.request("stop")
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


# --- /proc: process trees, sockets, network namespaces -------------------------------------------


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(p) for p in (task / "children").read_text().split()]
    return out


def tree_rss(pid: int) -> int:
    """VmRSS summed over the process tree, bytes (shared pages of several processes count once
    per process -- a standalone Milvus is one process, so this is exact for it)."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes: set[str] = set()
    for p in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{p}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    return inodes


def _hex_address(text: str) -> str:
    """`0100007F:4E20` (/proc/net/tcp, little-endian words) -> `127.0.0.1:20000`."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        address = ".".join(str(b) for b in words)
    else:
        address = "[" + ":".join(words[i : i + 2].hex() for i in range(0, 16, 2)) + "]"
        if words == bytes(16):
            address = "[::]"
        elif words[:12] == bytes(10) + b"\xff\xff":
            address = ".".join(str(b) for b in words[12:])
    return f"{address}:{int(port, 16)}"


def _listeners(netns_pid: int | str) -> dict[str, str]:
    """inode -> `proto address:port` of listening TCP and bound UDP sockets in the network
    namespace of process `netns_pid` ('self' for ours)."""
    found: dict[str, str] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        with contextlib.suppress(OSError):
            for row in Path(f"/proc/{netns_pid}/net/{proto}").read_text().splitlines()[1:]:
                cols = row.split()
                state, inode = cols[3], cols[9]
                if (proto.startswith("tcp") and state == "0A") or (proto.startswith("udp") and state == "07"):
                    found[inode] = f"{proto} {_hex_address(cols[1])}"
    return found


def _is_loopback(address: str) -> bool:
    host = address.split(" ", 1)[1].rsplit(":", 1)[0]
    return host.startswith("127.") or host == "[0000:0000:0000:0000:0000:0000:0000:0001]"


def isolation_report(pid: int) -> dict[str, Any]:
    """Where Milvus (process tree of `pid`) listens, seen from outside. Raises if any of its
    sockets listens on a non-loopback address of this machine's network namespace."""
    pids = process_tree(pid)
    inodes = _socket_inodes(pids)
    theirs = {i: a for i, a in _listeners(pid).items() if i in inodes}
    ours = {i: a for i, a in _listeners("self").items() if i in inodes}
    exposed = sorted(a for a in ours.values() if not _is_loopback(a))
    netns = os.readlink(f"/proc/{pid}/ns/net")
    interfaces = [
        line.split(":")[0].strip() for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    ]
    ss = shutil.which("ss")
    host_ss = ""
    if ss:
        out = subprocess.run([ss, "-ltnup"], capture_output=True, text=True, check=False).stdout
        host_ss = "\n".join(line for line in out.splitlines() if f"pid={pid}," in line)
    report = {
        "milvus_pids": pids,
        "milvus_netns": netns,
        "bench_netns": os.readlink("/proc/self/ns/net"),
        "interfaces_in_milvus_netns": interfaces,
        "listeners_in_milvus_netns": sorted(theirs.values()),
        "milvus_listeners_in_bench_netns": sorted(ours.values()),
        "host_ss_ltnup_lines_of_milvus": host_ss,
    }
    if exposed:
        raise DriverError(f"Milvus listens beyond loopback in this machine's network: {exposed}")
    if netns != report["bench_netns"] and interfaces != ["lo"]:
        raise DriverError(f"Milvus' network namespace has interfaces {interfaces}, expected only lo")
    return report
