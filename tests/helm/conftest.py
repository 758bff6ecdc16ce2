"""Fixtures of the Helm chart tests: the helm binary and cached `helm template` rendering.

Template-level tests need only the helm binary (built by `devcluster/build.sh`); the tests marked
`cluster` install the chart on the real local control plane (`control_plane` in tests/conftest.py).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from vectorload_dev.testing.chart import Manifest, Render, helm_path, load_manifests, run_helm, template_args


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    path = helm_path()
    if not path.exists():
        pytest.fail(f"helm is not built ({path}): run `make binaries`")
    return path


@pytest.fixture(scope="session")
def render(helm_bin: Path) -> Render:
    """render(values=[paths], set_values={k: v}, namespace=..., release=...) -> rendered objects."""
    cache: dict[tuple[Any, ...], list[Manifest]] = {}

    def _render(
        values: Sequence[Path] = (),
        set_values: Mapping[str, str] | None = None,
        namespace: str = "vl",
        release: str = "rel",
    ) -> list[Manifest]:
        key = (tuple(values), tuple(sorted((set_values or {}).items())), namespace, release)
        if key not in cache:
            proc = run_helm(helm_bin, *template_args(values, set_values, namespace, release))
            cache[key] = load_manifests(proc.stdout)
        return copy.deepcopy(cache[key])

    return _render
