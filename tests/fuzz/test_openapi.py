"""docs/querynode-openapi.yaml is generated from the wire types and cannot drift: it is exactly
what `vectorload_dev.openapi` renders from `vectorload.wire.querynode` today, its routes are the
routes the querynode's application serves, every body schema is the msgspec type's own, and
schemathesis (which the fuzz suite drives from it) reads every operation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import schemathesis
import yaml

from vectorload.wire import querynode as wire
from vectorload_dev import openapi
from vectorload_dev.checkout import repo_root
from vectorload_querynode.app import build_app
from vectorload_querynode.node import QueryNode
from vectorload_querynode.settings import parse_settings

DOCUMENT = repo_root() / openapi.DOCUMENT


def test_document_is_what_the_types_render() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == openapi.render(), (
        "docs/querynode-openapi.yaml is stale: run `vectorload-dev openapi --write`"
    )
    assert openapi.main(["--check"]) == 0


def test_check_fails_on_a_drifted_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The --check mode really compares: a document with one field less is stale."""
    (tmp_path / "docs").mkdir()
    drifted = openapi.render().replace("        topK:\n", "        top_k:\n", 1)
    assert drifted != openapi.render()
    (tmp_path / openapi.DOCUMENT).write_text(drifted, encoding="utf-8")
    monkeypatch.setattr("vectorload_dev.checkout.repo_root", lambda: tmp_path)
    assert openapi.main(["--check"]) == 1


def _served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    args = ["--root", str(tmp_path), "--memory-limit", "1Gi", "--insecure-no-auth", "--open-data-api"]
    settings = parse_settings([*args, "--verify-in-process"])
    node = QueryNode(settings)
    try:
        app = build_app(node)
        return {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.method != "HEAD" and route.resource is not None
        }
    finally:
        node.close()


def test_documented_routes_are_the_served_routes(tmp_path: Path) -> None:
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert documented == openapi.routes() == _served_routes(tmp_path)


def _schema_of(type_: type[Any]) -> dict[str, Any]:
    _, components = msgspec.json.schema_components([type_], ref_template=openapi.REF)
    name = type_.__name__
    return dict(components[name])


@pytest.mark.parametrize(
    "type_",
    [
        wire.SearchRequest,
        wire.QueryRequest,
        wire.GetRequest,
        wire.LoadRequest,
        wire.ReleaseRequest,
        wire.SearchAnswer,
        wire.RowsAnswer,
        wire.Distribution,
        wire.LoadAnswer,
        wire.ErrorBody,
    ],
)
def test_each_body_schema_is_the_types_own(type_: type[Any]) -> None:
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    assert document["components"]["schemas"][type_.__name__] == _schema_of(type_)
    keys = set(document["components"]["schemas"][type_.__name__]["properties"])
    assert keys == set(wire.field_names(type_))


def test_every_operation_loads_in_schemathesis() -> None:
    schema = schemathesis.openapi.from_path(str(DOCUMENT))
    loaded = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        loaded.add((operation.method.upper(), operation.path))
    assert loaded == openapi.routes()
