"""How many CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota.

`os.cpu_count()` is the machine's; a pod is given less. The scheduler's affinity mask
(`sched_getaffinity`, what cpusets and `taskset` set) says which cores the process may run on,
and a CPU limit (`resources.limits.cpu`) is a CFS quota -- cgroup v2 `cpu.max` "quota period",
v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` -- that throttles every thread beyond quota/period
cores' worth of time. More search threads than that only queue behind the throttle, so the
search pool is sized to the smaller of the two, rounded up (a 1.5-core limit still lets two
threads overlap their waits).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """Cores' worth of CPU time the cgroup may use (None: no quota, or no cgroup file)."""
    try:
        quota, _, period = (root / "cpu.max").read_text().strip().partition(" ")
    except OSError:
        pass
    else:
        if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
            return None
        return int(quota) / int(period)
    try:
        quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
        period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    if not quota.isdigit() or not period.isdigit() or int(period) == 0:  # "-1": unlimited
        return None
    return int(quota) / int(period)


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def available_cpus(affinity: Callable[[], int] = _affinity, cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process can keep busy: affinity, capped by the cgroup quota (at least 1)."""
    cpus = max(1, affinity())
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None and quota > 0:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus
