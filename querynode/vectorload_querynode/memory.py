"""Process memory facts: the memory limit (cgroup, env, RAM), resident set size, malloc_trim."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from pathlib import Path

MEMORY_ENV = "VECTORLOAD_MEMORY_LIMIT"

_UNITS = {
    "": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """Parse `1073741824`, `512Mi`, `1Gi`, `2G`, `300MB` (Kubernetes quantities and friends)."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"not a byte quantity: {text!r}")
    number, unit = match.group(1), (match.group(2) or "").lower()
    value = int(float(number) * _UNITS[unit])
    if value <= 0:
        raise ValueError(f"byte quantity must be positive: {text!r}")
    return value


def cgroup_memory_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The cgroup v2 `memory.max` (or v1 `memory.limit_in_bytes`), None when unlimited/absent."""
    for candidate in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            raw = candidate.read_text().strip()
        except OSError:
            continue
        if raw == "max" or not raw.isdigit():
            return None
        value = int(raw)
        # cgroup v1 reports "unlimited" as a huge page-aligned number.
        return None if value >= 1 << 60 else value
    return None


def total_ram() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def auto_memory_limit(env: dict[str, str] | None = None, cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """`--memory-limit auto`: the smaller of the cgroup limit and $VECTORLOAD_MEMORY_LIMIT when
    either is set (never exceed a limit someone set), else the machine's total RAM."""
    environ = os.environ if env is None else env
    limits = []
    cgroup = cgroup_memory_limit(cgroup_root)
    if cgroup is not None:
        limits.append(cgroup)
    if environ.get(MEMORY_ENV):
        limits.append(parse_bytes(environ[MEMORY_ENV]))
    return min(limits) if limits else total_ram()


def resident_bytes(pid: int | None = None) -> int:
    """VmRSS of a process (default: this one) from /proc, 0 when unavailable."""
    path = Path(f"/proc/{pid if pid is not None else 'self'}/status")
    try:
        for line in path.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


_LIBC = _load_libc()


def malloc_trim() -> bool:
    """Hand free heap pages back to the kernel (glibc); False where there is no malloc_trim."""
    if _LIBC is None or not hasattr(_LIBC, "malloc_trim"):
        return False
    return bool(_LIBC.malloc_trim(0))
