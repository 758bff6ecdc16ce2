"""`vectorload ingest` / `vectorload sample`: exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vectorload.cli import main as vectorload_main
from vectorload.storage.cli import ingest_main, sample_main
from vectorload.storage.reader import FilesystemReader

SCHEMA = {
    "description": "cli test",
    "enableDynamicField": True,
    "fields": [
        {"name": "id", "type": "varchar", "isPrimary": True, "maxLength": 16},
        {"name": "score", "type": "float"},
        {"name": "v", "type": "float_vector", "dim": 4, "metric": "ip"},
    ],
}


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    paths = {"v": tmp_path / "v.npy", "rows": tmp_path / "rows.jsonl", "schema": tmp_path / "schema.json"}
    np.save(paths["v"], np.random.default_rng(0).normal(size=(25, 4)).astype(np.float32))
    paths["rows"].write_text(
        "".join(json.dumps({"id": f"k{i}", "score": i, "tag": "x"}) + "\n" for i in range(25))
    )
    paths["schema"].write_text(json.dumps(SCHEMA))
    return paths


def _ingest_args(root: Path, inputs: dict[str, Path], *extra: str) -> list[str]:
    return [
        "--root",
        str(root),
        "--collection",
        "docs",
        "--vector",
        f"v={inputs['v']}",
        "--rows",
        str(inputs["rows"]),
        "--segment-rows",
        "10",
        "--threads",
        "1",
        *extra,
    ]


def test_ingest_cli(tmp_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    assert vectorload_main(["ingest", *_ingest_args(root, inputs, "--schema", str(inputs["schema"]))]) == 0
    out, err = capsys.readouterr()
    assert "ingested 25 rows into docs/_default: 3 segments" in out
    assert "ingest docs/_default" in err  # progress bar on stderr
    assert [m.rows for m in FilesystemReader(root).segments("docs", "_default")] == [10, 10, 5]
    assert ingest_main(_ingest_args(root, inputs, "--partition", "p2", "--no-progress")) == 0
    assert FilesystemReader(root).partitions("docs") == ["_default", "p2"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a, i: [*a, "--schema", str(i["rows"])], "schema file"),
        (lambda a, i: a, "CollectionNotFound"),
        (lambda a, i: [x.replace("v=", "v:") for x in a], "FIELD=path.npy"),
        (lambda a, i: [*a, "--vector", f"v={i['v']}"], "given twice"),
        (lambda a, i: [x for x in a if x not in ("--root",) and "root" not in x], "--root"),
        (lambda a, i: [*a, "--segment-rows", "ten"], "--segment-rows"),
    ],
    ids=[
        "bad schema file",
        "no collection",
        "bad --vector",
        "duplicate --vector",
        "missing --root",
        "bad int",
    ],
)
def test_ingest_cli_bad_input_exits_2(
    tmp_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], mutate: object, message: str
) -> None:
    args = mutate(_ingest_args(tmp_path / "root", inputs), inputs)  # type: ignore[operator]
    assert ingest_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ingest_cli_schema_error_names_field(
    tmp_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = json.loads(inputs["schema"].read_text())
    bad["fields"][2]["dim"] = -1
    inputs["schema"].write_text(json.dumps(bad))
    assert ingest_main(_ingest_args(tmp_path / "root", inputs, "--schema", str(inputs["schema"]))) == 2
    err = capsys.readouterr().err
    assert "InvalidArgument" in err and "'v'" in err and "schema.json" in err


def test_sample_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--root", str(tmp_path), "--size", "tiny", "--seed", "3", "--threads", "1"]
    assert vectorload_main(["sample", *args]) == 0
    out, err = capsys.readouterr()
    assert "written" in out and "1800 rows" in out and "sample book (tiny)" in err
    assert sample_main([*args, "--no-progress"]) == 0
    assert "already present" in capsys.readouterr().out
    assert sample_main(["--root", str(tmp_path), "--size", "tiny", "--seed", "4"]) == 2
    err = capsys.readouterr().err
    assert "SampleMismatch" in err and "Traceback" not in err
    assert sample_main(["--root", str(tmp_path), "--size", "huge"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert sample_main(["--help"]) == 0
