"""Where the vectorload source checkout is, for the tools that need files from it.

The dev tools read two things that are not Python: `devcluster/build.sh` (it builds the control
plane binaries) and the Helm chart `helm/vectorload/`. They find the checkout by
`VECTORLOAD_REPO`, or else by walking up from this package and then from the working directory
to the first directory holding both markers, so an editable install, a second worktree and a run
from a subdirectory all work; a non-editable install outside a checkout gets a clear error
instead of a path that does not exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ENV = "VECTORLOAD_REPO"
MARKERS = ("devcluster/build.sh", "helm/vectorload/Chart.yaml")


class CheckoutNotFound(RuntimeError):
    pass


def is_checkout(path: Path) -> bool:
    return all((path / marker).is_file() for marker in MARKERS)


def find_checkout(starts: Iterable[Path]) -> Path | None:
    """The first directory, walking up from each start in turn, that holds every marker."""
    for start in starts:
        for candidate in (start, *start.parents):
            if is_checkout(candidate):
                return candidate
    return None


def repo_root() -> Path:
    explicit = os.environ.get(ENV)
    if explicit:
        path = Path(explicit).resolve()
        if not is_checkout(path):
            raise CheckoutNotFound(
                f"{ENV}={explicit} is not a vectorload checkout (no {' or '.join(MARKERS)})"
            )
        return path
    found = find_checkout((Path(__file__).resolve().parent, Path.cwd().resolve()))
    if found is None:
        raise CheckoutNotFound(
            f"no vectorload checkout above {Path(__file__).resolve().parent} or {Path.cwd()}: "
            f"run from the checkout or set {ENV}"
        )
    return found


def chart_dir() -> Path:
    """The Helm chart `helm/vectorload` of the checkout."""
    return repo_root() / "helm" / "vectorload"
