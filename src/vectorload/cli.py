"""The `vectorload` console entry point: a thin dispatcher to each component's own CLI.

Each subcommand lives in the module that owns it; the module is imported only when the
subcommand runs, so `vectorload cluster up` never pays for importing hnswlib or kopf.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> ("module:function", one-line help). The function takes argv (list[str]) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "cluster": (
        "vectorload.devcluster.cli:main",
        "local control plane: build | up | down | status | kubeconfig",
    ),
    "querynode": ("vectorload_querynode.cli:main", "run a querynode (hnswlib data plane, HTTP API)"),
    "operator": ("vectorload_operator.cli:main", "run the operator (kopf)"),
    "ingest": ("vectorload.storage.cli:ingest_main", "ingest .npy vectors + JSONL rows into a collection"),
    "sample": ("vectorload.storage.cli:sample_main", "write the deterministic sample collection `book`"),
    "search": ("vectorload.client.cli:search_main", "search a loaded CollectionLoad through its querynodes"),
    "kubelet": ("vectorload.devcluster.kubelet:main", "process kubelet: run pods as local processes"),
    "demo": ("vectorload.demo:main", "the whole system on this machine, end to end"),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: vectorload <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def _resolve(target: str) -> Callable[[list[str]], int]:
    module_name, _, func_name = target.partition(":")
    module = importlib.import_module(module_name)
    func: Callable[[list[str]], int] = getattr(module, func_name)
    return func


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if args[0] == "--version":
        from vectorload import __version__

        print(__version__)
        return 0
    command, rest = args[0], args[1:]
    if command not in SUBCOMMANDS:
        print(f"vectorload: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return _resolve(SUBCOMMANDS[command][0])(rest)


if __name__ == "__main__":
    raise SystemExit(main())
