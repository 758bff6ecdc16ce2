"""The filter limits and the `$meta` key cache bound are querynode flags (issue 13): they reach
`bind` and `META_KEY_CACHE` in a real process, every refusal names the flag and its value, the
cache's size is exported as gauges, and a `$meta` row that cannot be decoded has a defined answer
(it reads as `{}`) instead of a 500."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing.querynode_harness import DATA_TOKEN, QuerynodeFactory, QuerynodeProcess, load_all
from vectorload_querynode.filter_expr import DEPTH_CEILING, FilterLimits
from vectorload_querynode.segment import MetaCacheLimits, MetaColumn, MetaKeyCache
from vectorload_querynode.settings import SettingsError, parse_settings

FLAGS = [
    "--filter-max-chars",
    "60",
    "--filter-max-depth",
    "3",
    "--filter-max-list-items",
    "4",
    "--meta-cache-bytes",
    "1Mi",
    "--meta-cache-entries",
    "2",
]

# ------------------------------------------------------------------------------------ settings


def test_flags_become_the_frozen_limits(tmp_path: Path) -> None:
    base = ["--root", str(tmp_path), "--memory-limit", "1Gi", "--insecure-no-auth", "--open-data-api"]
    settings = parse_settings(base + FLAGS)
    assert settings.limits.filter == FilterLimits(max_chars=60, max_depth=3, max_list_items=4)
    assert settings.meta_cache.max_bytes == 2**20 and settings.meta_cache.max_entries == 2
    defaults = parse_settings(base)
    assert defaults.limits.filter == FilterLimits() and defaults.meta_cache == MetaCacheLimits()
    assert parse_settings([*base, "--meta-cache-bytes", "0", "--meta-cache-entries", "0"]).meta_cache == (
        MetaCacheLimits(max_bytes=0, max_entries=0)
    )
    for flag, value in (
        ("--filter-max-chars", "0"),
        ("--filter-max-depth", "0"),
        ("--filter-max-depth", str(DEPTH_CEILING + 1)),
        ("--filter-max-list-items", "-1"),
        ("--meta-cache-entries", "-1"),
        ("--meta-cache-bytes", "lots"),
    ):
        with pytest.raises(SettingsError, match=re.escape(flag) if flag != "--meta-cache-bytes" else "lots"):
            parse_settings([*base, flag, value])


def test_the_deepest_allowed_filter_parses_binds_and_evaluates() -> None:
    """The depth ceiling leaves room under Python's recursion limit (a RecursionError was a 500)."""
    from vectorload_querynode.filter_eval import evaluate
    from vectorload_querynode.filter_expr import bind

    from .test_filter_expr import ROWS, SCHEMA, Source

    limits = FilterLimits(max_depth=DEPTH_CEILING)
    depth = DEPTH_CEILING - 1
    for text in (
        "(" * depth + "in_print and book_id in [1, 2]" + ")" * depth,
        "not " * depth + "in_print",
        "(not " * (depth // 2) + "in_print" + ")" * (depth // 2),
    ):
        assert len(evaluate(bind(text, SCHEMA, limits).expr, Source(ROWS))) == len(ROWS)


# ------------------------------------------------------------------------------- a real process


@pytest.fixture(scope="module")
def node(module_querynode_factory: QuerynodeFactory, tiny_root: Path) -> QuerynodeProcess:
    qn = module_querynode_factory(tiny_root, memory_limit="1Gi", extra_args=FLAGS)
    load_all(qn, tiny_root, "book")
    return qn


def query(qn: QuerynodeProcess, text: str, **extra: Any) -> tuple[int, Any]:
    return qn.request("POST", "/v1/query", {"collection": "book", "filter": text, **extra}, token=DATA_TOKEN)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            "book_id in [1, 2] or book_id in [3, 4] or book_id in [5, 6, 7]",
            ("the limit is 60", "--filter-max-chars"),
        ),
        ("((((in_print))))", ("the limit is 3", "--filter-max-depth")),
        ("not not not not in_print", ("the limit is 3", "--filter-max-depth")),
        ("book_id in [1, 2, 3, 4, 5]", ("the limit is 4", "--filter-max-list-items")),
    ],
)
def test_filter_refusals_name_the_flag_and_its_value(
    node: QuerynodeProcess, text: str, named: tuple[str, ...]
) -> None:
    for path, body in (
        ("/v1/query", {"collection": "book", "filter": text}),
        (
            "/v1/search",
            {"collection": "book", "vectors": [[0.1] * 64], "annsField": "book_intro", "filter": text},
        ),
    ):
        status, answer = node.request("POST", path, body, token=DATA_TOKEN)
        assert status == 400 and answer["error"]["reason"] == "InvalidFilter", answer
        for word in named:
            assert word in answer["error"]["message"], (word, answer)
    status, answer = query(node, "((in_print)) and book_id in [1, 2, 3, 4]")  # at the limits: fine
    assert status == 200, answer


def gauges(qn: QuerynodeProcess) -> dict[str, float]:
    _, text = qn.request("GET", "/metrics", token=None)
    return {
        name: float(value)
        for name, value in re.findall(r"^(vectorload_querynode_meta_cache_\w+) (\S+)$", text, re.M)
    }


def test_meta_cache_is_resized_at_start_and_exported(node: QuerynodeProcess) -> None:
    for key in ("genre", "year", "award"):
        status, answer = query(node, f'{key} == "x"', limit=1)
        assert status == 200, answer
    held = gauges(node)
    assert held["vectorload_querynode_meta_cache_limit_entries"] == 2
    assert held["vectorload_querynode_meta_cache_limit_bytes"] == 2**20
    # three keys asked over every segment: at most two columns stay
    assert 1 <= held["vectorload_querynode_meta_cache_entries"] <= 2
    assert 0 < held["vectorload_querynode_meta_cache_bytes"] <= 2**20


# ------------------------------------------------------------------- $meta rows that do not decode

FOREIGN_ROWS = [
    b'{"genre": "sf", "n": 1}',
    b'{"genre": NaN}',  # not JSON
    b'{"genre": "\\ud800"}',  # a lone surrogate: decodable by json.loads, not encodable as UTF-8
    b'{"genre": 1e400}',  # beyond float
    b'{"n": ' + b"9" * 5000 + b"}",  # beyond Python's int-digit limit
    b'{"deep": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # beyond the decoder's recursion limit
    b"[1, 2]",  # not an object
    b'{"genre": "crime", "n": 7}',
]


def test_meta_row_that_does_not_decode_reads_as_empty() -> None:
    blob = b"".join(row + b"\n" for row in FOREIGN_ROWS)
    meta = MetaColumn(blob, len(FOREIGN_ROWS), "foreign/meta.jsonl", cache=MetaKeyCache())
    rows = [meta.row(i) for i in range(len(FOREIGN_ROWS))]
    assert rows == [{"genre": "sf", "n": 1}, {}, {}, {}, {}, {}, {}, {"genre": "crime", "n": 7}]
    assert list(meta.values("genre").objects()) == ["sf", None, None, None, None, None, None, "crime"]


FOREIGN = "foreign"


@pytest.fixture(scope="module")
def foreign_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collection whose `$meta` file holds rows this project's ingest never writes, with a
    manifest that matches them (as a foreign writer would leave it)."""
    root = tmp_path_factory.mktemp("foreign")
    schema = CollectionSchema(
        name=FOREIGN,
        fields=(
            FieldSchema("pk", "int64", is_primary=True),
            FieldSchema("v", "float_vector", dim=4, metric="l2"),
        ),
        dynamic_field=True,
    )
    writer = CollectionWriter(root)
    writer.create_collection(schema)
    rows = len(FOREIGN_ROWS)
    writer.write_segment(
        FOREIGN,
        "_default",
        "seg-0",
        {"v": np.eye(rows, 4, dtype=np.float32) + 0.01},
        np.arange(rows, dtype=np.int64),
        {},
        [{} for _ in range(rows)],
        M=4,
        ef_construction=8,
        num_threads=1,
    )
    segment = root / FOREIGN / "_default" / "seg-0"
    manifest_path = segment / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    meta = manifest["files"]["$meta"]
    data = b"".join(row + b"\n" for row in FOREIGN_ROWS)
    (segment / meta["path"]).write_bytes(data)
    meta["bytes"], meta["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    return root


def test_meta_output_of_an_undecodable_row_is_empty_not_a_500(
    querynode_factory: QuerynodeFactory, foreign_root: Path
) -> None:
    qn = querynode_factory(foreign_root, memory_limit="1Gi")
    load_all(qn, foreign_root, FOREIGN)
    status, answer = qn.request(
        "POST",
        "/v1/query",
        {"collection": FOREIGN, "filter": "pk >= 0", "outputFields": ["$meta", "genre"]},
        token=DATA_TOKEN,
    )
    assert status == 200, answer
    by_pk = {row["pk"]: row for row in answer["rows"]}
    assert by_pk[0] == {"pk": 0, "$meta": {"genre": "sf", "n": 1}, "genre": "sf"}
    for pk in range(1, 7):
        assert by_pk[pk] == {"pk": pk, "$meta": {}, "genre": None}
    assert by_pk[7]["genre"] == "crime"
    status, answer = qn.request(
        "POST",
        "/v1/search",
        {"collection": FOREIGN, "vectors": [[1, 0, 0, 0]], "topK": 8, "outputFields": ["*"]},
        token=DATA_TOKEN,
    )
    assert status == 200, answer
    assert len(answer["results"][0]) == 8
    assert all(isinstance(hit["fields"]["$meta"], dict) for hit in answer["results"][0])
    status, answer = qn.request(
        "POST", "/v1/query", {"collection": FOREIGN, "filter": 'genre == "crime" or n == 1'}, token=DATA_TOKEN
    )
    assert status == 200 and sorted(row["pk"] for row in answer["rows"]) == [0, 7], answer
    qn.stop()
    logged = qn.log_path.read_text() if qn.log_path is not None else ""
    assert logged.count("is not a JSON object; it reads as {}") == 1, logged[-2000:]
