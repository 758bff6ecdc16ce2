"""The `vectorload-dev` console entry point: the development tools, dispatched like `vectorload`.

They run a whole system on one machine without Docker or a cloud: a real control plane built
from Go modules, a kubelet that runs pods as local processes, and the demo on top of both.
"""

from __future__ import annotations

from collections.abc import Sequence

from vectorload.cli import dispatch

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "cluster": (
        "vectorload_dev.cluster.cli:main",
        "local control plane: build | up | down | status | kubeconfig | env",
    ),
    "kubelet": ("vectorload_dev.kubelet:main", "process kubelet: run pods as local processes"),
    "demo": ("vectorload_dev.demo:main", "the whole system on this machine, end to end"),
    "openapi": ("vectorload_dev.openapi:main", "the querynode API's OpenAPI document: --write | --check"),
}


def main(argv: Sequence[str] | None = None) -> int:
    from vectorload_dev import __version__

    return dispatch("vectorload-dev", SUBCOMMANDS, __version__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
