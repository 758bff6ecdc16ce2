"""Wire-level pieces without a cluster: what the proxy decodes from requests the real pymilvus
encodes (placeholder groups, search params), and what it encodes as pymilvus' own parsers read
it (SearchResultData, DescribeCollection's schema); REST bodies; tokens; the catalog cache."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymilvus.client.prepare import Prepare
from pymilvus.client.search_result import SearchResult
from pymilvus.client.types import DataType

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.wire.querynode import Hit
from vectorload_dev.testing.proxy_harness import write_my_collection
from vectorload_proxy import convert, requests, rest_types
from vectorload_proxy.auth import Authenticator, AuthError
from vectorload_proxy.catalog import Catalog
from vectorload_proxy.errors import MilvusError
from vectorload_proxy.requests import Limits
from vectorload_proxy.rest_types import BodyError, V1Partitions, V2Collection, V2Get, decode, depth_exceeds

SCHEMA = CollectionSchema(
    name="book",
    fields=(
        FieldSchema("book_id", "int64", is_primary=True),
        FieldSchema("title", "varchar", max_length=64),
        FieldSchema("rating", "float"),
        FieldSchema("intro", "float_vector", dim=4, metric="l2"),
        FieldSchema("cover", "float_vector", dim=2, metric="cosine"),
    ),
    dynamic_field=True,
)
LOADED = ("book_id", "title", "rating", "intro", "cover", "$meta")


def pymilvus_search_request(data: list[list[float]], **kwargs: object) -> object:
    return Prepare.search_requests_with_expr(
        "book", kwargs.pop("anns_field", "intro"), dict(kwargs.pop("param", {})), int(kwargs.pop("limit", 3)),
        data=data, **kwargs,
    )  # fmt: skip


def args_of(request: object, limits: Limits | None = None) -> requests.SearchArgs:
    r = request
    return requests.search_args(
        "book", list(r.partition_names), r.dsl, r.placeholder_group, list(r.output_fields),  # type: ignore[attr-defined]
        requests.key_values(r.search_params), r.nq, SCHEMA, LOADED, limits or Limits(),  # type: ignore[attr-defined]
    )  # fmt: skip


def test_search_requests_as_pymilvus_encodes_them() -> None:
    data = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    req = pymilvus_search_request(
        data.tolist(), limit=5, param={"metric_type": "L2", "params": {"ef": 32}}, expr="rating > 2",
        output_fields=["title", "genre"], partition_names=["novel"], offset=2, round_decimal=3,
    )  # fmt: skip
    args = args_of(req)
    assert np.array_equal(args.vectors, data) and args.nq == 3
    assert (args.top_k, args.offset, args.ef, args.round_decimal) == (5, 2, 32, 3)
    assert args.filter == "rating > 2" and args.output_fields == ("title", "genre")
    assert args.partitions == ("novel",) and args.metric == "l2" and args.anns_field == "intro"
    star = args_of(pymilvus_search_request(data.tolist(), output_fields=["*"]))
    assert star.output_fields == ("book_id", "title", "rating", "$meta")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"data": [[0.0] * 3]}, "dim (3.0)"),
        ({"data": [[float("nan")] * 4]}, "finite"),
        ({"data": [[0.0] * 4], "limit": 0}, "topk [0]"),
        ({"data": [[0.0] * 4], "param": {"metric_type": "IP"}}, "metric type not match"),
        ({"data": [[0.0] * 4], "param": {"params": {"ef": 0}}}, "ef [0]"),
        ({"data": [[0.0] * 4], "param": {"params": {"radius": 1}}}, "range search"),
        ({"data": [[0.0] * 4], "group_by_field": "title"}, "grouping"),
        ({"data": [[0.0] * 4], "anns_field": "title"}, "fieldName(title) not found"),
        ({"data": [[0.0] * 4], "anns_field": ""}, "multiple anns_fields"),
        ({"data": [[0.0] * 4], "output_fields": ["count(*)"]}, "aggregation"),
    ],
)
def test_bad_searches_are_refused_naming_the_problem(kwargs: dict[str, object], needle: str) -> None:
    data = kwargs.pop("data")
    with pytest.raises(MilvusError) as info:
        args_of(pymilvus_search_request(data, **kwargs))  # type: ignore[arg-type]
    assert info.value.code == 1100 and needle in info.value.message, info.value.message


def test_search_limits_name_the_flag() -> None:
    req = pymilvus_search_request([[0.0] * 4] * 10, limit=100)
    with pytest.raises(MilvusError) as info:
        args_of(req, Limits(max_search_results=500))
    assert "--max-search-results 500" in info.value.message
    with pytest.raises(MilvusError) as info:
        args_of(req, Limits(max_nq=5))
    assert "--max-nq 5" in info.value.message
    with pytest.raises(MilvusError) as info:
        args_of(pymilvus_search_request([[0.0] * 4], expr="x" * 100), Limits(max_filter_chars=10))
    assert "--max-filter-chars 10" in info.value.message
    with pytest.raises(MilvusError):
        requests.decode_vectors(b"\xff\xff garbage", 4, "intro", Limits())


def test_query_arguments() -> None:
    args = requests.query_args(
        "book", "rating > 1", ["title"], [], {"limit": "5", "offset": "2"}, SCHEMA, LOADED, Limits()
    )
    assert (args.limit, args.offset) == (5, 2)
    with pytest.raises(MilvusError, match="empty expression"):
        requests.query_args("book", " ", [], [], {}, SCHEMA, LOADED, Limits())
    with pytest.raises(MilvusError, match="not loaded"):
        requests.query_args("book", "rating > 1", ["title"], [], {}, SCHEMA, ("book_id", "intro"), Limits())
    with pytest.raises(MilvusError, match="limit"):
        requests.query_args("book", "x", [], [], {"limit": "99999999999999999999"}, SCHEMA, LOADED, Limits())


def test_search_results_read_back_by_pymilvus() -> None:
    hits = [
        [Hit(id=7, distance=0.25, partition="p", fields={"title": "a", "rating": 1.5, "genre": "x"}),
         Hit(id=9, distance=0.5, partition="p", fields={"title": "b", "rating": 2.5, "genre": None})],
        [Hit(id=3, distance=0.125, partition="p", fields={"title": "c", "rating": 3.5, "genre": "y"})],
    ]  # fmt: skip
    data = convert.search_result(SCHEMA, hits, 2, ("title", "rating", "genre"), "cosine", round_decimal=-1)
    parsed = SearchResult(data)
    assert [[h["book_id"] for h in q] for q in parsed] == [[7, 9], [3]]
    assert [h["distance"] for h in parsed[0]] == pytest.approx([0.75, 0.5])  # COSINE: 1 - distance
    assert parsed[0][0]["entity"] == {"title": "a", "rating": 1.5, "genre": "x"}
    assert parsed[0][1]["entity"]["title"] == "b" and "genre" not in parsed[0][1]["entity"]
    l2 = convert.search_result(SCHEMA, hits, 2, (), "l2", round_decimal=1)
    assert list(l2.scores) == pytest.approx([0.2, 0.5, 0.1])
    assert list(l2.topks) == [2, 1] and l2.num_queries == 2 and l2.primary_field_name == "book_id"


def test_the_primary_key_as_an_output_field_comes_from_the_hit_id() -> None:
    """Every SDK may list the primary key in output_fields; the querynode answers it as the hit's
    id, not among the hit's fields (a TypeError before)."""
    hits = [[Hit(id=7, distance=0.25, partition="p", fields={"title": "a"})]]
    parsed = SearchResult(convert.search_result(SCHEMA, hits, 1, ("book_id", "title"), "l2"))
    assert parsed[0][0]["entity"] == {"book_id": 7, "title": "a"}


@pytest.mark.parametrize("value", ["", "0", "false", "False"])
def test_unsupported_search_keys_sent_unset_are_ignored(value: str) -> None:
    """milvus-sdk-go 2.4 sends `group_by_field=""` on every search."""
    req = pymilvus_search_request([[0.0] * 4])
    params = requests.key_values(req.search_params)  # type: ignore[attr-defined]
    args = requests.search_args(
        "book", [], req.dsl, req.placeholder_group, [],  # type: ignore[attr-defined]
        {**params, "group_by_field": value}, 1, SCHEMA, LOADED, Limits(),
    )  # fmt: skip
    assert args.nq == 1


def test_describe_collection_schema_as_pymilvus_reads_it(tmp_path: Path) -> None:
    write_my_collection(tmp_path)
    info = Catalog(tmp_path).get_blocking("my_collection")
    proto = convert.schema_proto(info, "default")
    fields = [(f.name, f.data_type, f.fieldID, f.is_primary_key) for f in proto.fields]
    assert fields == [
        ("my_id", DataType.INT64, 100, True),
        ("my_vector", DataType.FLOAT_VECTOR, 101, False),
        ("color", DataType.VARCHAR, 102, False),
    ]
    assert {p.key: p.value for p in proto.fields[1].type_params} == {"dim": "8"}
    assert proto.enable_dynamic_field and not any(f.name == "$meta" for f in proto.fields)
    columns = convert.query_columns(
        info.schema, ("color", "shape"), [{"my_id": 1, "color": "red", "shape": "round"}]
    )
    assert [c.field_name for c in columns] == ["my_id", "color", "$meta"]
    assert json.loads(columns[2].scalars.json_data.data[0]) == {"shape": "round"} and columns[2].is_dynamic


def test_the_catalog_cache_follows_storage(tmp_path: Path) -> None:
    write_my_collection(tmp_path)
    clock = [0.0]
    catalog = Catalog(tmp_path, check_interval=1.0, clock=lambda: clock[0])
    assert catalog.get_blocking("my_collection").rows == 200
    segment = tmp_path / "my_collection" / "_default" / "seg-1"
    os.rename(segment, tmp_path / "my_collection" / "seg-1.away")  # a segment disappears
    assert catalog.get_blocking("my_collection").rows == 200  # cached within the interval
    clock[0] = 2.0
    assert catalog.get_blocking("my_collection").rows == 100
    with pytest.raises(MilvusError) as info:
        catalog.get_blocking("nope")
    assert info.value.code == 100
    broken = tmp_path / "my_collection" / "_default" / "seg-9"  # a new segment, its manifest corrupt
    broken.mkdir()
    (broken / "manifest.json").write_text("{broken")
    clock[0] = 4.0
    with pytest.raises(MilvusError) as info:
        catalog.get_blocking("my_collection")
    assert info.value.code == 2 and "manifest.json" in info.value.message


def test_rest_bodies_are_typed_and_bounded() -> None:
    body = decode(b'{"collectionName": "book", "partitionNames": ["a"]}', V2Collection, 32)
    assert body.collection_name == "book" and body.partition_names == ["a"] and body.db_name == ""
    assert decode(
        b'{"collection_name": "book", "partition_names": ["novel"], "replica_number": 1}', V1Partitions, 32
    ).partition_names == ["novel"]
    assert decode(b'{"collectionName": "b", "id": 5}', V2Get, 32).id == 5
    cases = [
        (b'{"collectionName": ', "malformed"),
        (b"{}", "missing"),
        (b'{"collectionName": 1}', "invalid"),
        (b'{"collectionName": "b", "top_k": 1}', "invalid"),
        (b'{"collectionName": null}', "invalid"),
    ]
    for raw, kind in cases:
        with pytest.raises(BodyError) as info:
            decode(raw, V2Collection, 32)
        assert info.value.kind == kind, raw
    assert depth_exceeds(b"[" * 40 + b"]" * 40, 32) and not depth_exceeds(
        b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 32
    )
    started = time.perf_counter()
    assert not depth_exceeds(json.dumps({"data": [[0.5] * 768] * 100}).encode(), 32)
    assert time.perf_counter() - started < 0.5


def test_tokens(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("# users\nroot:Milvus\n\nsecret-key\n")
    clock = [0.0]
    auth = Authenticator(creds, clock=lambda: clock[0])
    assert auth.check_grpc({"authorization": base64.b64encode(b"root:Milvus").decode()}) == "root"
    assert auth.check_grpc({"authorization": base64.b64encode(b"secret-key").decode()}) == "api-key"
    assert auth.check_http("Bearer root:Milvus") == "root"
    assert auth.check_http("Basic " + base64.b64encode(b"root:Milvus").decode()) == "root"
    refused: list[dict[str, str]] = [
        {},
        {"authorization": "!!"},
        {"authorization": base64.b64encode(b"root:x").decode()},
        {"authorization": base64.b64encode(b"\xff\xfe").decode()},
        {"authorization": "A" * 10000},
    ]
    for bad in refused:
        with pytest.raises(AuthError):
            auth.check_grpc(bad)
    for header in (None, "", "Bearer", "Token root:Milvus", "Bearer root:milvus", "Basic !!"):
        with pytest.raises(AuthError):
            auth.check_http(header)
    creds.write_text("root:new\n")
    st = creds.stat()
    os.utime(creds, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert auth.check_http("Bearer root:Milvus")  # re-read at most once a second
    clock[0] = 2.0
    with pytest.raises(AuthError):
        auth.check_http("Bearer root:Milvus")
    assert auth.check_http("Bearer root:new") == "root"
    creds.unlink()
    clock[0] = 4.0
    assert auth.check_http("Bearer root:new") == "root"  # an unreadable file keeps the last credentials
    with pytest.raises(ValueError, match="cannot be read"):
        Authenticator(tmp_path / "missing")
    assert Authenticator(None, enabled=False).check_grpc({}) == "root"


async def test_large_bodies_are_decoded_off_the_event_loop_with_the_same_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []
    real = rest_types.decode

    def spying(raw: bytes, type_: Any, depth: int) -> Any:
        threads.append(threading.get_ident())
        return real(raw, type_, depth)

    monkeypatch.setattr(rest_types, "decode", spying)
    small = json.dumps({"collectionName": "b", "id": 5}).encode()
    large = json.dumps({"collectionName": "b" * rest_types.OFFLOAD_BYTES, "id": 5}).encode()
    assert (await rest_types.decode_large(small, V2Get, 32)).id == 5
    assert (await rest_types.decode_large(large, V2Get, 32)).id == 5
    assert threads[0] == threading.get_ident() and threads[1] != threading.get_ident()
    with pytest.raises(BodyError) as info:  # a refusal crosses the thread hop unchanged
        await rest_types.decode_large(b"[" * (rest_types.OFFLOAD_BYTES + 1), V2Get, 32)
    assert "--max-json-depth 32" in info.value.message
