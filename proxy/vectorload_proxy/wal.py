"""The proxy's write-ahead log: an acknowledged write is on the shared storage, fsynced.

Why: a write is acknowledged long before its rows are a sealed segment (the sealer batches every
few hundred ms), so between the two it lives here. Layout, under the storage root:

    .wal/<instance>/lock                 flock'd by the proxy process that owns the log
    .wal/<instance>/<first seq:016d>.log records, appended; a new file after each seal
    .wal/<instance>/checkpoint.json      {"formatVersion": 1, "sealed": N}: every record with
                                         seq <= N is in storage (segment or delta)

A record is `magic "VLW1" | u32 payload length | u32 crc32 | u64 seq | payload` (little endian;
the CRC covers the seq's 8 bytes and the payload); the payload is one MessagePack map (`Record`).
Appends are group-committed: callers queue records, one writer thread writes whatever is queued
and fsyncs once, then resolves every caller's future — concurrent requests share one fsync. A torn
or corrupt tail (a crash mid-append) ends the log: replay stops at the first bad record, which
was never acknowledged (its fsync had not returned).

Each proxy process opens a log of its own (a fresh instance id) and holds its flock. A log whose
flock can be taken belongs to a process that is gone: the sealer adopts it, replays the records
above its checkpoint and removes it once they are sealed.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from vectorload.storage.atomic import fsync_dir, write_json_atomic

log = logging.getLogger(__name__)

WAL_DIR = ".wal"
LOCK_FILE = "lock"
CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = 1
MAGIC = b"VLW1"
HEADER = struct.Struct("<4sIIQ")
MAX_RECORD_BYTES = 1 << 30


class Record(msgspec.Struct, frozen=True):
    """One logged write. `op`: insert | upsert | delete. Inserts and upserts carry their rows
    columnar (vectors as float32 bytes, row-major); an upsert also deletes its keys at `ts` in
    every partition; a delete carries keys only (`partition` None: every partition)."""

    op: str
    collection: str
    ts: int
    pks: list[Any]
    partition: str | None = None
    vectors: dict[str, bytes] = {}
    scalars: dict[str, list[Any]] = {}
    dynamic: list[dict[str, Any]] | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Record)


def encode(seq: int, record: Record) -> bytes:
    payload = _encoder.encode(record)
    seq_bytes = struct.pack("<Q", seq)
    crc = zlib.crc32(payload, zlib.crc32(seq_bytes))
    return HEADER.pack(MAGIC, len(payload), crc, seq) + payload


def read_records(path: Path) -> Iterator[tuple[int, Record]]:
    """The records of one log file in order, stopping at a torn or corrupt tail."""
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0
    while pos + HEADER.size <= len(data):
        magic, length, crc, seq = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if magic != MAGIC or length > MAX_RECORD_BYTES or end > len(data):
            log.warning("%s: log ends at byte %d (torn or corrupt record)", path, pos)
            return
        payload = data[pos + HEADER.size : end]
        if zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seq))) != crc:
            log.warning("%s: CRC mismatch at byte %d: the log ends there", path, pos)
            return
        try:
            record = _decoder.decode(payload)
        except msgspec.DecodeError:
            log.warning("%s: undecodable record at byte %d: the log ends there", path, pos)
            return
        yield seq, record
        pos = end


def read_checkpoint(directory: Path) -> int:
    try:
        data = json.loads((directory / CHECKPOINT_FILE).read_bytes())
    except FileNotFoundError:
        return 0
    except ValueError:
        return 0
    sealed = data.get("sealed", 0) if isinstance(data, dict) else 0
    return sealed if isinstance(sealed, int) else 0


def write_checkpoint(directory: Path, sealed: int) -> None:
    write_json_atomic(directory / CHECKPOINT_FILE, {"formatVersion": CHECKPOINT_FORMAT, "sealed": sealed})


def log_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.log") if p.stem.isdigit())


def replay(directory: Path) -> list[tuple[int, Record]]:
    """Every intact record above the log's checkpoint, in seq order."""
    sealed = read_checkpoint(directory)
    out: list[tuple[int, Record]] = []
    for path in log_files(directory):
        out.extend((seq, r) for seq, r in read_records(path) if seq > sealed)
    out.sort(key=lambda item: item[0])
    return out


def try_lock(directory: Path, create: bool = True) -> int | None:
    """The log's flock, taken without waiting (the fd to keep), or None: its owner is alive.
    `create=False` (adopting): a log without its lock file is being removed — FileNotFoundError."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    fd = os.open(directory / LOCK_FILE, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def orphan_logs(root: Path, own: str) -> list[Path]:
    base = root / WAL_DIR
    if not base.is_dir():
        return []
    try:
        return sorted(
            p for p in base.iterdir() if p.is_dir() and p.name != own and not p.name.startswith(".")
        )
    except FileNotFoundError:
        return []


def remove_log(directory: Path) -> None:
    """Remove an adopted (sealed) log: renamed to a hidden unique name first, so only one process
    ever deletes a given directory tree and no adopter sees it half removed."""
    gone = directory.parent / f".gone-{directory.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(directory, gone)
    except FileNotFoundError:
        return
    # a log directory is flat (lock, checkpoint, *.log, temporary files): plain unlinks, no
    # descriptor-walking rmtree in a process that serves gRPC
    for name in os.listdir(gone):
        with contextlib.suppress(OSError):
            os.unlink(gone / name)
    with contextlib.suppress(OSError):
        os.rmdir(gone)


@dataclass
class _Pending:
    seq: int
    data: bytes
    future: Future[tuple[int, int]]
    record: Record


@dataclass
class WriteAheadLog:
    """This process's log: `append` queues a record; its future resolves (to the seq) once the
    record is fsynced. `on_durable(seq, record)` runs in the writer thread, in seq order, right
    before the futures resolve (the sealer takes the record from there)."""

    root: Path
    on_durable: Callable[[int, Record], None]
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    on_commit: Callable[[int, float], None] | None = None  # (records, seconds) of each group commit
    directory: Path = field(init=False)
    _lock_fd: int = field(init=False)
    _queue: list[_Pending] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _seq: int = 0
    _file: Any = None
    _file_first: int = 0
    _stop: bool = False
    _rotate: bool = False
    _thread: threading.Thread | None = None
    fsyncs: int = 0
    appended: int = 0

    def __post_init__(self) -> None:
        # made under a hidden name and locked before it is renamed into place, so no other
        # proxy ever sees this log unlocked (and adopts a live log)
        base = Path(self.root) / WAL_DIR
        staging = base / f".new-{self.instance}"
        staging.mkdir(parents=True, exist_ok=False)
        fd = try_lock(staging)
        if fd is None:
            raise RuntimeError(f"write-ahead log {staging} is locked by another process")
        self._lock_fd = fd
        self.directory = base / self.instance
        os.rename(staging, self.directory)
        fsync_dir(base)
        self._thread = threading.Thread(target=self._run, name="wal-writer", daemon=True)
        self._thread.start()

    def append(self, record: Record, stamp: Callable[[], int] | None = None) -> Future[tuple[int, int]]:
        """Queue `record`; with `stamp`, its `ts` is taken from it under the queue lock, so the
        log's order is the timestamps' order. The future resolves to (seq, ts) once durable."""
        future: Future[tuple[int, int]] = Future()
        with self._cond:
            if self._stop:
                raise RuntimeError("the write-ahead log is closed")
            if stamp is not None:
                record = msgspec.structs.replace(record, ts=stamp())
            self._seq += 1
            self._queue.append(_Pending(self._seq, encode(self._seq, record), future, record))
            self._cond.notify()
        return future

    def _open_file(self, first: int) -> None:
        if self._file is not None:
            self._file.close()
        path = self.directory / f"{first:016d}.log"
        self._file = open(path, "ab")  # noqa: SIM115 (kept open across appends)
        self._file_first = first
        fsync_dir(self.directory)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if not self._queue and self._stop:
                    return
                batch, self._queue = self._queue, []
                rotate, self._rotate = self._rotate, False
            try:
                if rotate and self._file is not None:
                    self._file.close()
                    self._file = None
                if self._file is None:
                    self._open_file(batch[0].seq)
                started = time.perf_counter()
                self._file.write(b"".join(p.data for p in batch))
                self._file.flush()
                os.fsync(self._file.fileno())
                self.fsyncs += 1
                self.appended += len(batch)
                if self.on_commit is not None:
                    self.on_commit(len(batch), time.perf_counter() - started)
            except Exception as exc:  # a full or failing disk: every caller of the batch learns it
                log.exception("write-ahead log append failed")
                for p in batch:
                    p.future.set_exception(exc)
                continue
            for p in batch:
                try:
                    self.on_durable(p.seq, p.record)
                except Exception:
                    log.exception("the sealer refused logged record %d", p.seq)
            for p in batch:
                p.future.set_result((p.seq, p.record.ts))

    def rotate(self) -> None:
        """Start a new log file with the next record (called after a seal, so sealed files can go)."""
        with self._cond:
            self._rotate = True

    def checkpoint(self, sealed: int) -> None:
        """Every record <= `sealed` is in storage: record it, and remove log files wholly below."""
        write_checkpoint(self.directory, sealed)
        files = log_files(self.directory)
        for path, nxt in itertools.pairwise(files):
            if int(nxt.stem) - 1 <= sealed and (self._file is None or int(path.stem) != self._file_first):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(10)
        if self._file is not None:
            self._file.close()
            self._file = None
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:  # closed once: a second close would hit whatever reuses the number
            os.close(fd)
