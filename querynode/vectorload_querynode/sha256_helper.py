"""The sha256 helper process of the querynode (see `hasher`): receives open file descriptors
over a SOCK_SEQPACKET socket (SCM_RIGHTS), answers each with (bytes read, sha256).

Standard library only, and run as a script (`python -I -S sha256_helper.py FD`): it starts in a
few tens of milliseconds with about 4 MB of private memory, and exits when the querynode closes
its end of the socket (or dies).
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import socket
import struct
import sys

CHUNK = 1 << 20  # 1 MiB: stays in L2 while it is hashed
READY = b"ready"
REQUEST = struct.Struct("<Q")  # request id; the descriptor travels as ancillary data
REPLY = struct.Struct("<Qq32s")  # request id, bytes read (or -errno), sha256 digest


def hash_fd(fd: int, buffer: bytearray | None = None) -> tuple[int, bytes]:
    """(bytes read, sha256 digest) of an open file, from offset 0 to its end, with pread (the
    descriptor's offset, shared with the querynode, is never moved)."""
    buf = buffer if buffer is not None else bytearray(CHUNK)
    view = memoryview(buf)
    digest = hashlib.sha256()
    offset = 0
    while n := os.preadv(fd, [buf], offset):
        digest.update(view[:n])
        offset += n
    return offset, digest.digest()


def serve(sock: socket.socket) -> None:
    """One request (id + descriptor) in, one reply out, until EOF."""
    buf = bytearray(CHUNK)
    sock.send(READY)
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, REQUEST.size, 4)
        except OSError:
            return
        if not msg:
            return  # the querynode closed its end (or died)
        try:
            (request_id,) = REQUEST.unpack(msg)
            if len(fds) != 1:
                reply = REPLY.pack(request_id, -errno.EBADF, bytes(32))
            else:
                try:
                    size, digest = hash_fd(fds[0], buf)
                    reply = REPLY.pack(request_id, size, digest)
                except OSError as exc:
                    reply = REPLY.pack(request_id, -(exc.errno or errno.EIO), bytes(32))
            sock.send(reply)
        finally:
            for fd in fds:
                os.close(fd)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the querynode decides when we stop
    with socket.socket(fileno=int(argv[0])) as sock:
        serve(sock)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
