"""Child processes that never outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen`: the child receives `sig` when its parent dies
    (even by SIGKILL), so a killed test run or kubelet leaves no orphans. Linux ties this to
    the *thread* that forks: start such children from a thread that lives as long as they do."""
    parent = os.getpid()

    def preexec() -> None:
        # runs in the forked child: only async-signal-safe work (libc is loaded already)
        _LIBC.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(128 + sig)

    return preexec
