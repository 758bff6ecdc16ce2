"""sha256 of segment files in a helper process, so hashing runs on another core while this
process loads: hnswlib's `load_index` holds the GIL for its whole duration, so a hashing thread
of the same process would stall behind every index load.

The querynode opens each file itself and hands the *open descriptor* to the helper
(`sha256_helper`) over a `SOCK_SEQPACKET` socket (SCM_RIGHTS). The helper hashes exactly that
open file with `pread` and answers `(bytes read, sha256)`. The loader waits for that answer
before anything parses the file, and then parses the same open file, so the bytes checked and
the bytes loaded come from one inode whatever happens to the path meanwhile.

When the helper cannot be started, or dies, the answer says so (`Ticket.lost`) and the caller
hashes the file itself (`hash_fd`): verification never depends on the helper being there.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import sha256_helper
from .sha256_helper import READY, REPLY, REQUEST, hash_fd

__all__ = ["Hasher", "Ticket", "hash_fd", "lost_ticket"]

_START_TIMEOUT = 10.0
_RESTART_INTERVAL = 5.0  # after the helper died, try to start a new one at most this often
_HELPER_SCRIPT = Path(sha256_helper.__file__)

log = logging.getLogger("vectorload.querynode")


class Ticket:
    """The answer for one submitted descriptor."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.size = -1
        self.digest = b""
        self.errno = 0  # the helper could not read the file
        self.lost = False  # no helper answered: the caller must hash the file itself

    def _resolve(self, size: int, digest: bytes) -> None:
        if size < 0:
            self.errno = -size
        else:
            self.size, self.digest = size, digest
        self._done.set()

    def _lose(self) -> None:
        self.lost = True
        self._done.set()

    def wait(self, cancel: threading.Event, poll: float = 0.02) -> bool:
        """Wait for the answer; False as soon as `cancel` is set."""
        while not self._done.wait(poll):
            if cancel.is_set():
                return False
        return True


def lost_ticket() -> Ticket:
    ticket = Ticket()
    ticket._lose()
    return ticket


class Hasher:
    """Submits descriptors to one helper process; a reader thread hands out the answers."""

    def __init__(self, helper: bool = True) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, Ticket] = {}
        self._next_id = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._enabled = helper
        self._closed = False
        self._last_start = 0.0
        if helper:
            with self._lock:
                self._start_locked()

    @property
    def helper_pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def _start_locked(self) -> None:
        self._last_start = time.monotonic()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # by path, isolated and without site: the helper needs the standard library only
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_HELPER_SCRIPT), str(child.fileno())],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            parent.close()
            log.warning("cannot start the sha256 helper (%s); files are hashed in the loading thread", exc)
            return
        finally:
            child.close()
        parent.settimeout(_START_TIMEOUT)
        try:
            ready = parent.recv(len(READY))
        except OSError:
            ready = b""
        if ready != READY:
            parent.close()
            _reap(proc)
            log.warning("the sha256 helper did not start; files are hashed in the loading thread")
            return
        parent.settimeout(None)
        self._proc, self._sock = proc, parent
        threading.Thread(
            target=self._read_replies, args=(parent, proc), name="sha256-replies", daemon=True
        ).start()

    def submit(self, fd: int) -> Ticket:
        """Queue `fd` (an open regular file, kept open by the caller until the answer) for hashing."""
        with self._lock:
            if self._closed or not self._enabled:
                return lost_ticket()
            if self._sock is None and time.monotonic() - self._last_start >= _RESTART_INTERVAL:
                self._start_locked()
            sock = self._sock
            if sock is None:
                return lost_ticket()
            request_id = self._next_id
            self._next_id += 1
            ticket = self._pending[request_id] = Ticket()
        try:  # outside the lock: the reader thread must always be able to drain replies
            socket.send_fds(sock, [REQUEST.pack(request_id)], [fd])
        except OSError:
            with self._lock:
                self._pending.pop(request_id, None)
            ticket._lose()
        return ticket

    def _read_replies(self, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        while True:
            try:
                msg = sock.recv(REPLY.size)
            except OSError:
                msg = b""
            if len(msg) != REPLY.size:
                break
            request_id, size, digest = REPLY.unpack(msg)
            with self._lock:
                ticket = self._pending.pop(request_id, None)
            if ticket is not None:
                ticket._resolve(size, digest)
        with self._lock:  # the helper is gone: every open question is answered "lost"
            lost = list(self._pending.values())
            self._pending.clear()
            if self._sock is sock:
                self._sock, self._proc = None, None
                if not self._closed:
                    log.warning("the sha256 helper exited (code %s); it is restarted on demand", proc.poll())
        for ticket in lost:
            ticket._lose()
        sock.close()
        _reap(proc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sock, proc = self._sock, self._proc
            self._sock, self._proc = None, None
        if sock is not None:
            with contextlib.suppress(OSError):  # the helper sees EOF and exits; the reader ends
                sock.shutdown(socket.SHUT_RDWR)
        if proc is not None:
            _reap(proc)


def _reap(proc: subprocess.Popen[bytes], timeout: float = 2.0) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
