"""`python -m bench` lists the benchmarks; `python -m bench NAME [args]` runs one;
`python -m bench all` runs every one with its defaults (tens of minutes on 2 cores)."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> dict[str, str]:
    """Benchmark module name -> first line of its docstring."""
    found: dict[str, str] = {}
    for path in sorted(HERE.glob("bench_*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        found[path.stem] = doc.strip().splitlines()[0] if doc.strip() else ""
    return found


def run(name: str, args: list[str]) -> None:
    sys.argv = [f"bench.{name}", *args]
    runpy.run_module(f"bench.{name}", run_name="__main__")


def main(argv: list[str]) -> int:
    known = benchmarks()
    if not argv:
        print(__doc__)
        width = max(len(n) for n in known)
        for name, line in known.items():
            print(f"  {name.ljust(width)}  {line}")
        print("\nresults: bench/results/*.json; figures: README.md, docs/querynode.md, docs/operator.md")
        return 0
    if argv[0] == "all":
        for name in known:
            print(f"\n=== {name}", flush=True)
            run(name, [])
        return 0
    name = argv[0] if argv[0].startswith("bench_") else f"bench_{argv[0]}"
    if name not in known:
        print(f"unknown benchmark {argv[0]!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    run(name, argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
