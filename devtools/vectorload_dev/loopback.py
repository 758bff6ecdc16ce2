"""Loopback addresses and ports for local processes, and one slot of them per test run, so that
two runs on one machine never bind each other's addresses.

Linux routes all of 127.0.0.0/8 to `lo`, so any 127.a.b.c can be bound without setup. A test run
holds slot N (2-254) by an exclusive `flock` on `<tmp>/vectorload-loopback/slot-N.lock`; the kernel
drops the lock when the process ends, however it ends, so a killed run frees its slot and leaves
nothing to clean up. The run then uses only 127.N.0.0/16:

    127.N.0.1          the run's own host address (servers on free ports: operator metrics, health)
    127.N.1-9.0/24     pod networks, one per process kubelet of the run (`pod_network(node)`)
    127.N.10-19.x      test querynodes (`querynode_hosts()`)
    127.N.20-249.x     operator test pools (`pool_hosts()`)

127.0.x.y is left to `make demo` and a kubelet started by hand (pod network 127.0.0.0/24) and
127.1.x.y to the benchmarks. The control plane stays on 127.0.0.1 with ports the kernel hands
out (its serving certificate names 127.0.0.1); a bound port is never handed out twice.

`VECTORLOAD_LOOPBACK_SLOT=N` pins the slot (still locked: a clash is an error, not a collision);
`VECTORLOAD_LOOPBACK_LOCKS` moves the lock directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SLOT_ENV = "VECTORLOAD_LOOPBACK_SLOT"
LOCKS_ENV = "VECTORLOAD_LOOPBACK_LOCKS"
FIRST_RUN_SLOT = 2
LAST_SLOT = 254
POD_NETWORKS = range(1, 10)  # third octets: one /24 per kubelet of a run
QUERYNODE_THIRDS = (10, 19)
POOL_THIRDS = (20, 249)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def loopback_hosts(second_octet: int, third_from: int = 1, third_to: int = 249) -> Iterator[str]:
    """Distinct loopback addresses `127.<second>.<third>.<fourth>`, third in [third_from,
    third_to], fourth 2-249, in order."""
    if not 0 <= second_octet <= 255 or not 0 <= third_from <= third_to <= 255:
        raise ValueError(f"no loopback range 127.{second_octet}.{third_from}-{third_to}.x")
    for third, fourth in itertools.product(range(third_from, third_to + 1), range(2, 250)):
        yield f"127.{second_octet}.{third}.{fourth}"


@dataclass(frozen=True)
class LoopbackSlot:
    """127.<index>.0.0/16, the addresses one test run may bind."""

    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index <= LAST_SLOT:
            raise ValueError(f"loopback slot {self.index} is not in 0-{LAST_SLOT}")

    @property
    def prefix(self) -> str:
        """`127.N.`: every address of the slot starts with it."""
        return f"127.{self.index}."

    @property
    def network(self) -> str:
        return f"127.{self.index}.0.0/16"

    @property
    def host(self) -> str:
        """The run's own address for servers on free ports."""
        return f"127.{self.index}.0.1"

    def contains(self, address: str) -> bool:
        try:
            return ipaddress.IPv4Address(address) in ipaddress.IPv4Network(self.network)
        except ValueError:
            return False

    def pod_network(self, number: int) -> str:
        """The `number`-th pod network (0-based) of the slot, `127.N.<1+number>.0/24`."""
        if number not in range(len(POD_NETWORKS)):
            raise ValueError(f"a run has {len(POD_NETWORKS)} pod networks, not {number + 1}")
        return f"127.{self.index}.{POD_NETWORKS[number]}.0/24"

    def querynode_hosts(self) -> Iterator[str]:
        return loopback_hosts(self.index, *QUERYNODE_THIRDS)

    def pool_hosts(self) -> Iterator[str]:
        return loopback_hosts(self.index, *POOL_THIRDS)


class SlotsExhausted(RuntimeError):
    pass


class SlotLock:
    """A slot held by this process: the open, flock'd lock file. `release()` (or the end of the
    process) gives it back."""

    def __init__(self, slot: LoopbackSlot, fd: int, path: Path) -> None:
        self.slot = slot
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def lock_dir() -> Path:
    explicit = os.environ.get(LOCKS_ENV)
    return Path(explicit) if explicit else Path(tempfile.gettempdir()) / "vectorload-loopback"


def _try_lock(directory: Path, index: int) -> SlotLock | None:
    path = directory / f"slot-{index}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):  # who holds it, for a person looking at the directory
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return SlotLock(LoopbackSlot(index), fd, path)


def acquire_slot(
    directory: Path | None = None,
    *,
    wanted: int | None = None,
    first: int = FIRST_RUN_SLOT,
    last: int = LAST_SLOT,
) -> SlotLock:
    """Lock the slot `wanted`, or else the lowest free one in [first, last]."""
    directory = directory or lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # shared by every user of the machine, like /tmp
        if directory.stat().st_uid == os.getuid():
            directory.chmod(0o1777)
    if wanted is not None:
        LoopbackSlot(wanted)  # validates the index
        held = _try_lock(directory, wanted)
        if held is None:
            raise SlotsExhausted(f"loopback slot {wanted} ({SLOT_ENV}) is held by another run ({directory})")
        return held
    for index in range(first, last + 1):
        held = _try_lock(directory, index)
        if held is not None:
            return held
    raise SlotsExhausted(f"all loopback slots {first}-{last} are held by other runs ({directory})")


class PodNetworks:
    """The pod networks of one slot, handed out per kubelet: the same /24 each time for one
    owner (a restarted kubelet keeps its pods' addresses), another for each new owner."""

    def __init__(self, slot: LoopbackSlot) -> None:
        self.slot = slot
        self._by_owner: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, owner: str) -> str:
        with self._lock:
            if owner not in self._by_owner:
                self._by_owner[owner] = self.slot.pod_network(len(self._by_owner))
            return self._by_owner[owner]


_lock = threading.Lock()
_run: SlotLock | None = None
_run_networks: PodNetworks | None = None


def run_slot() -> LoopbackSlot:
    """This process's slot, locked on first use and held until the process ends."""
    global _run
    with _lock:
        if _run is None:
            pinned = os.environ.get(SLOT_ENV)
            if pinned is not None and not pinned.strip().isdigit():
                raise ValueError(f"{SLOT_ENV}={pinned!r} is not a slot number (0-{LAST_SLOT})")
            _run = acquire_slot(wanted=int(pinned) if pinned else None)
        return _run.slot


def pod_network(owner: str) -> str:
    """The pod network of kubelet `owner` (its node name) in this run's slot."""
    global _run_networks
    slot = run_slot()
    with _lock:
        if _run_networks is None:
            _run_networks = PodNetworks(slot)
    return _run_networks(owner)
