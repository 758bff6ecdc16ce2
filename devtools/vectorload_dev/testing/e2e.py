"""Helpers shared by the end-to-end tests (`tests/e2e/`): chart installs, the sample's segments,
fault trials."""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator
from pathlib import Path

from vectorload_dev.e2e.system import LocalSystem, Release

PARTITIONS = ("_default", "novel", "poetry")
SEGMENTS_PER_PARTITION = 4  # sample size "small"

# Querynodes wait this long before each file of a segment, so that a load lasts long enough
# (a few seconds for `book` small) to be observed and interrupted.
LOAD_STEP_DELAY = "0.1"
OPERATOR_ARGS = (
    "--dist-pull-interval=0.25",
    "--status-interval=0.3",
    "--catalog-interval=1",
    "--request-timeout=1",
)


def fault_trials() -> int:
    """Trials per fault kind: VECTORLOAD_FAULT_TRIALS (20 is the full count), else 3 so that the
    suite fits `make test` (CI)."""
    value = os.environ.get("VECTORLOAD_FAULT_TRIALS")
    return max(1, int(value)) if value else 3


def install(
    system: LocalSystem, root: Path, prefix: str, **options: object
) -> Generator[Release, None, None]:
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    options.setdefault("querynode_args", (f"--load-step-delay={LOAD_STEP_DELAY}",))
    options.setdefault("operator_args", OPERATOR_ARGS)
    release = system.install("vl", namespace, root, **options)  # type: ignore[arg-type]
    try:
        yield release
    finally:
        for name in release.kubectl("get", "cload", "-o", "name", check=False).split():
            release.kubectl("delete", name, "--wait=true", "--timeout=30s", check=False)
        release.uninstall()
        system.plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def segments(partitions: tuple[str, ...] = PARTITIONS) -> list[tuple[str, str]]:
    """(partition, segment) of the sample's partitions."""
    prefix = {"_default": "default"}
    return sorted(
        (p, f"{prefix.get(p, p)}-{i:04d}") for p in partitions for i in range(SEGMENTS_PER_PARTITION)
    )


def replica_holdings(rel: Release, name: str = "book") -> list[list[tuple[str, str]]]:
    """Per replica in status: the segments its querynodes hold, concatenated (duplicates kept)."""
    held = rel.held()
    out = []
    for replica in rel.status(name).get("replicas") or []:
        out.append(sorted(seg for node in replica["nodes"] for seg in held.get(node, [])))
    return out
