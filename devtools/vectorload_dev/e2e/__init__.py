"""The whole system on this machine, as users run it: local control plane, process kubelet,
`helm install` of the chart, CollectionLoads applied with kubectl. Shared by `vectorload-dev demo`
and the end-to-end and fault tests (`tests/e2e/`)."""

from vectorload_dev.e2e.kubelet import BackgroundKubelet, stop_background_kubelet
from vectorload_dev.e2e.system import LocalSystem, Release

__all__ = ["BackgroundKubelet", "LocalSystem", "Release", "stop_background_kubelet"]
