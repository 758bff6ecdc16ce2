"""The `vectorload` console entry point: a thin dispatcher to each component's own CLI.

Each subcommand lives in the module that owns it; the module is imported only when the
subcommand runs, so `vectorload crd` never pays for importing hnswlib or kopf.

Only what users run in production is here. The development tools (local control plane, process
kubelet, demo) are the separate `vectorload-dev` command of the `vectorload_dev` package, which
reuses `dispatch()`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence

# subcommand -> ("module:function", one-line help). The function takes argv (list[str]) -> int.
Subcommands = Mapping[str, tuple[str, str]]

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("vectorload_operator.cli:main", "run the operator (kopf)"),
    "querynode": ("vectorload_querynode.cli:main", "run a querynode (hnswlib data plane, HTTP API)"),
    "proxy": (
        "vectorload_proxy.cli:main",
        "run the Milvus front door (gRPC MilvusService + REST v2, REST v1)",
    ),
    "ingest": ("vectorload.storage.cli:ingest_main", "ingest .npy vectors + JSONL rows into a collection"),
    "sample": ("vectorload.storage.cli:sample_main", "write the deterministic sample collection `book`"),
    "compact": ("vectorload.storage.cli:compact_main", "merge sealed segments (applying deletes); --gc"),
    "search": ("vectorload.client.cli:search_main", "search a loaded CollectionLoad through its querynodes"),
    "load": (
        "vectorload.milvus_cli:load_main",
        "load a collection (-c) or partitions (-p) through the Milvus API",
    ),
    "release": (
        "vectorload.milvus_cli:release_main",
        "release a collection or partitions through the Milvus API",
    ),
    "load-state": ("vectorload.milvus_cli:load_state_main", "print a collection's or partition's load state"),
    "crd": ("vectorload.crd:main", "print the CollectionLoad CRD (`vectorload crd | kubectl apply -f -`)"),
}


def usage(prog: str, subcommands: Subcommands) -> str:
    width = max(len(name) for name in subcommands)
    lines = [f"usage: {prog} <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in subcommands.items()]
    return "\n".join(lines)


def _resolve(target: str) -> Callable[[list[str]], int]:
    module_name, _, func_name = target.partition(":")
    module = importlib.import_module(module_name)
    func: Callable[[list[str]], int] = getattr(module, func_name)
    return func


def dispatch(prog: str, subcommands: Subcommands, version: str, argv: Sequence[str] | None = None) -> int:
    """Run `prog <command> [args]`: help, `--version`, or the command's own `main(args)`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage(prog, subcommands))
        return 0
    if args[0] == "--version":
        print(version)
        return 0
    command, rest = args[0], args[1:]
    if command not in subcommands:
        print(f"{prog}: unknown command {command!r}\n\n{usage(prog, subcommands)}", file=sys.stderr)
        return 2
    return _resolve(subcommands[command][0])(rest)


def main(argv: Sequence[str] | None = None) -> int:
    from vectorload import __version__

    return dispatch("vectorload", SUBCOMMANDS, __version__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
