"""Child processes that never outlive the process that started them.

`die_with_parent(argv)` wraps a command line: a tiny Python (no site, a few milliseconds) sets
PR_SET_PDEATHSIG, checks that its parent is still the process that started it, and execs the
command in place (same pid; the setting survives exec). It used to be a `preexec_fn`, which was
wrong in a process that has gRPC loaded (the tests' pymilvus, the benchmarks): a `preexec_fn`
makes `subprocess` fork() instead of vfork() and run Python in the child; gRPC's pthread_atfork
child handler restarts its event-engine poller there, the closing of inherited descriptors then
pulls its epoll descriptor away, and the child aborted before running its program ("Epoll1Poller
encountered epoll_wait error: Bad file descriptor", SIGABRT: querynodes and proxies restarted by
the write-path fault tests). Without a `preexec_fn` the child runs no code of ours before exec.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1
# argv: -c, parent pid, signal, command...
_WRAPPER = (
    "import ctypes,os,sys\n"
    f"ctypes.CDLL(None, use_errno=True).prctl({_PR_SET_PDEATHSIG}, int(sys.argv[2]))\n"
    "if os.getppid() != int(sys.argv[1]):\n"  # the parent died before prctl took effect
    "    os._exit(128 + int(sys.argv[2]))\n"
    "os.execvp(sys.argv[3], sys.argv[3:])\n"
)


def die_with_parent(argv: Sequence[str], sig: int = signal.SIGKILL) -> list[str]:
    """`argv` as a command that receives `sig` when this process dies (even by SIGKILL), so a
    killed test run, benchmark or kubelet leaves no orphans. Linux ties this to the *thread* that
    starts the child: start such children from a thread that lives as long as they do."""
    if not argv:
        raise ValueError("die_with_parent needs a command")
    return [sys.executable, "-S", "-c", _WRAPPER, str(os.getpid()), str(int(sig)), *argv]
