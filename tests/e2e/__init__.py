"""End-to-end suite: the chart on the process kubelet (a package, so package-scoped fixtures end with it)."""
