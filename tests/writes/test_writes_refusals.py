"""Bad rows refuse the whole request with Milvus' text, and nothing of it becomes visible. Sent
as raw gRPC InsertRequests (pymilvus checks some of these on the client before sending; the
proxy must refuse them for every client) and through pymilvus where it passes them on."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc, schema_pb2

from vectorload_dev.testing.proxy_harness import ROOT_TOKEN, ProxyProcess

from .test_writes_pymilvus import DIM, index_params, make_schema, rows

NAME = "refusals"


def _auth() -> list[tuple[str, str]]:
    return [("authorization", base64.b64encode(ROOT_TOKEN.encode()).decode())]


def long_field(name: str, values: list[int]) -> schema_pb2.FieldData:
    return schema_pb2.FieldData(
        type=DataType.INT64,
        field_name=name,
        scalars=schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=values)),
    )


def fields(n: int = 2, dim: int = DIM, first: int = 0, **override: Any) -> list[schema_pb2.FieldData]:
    vec = [0.5] * (n * dim)
    out = {
        "id": long_field("id", list(range(first, first + n))),
        "title": schema_pb2.FieldData(
            type=DataType.VARCHAR,
            field_name="title",
            scalars=schema_pb2.ScalarField(
                string_data=schema_pb2.StringArray(data=[f"x{i}" for i in range(n)])
            ),
        ),
        "count": long_field("count", [1] * n),
        "score": schema_pb2.FieldData(
            type=DataType.FLOAT,
            field_name="score",
            scalars=schema_pb2.ScalarField(float_data=schema_pb2.FloatArray(data=[1.0] * n)),
        ),
        "flag": schema_pb2.FieldData(
            type=DataType.BOOL,
            field_name="flag",
            scalars=schema_pb2.ScalarField(bool_data=schema_pb2.BoolArray(data=[True] * n)),
        ),
        "vec": schema_pb2.FieldData(
            type=DataType.FLOAT_VECTOR,
            field_name="vec",
            vectors=schema_pb2.VectorField(dim=dim, float_vector=schema_pb2.FloatArray(data=vec)),
        ),
    }
    for key, value in override.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return list(out.values())


@pytest.fixture
def refusals(wclient: MilvusClient, write_proxy: ProxyProcess) -> Iterator[Any]:
    wclient.create_collection(NAME, schema=make_schema(wclient, dynamic=False))
    wclient.create_index(NAME, index_params(wclient))
    with grpc.insecure_channel(write_proxy.address) as channel:
        stub = milvus_pb2_grpc.MilvusServiceStub(channel)

        def insert(fs: list[schema_pb2.FieldData], n: int = 2) -> Any:
            request = milvus_pb2.InsertRequest(collection_name=NAME, fields_data=fs, num_rows=n)
            return stub.Insert(request, metadata=_auth(), timeout=10).status

        yield insert
    wclient.drop_collection(NAME)


def test_every_bad_row_refuses_the_whole_request(refusals: Any, wclient: MilvusClient) -> None:
    insert = refusals
    nan_vec = schema_pb2.FieldData(
        type=DataType.FLOAT_VECTOR,
        field_name="vec",
        vectors=schema_pb2.VectorField(
            dim=DIM, float_vector=schema_pb2.FloatArray(data=[0.5] * (2 * DIM - 1) + [math.nan])
        ),
    )
    inf_vec = schema_pb2.FieldData(
        type=DataType.FLOAT_VECTOR,
        field_name="vec",
        vectors=schema_pb2.VectorField(
            dim=DIM, float_vector=schema_pb2.FloatArray(data=[math.inf] + [0.5] * (2 * DIM - 1))
        ),
    )
    wrong_type = schema_pb2.FieldData(
        type=DataType.VARCHAR,
        field_name="count",
        scalars=schema_pb2.ScalarField(string_data=schema_pb2.StringArray(data=["a", "b"])),
    )
    long_title = schema_pb2.FieldData(
        type=DataType.VARCHAR,
        field_name="title",
        scalars=schema_pb2.ScalarField(string_data=schema_pb2.StringArray(data=["ok", "y" * 40])),
    )
    unknown = long_field("nope", [1, 2])
    cases = [
        (fields(dim=4), "the dim (4) of field data(vec) is not equal to schema dim (8)"),
        (fields(vec=nan_vec), "value 'NaN' is not a number or infinity"),
        (fields(vec=inf_vec), "value '+Inf' is not a number or infinity"),
        (fields(count=wrong_type), "field count: expected Int64 data, got VarChar"),
        (
            fields(title=long_title),
            "length of varchar field title exceeds max length, row number: 1, length: 40, max length: 32",
        ),
        (
            fields(score=None),
            "Insert missed an field `score` to collection without set nullable==true or set default_value",
        ),
        (fields(id=long_field("id", [7, 7])), "duplicate primary keys are not allowed in the same batch"),
        (
            [*fields(), unknown],
            "Attempt to insert an unexpected field `nope` to collection without enabling dynamic field",
        ),
        (
            fields(count=long_field("count", [1])),
            "the num_rows (1) of field (count) is not equal to passed num_rows (2)",
        ),
    ]
    for fs, text in cases:
        status = insert(fs)
        assert status.code == 1100, (text, status)
        assert text in status.reason, (text, status.reason)
        assert status.reason.endswith("invalid parameter") or "invalid parameter[" in status.reason
    # a good request goes through; none of the refused ones left anything
    assert insert(fields(first=100)).code == 0
    wclient.flush(NAME)
    wclient.load_collection(NAME)
    assert sorted(r["id"] for r in wclient.query(NAME, filter="id >= 0", output_fields=["id"])) == [100, 101]
    # through pymilvus: the proxy's refusal reaches the application
    bad = rows(0, 2)
    for r in bad:
        del r["genre"]
    bad[1]["title"] = "z" * 33
    with pytest.raises(MilvusException, match="exceeds max length"):
        wclient.insert(NAME, bad)
    dup = rows(0, 2)
    for r in dup:
        del r["genre"]
    dup[1]["id"] = 0
    with pytest.raises(MilvusException, match="duplicate primary keys"):
        wclient.insert(NAME, dup)


def test_unsupported_types_and_index_types_are_refused_naming_them(wclient: MilvusClient) -> None:
    schema = wclient.create_schema(enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("meta", DataType.JSON)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    with pytest.raises(MilvusException, match="field meta: data type JSON is not supported"):
        wclient.create_collection("badtypes", schema=schema)
    schema = wclient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT16_VECTOR, dim=4)
    with pytest.raises(MilvusException, match="field vec: data type Float16Vector is not supported"):
        wclient.create_collection("badtypes", schema=schema)
    assert not wclient.has_collection("badtypes")
    wclient.create_collection("idx", schema=make_schema(wclient))
    try:
        params = wclient.prepare_index_params()
        params.add_index(field_name="vec", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 8})
        with pytest.raises(MilvusException, match="invalid index type: IVF_FLAT"):
            wclient.create_index("idx", params)
        params = wclient.prepare_index_params()
        params.add_index(field_name="vec", index_type="HNSW", metric_type="HAMMING")
        with pytest.raises(MilvusException, match="metric type HAMMING not found or not supported"):
            wclient.create_index("idx", params)
        assert wclient.list_indexes("idx") == []  # pymilvus reads 700 index not found as none
        # the same collection again is fine; another schema under the name is not
        wclient.create_collection("idx", schema=make_schema(wclient))
        with pytest.raises(MilvusException, match="create duplicate collection with different parameters"):
            wclient.create_collection("idx", dimension=3)
    finally:
        wclient.drop_collection("idx")
