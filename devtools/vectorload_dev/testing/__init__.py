"""Test support for vectorload: the one place test helpers live, imported as a package (no
sys.path entries, no imports from conftest files).

    wait_for, WaitTimeout     the one polling wait (`wait`)
    free_port, run_slot, ...  loopback addresses and ports, one slot per test run (`vectorload_dev.loopback`)
    querynode_harness         real querynode processes
    operator_harness          the operator against a real control plane and querynode processes
    e2e, chart, coresim,      helpers of tests/e2e, tests/helm, tests/unit/core, tests/unit/storage
    storage

Only the light names are re-exported here; the harness modules are imported by name.
"""

from vectorload_dev.loopback import LoopbackSlot, free_port, loopback_hosts, pod_network, run_slot
from vectorload_dev.testing.wait import WaitTimeout, wait_for

__all__ = [
    "LoopbackSlot",
    "WaitTimeout",
    "free_port",
    "loopback_hosts",
    "pod_network",
    "run_slot",
    "wait_for",
]
