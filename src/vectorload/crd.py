"""The CollectionLoad CRD as package data, and `vectorload crd`, which prints it.

The CRD's single source is `crds/collectionload.yaml` at the top of the repository (where users
and the chart find it); `src/vectorload/collectionload.yaml` is a symlink to it, so the wheel
carries the same bytes as package data. Reading it through `importlib.resources` works from an
installed wheel or image as well as from an editable checkout, unlike a path computed from
`__file__`. With it, installing the CRD needs no checkout:

    vectorload crd | kubectl apply --server-side -f -
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources

CRD_FILE = "collectionload.yaml"
CRD_NAME = "collectionloads.vectorload.io"


def crd_yaml() -> str:
    """The CollectionLoad CustomResourceDefinition, as YAML text."""
    return resources.files("vectorload").joinpath(CRD_FILE).read_text(encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="vectorload crd",
        description=f"Print the {CRD_NAME} CustomResourceDefinition (YAML) on standard output, "
        "e.g. `vectorload crd | kubectl apply --server-side -f -`.",
    )


def main(argv: list[str]) -> int:
    _parser().parse_args(argv)
    sys.stdout.write(crd_yaml())
    return 0
