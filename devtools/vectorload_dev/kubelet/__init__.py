"""A process kubelet: runs the pods bound to its Node as local processes (see docs/kubelet.md)."""

from vectorload_dev.kubelet.main import main

__all__ = ["main"]
