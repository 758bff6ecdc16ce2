"""The README values table is generated from values.yaml comments and up to date; values.yaml and
values.schema.json describe the same keys."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from vectorload_dev.testing.chart import CHART, REPO


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    path = REPO / "helm" / "tools" / "values_table.py"
    spec = importlib.util.spec_from_file_location("values_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


SAMPLE = """\
# file header, not a key doc

# -- Top level
# continued here.
top: 1
nested:
  # -- A list | with a pipe
  items: [a, b]
  undocumented: x
# -- A whole map
map:
  inner: {k: v}
"""


def test_parser(tool: Any) -> None:
    rows, keys = tool.parse(SAMPLE)
    assert [(r.path, r.type, r.default, r.description) for r in rows] == [
        ("top", "int", "`1`", "Top level continued here."),
        ("nested.items", "list", '`["a", "b"]`', "A list | with a pipe"),
        ("map", "object", '`{"inner": {"k": "v"}}`', "A whole map"),
    ]
    assert tool.undocumented(keys) == ["nested.undocumented"]
    assert "A list \\| with a pipe" in tool.table(rows)


def test_every_value_is_documented(tool: Any) -> None:
    _, keys = tool.parse((CHART / "values.yaml").read_text())
    assert len(keys) > 50
    assert tool.undocumented(keys) == []


def test_readme_table_is_up_to_date(tool: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status = tool.main(["--check"])
    assert status == 0, capsys.readouterr().err


def test_readme_table_is_detected_stale(tool: Any, tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "values.yaml").write_text(
        (CHART / "values.yaml").read_text().replace("replicas: 2", "replicas: 5")
    )
    (chart / "README.md").write_text((CHART / "README.md").read_text())
    assert tool.main(["--check", "--chart", str(chart)]) == 1
    assert tool.main(["--write", "--chart", str(chart)]) == 0
    assert "| `querynode.replicas` | int | `5` |" in (chart / "README.md").read_text()
    assert tool.main(["--check", "--chart", str(chart)]) == 0


def leaf_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of the schema's closed objects (additionalProperties: false)."""
    paths = set()
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        paths.add(path)
        if sub.get("additionalProperties") is False:
            paths |= leaf_paths(sub, path + ".")
    return paths


def value_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for name, value in values.items():
        path = f"{prefix}{name}"
        paths.add(path)
        sub = (schema.get("properties") or {}).get(name, {})
        if isinstance(value, dict) and sub.get("additionalProperties") is False:
            paths |= value_paths(value, sub, path + ".")
    return paths


def test_values_and_schema_describe_the_same_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    in_values, in_schema = value_paths(values, schema), leaf_paths(schema)
    assert in_values <= in_schema, f"keys the schema does not describe: {sorted(in_values - in_schema)}"
    # optional keys the schema accepts without a default in values.yaml
    assert in_schema - in_values == {"global", "querynode.readinessProbe.initialDelaySeconds"}
