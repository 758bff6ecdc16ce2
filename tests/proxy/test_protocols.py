"""The proxy's surfaces besides the load lifecycle: the seeds' curl commands as written (real
`curl`), REST v2 and v1 answers and refusals, authentication, an unimplemented method, the
catalog calls pymilvus makes, metrics, and the command line."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pymilvus import MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from vectorload_dev.testing import run_slot, wait_for
from vectorload_dev.testing.operator_harness import TEST_TOKEN, QuerynodePool
from vectorload_dev.testing.proxy_harness import (
    API_KEY,
    MY_COLLECTION,
    NAMESPACE,
    ROOT_TOKEN,
    ProxyProcess,
    cload_of,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# the seed's (003, "Load and release") REST v2 commands, verbatim but for the endpoint
SEED_V2_LOAD = """curl --request POST \\
--url "${CLUSTER_ENDPOINT}/v2/vectordb/collections/load" \\
--header "Authorization: Bearer ${TOKEN}" \\
--header "Content-Type: application/json" \\
-d '{
    "collectionName": "my_collection"
}'"""
SEED_V2_GET_LOAD_STATE = """curl --request POST \\
--url "${CLUSTER_ENDPOINT}/v2/vectordb/collections/get_load_state" \\
--header "Authorization: Bearer ${TOKEN}" \\
--header "Content-Type: application/json" \\
-d '{
    "collectionName": "my_collection"
}'"""
SEED_V2_RELEASE = """curl --request POST \\
--url "${CLUSTER_ENDPOINT}/v2/vectordb/collections/release" \\
--header "Authorization: Bearer ${TOKEN}" \\
--header "Content-Type: application/json" \\
-d '{
    "collectionName": "my_collection"
}'"""
# the seed's (000, "Release partitions") REST v1 command, verbatim but for the endpoint
SEED_V1_RELEASE_PARTITIONS = """curl -X 'DELETE' \\
  'http://localhost:9091/api/v1/partitions/load' \\
  -H 'accept: application/json' \\
  -H 'Content-Type: application/json' \\
  -d '{
    "collection_name": "book",
    "partition_names": ["novel"],
    "replica_number": 1
  }'"""


def curl(command: str, env: dict[str, str] | None = None) -> Any:
    done = subprocess.run(
        ["bash", "-c", command + " --silent --show-error"],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def post(url: str, body: Any, token: str | None = ROOT_TOKEN, method: str = "POST") -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (loopback)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def client(proxy: ProxyProcess, clean: QuerynodePool) -> Iterator[MilvusClient]:
    c = MilvusClient(uri=proxy.uri, token=ROOT_TOKEN)
    yield c
    c.close()


def test_the_seeds_rest_v2_curl_commands_as_written(proxy: ProxyProcess, clean: QuerynodePool) -> None:
    env = {"CLUSTER_ENDPOINT": proxy.uri, "TOKEN": ROOT_TOKEN}  # the seed's `export`s
    assert curl(SEED_V2_LOAD, env) == {"code": 0, "data": {}}
    assert curl(SEED_V2_GET_LOAD_STATE, env) == {
        "code": 0,
        "data": {"loadProgress": 100, "loadState": "LoadStateLoaded", "message": ""},
    }
    assert cload_of(clean, MY_COLLECTION)["status"]["loadState"] == "Loaded"
    assert curl(SEED_V2_RELEASE, env) == {"code": 0, "data": {}}
    # the seed's page prints "LoadStateNotLoaded"; Milvus answers the enum's name, LoadStateNotLoad
    assert curl(SEED_V2_GET_LOAD_STATE, env) == {
        "code": 0,
        "data": {"loadProgress": 0, "loadState": "LoadStateNotLoad", "message": ""},
    }
    assert clean.collection_loads() == []


def test_the_seeds_rest_v1_release_partitions_curl_as_written(
    proxy: ProxyProcess, open_proxy: ProxyProcess, client: MilvusClient, clean: QuerynodePool
) -> None:
    client.load_collection("book")
    command = SEED_V1_RELEASE_PARTITIONS.replace("http://localhost:9091", open_proxy.http_url)
    assert curl(command) == {}  # Milvus' low-level REST: the empty Status of a success
    assert cload_of(clean, "book")["spec"]["partitions"] == ["_default", "poetry"]
    assert client.get_load_state("book", partition_name="novel")["state"].name == "NotLoad"
    # with authentication on, the same command without a token is refused as Milvus refuses it
    command = SEED_V1_RELEASE_PARTITIONS.replace("http://localhost:9091", proxy.http_url)
    done = subprocess.run(
        ["bash", "-c", command + " --silent --write-out ' %{http_code}'"],
        capture_output=True,
        text=True,
        check=True,
    )
    body, _, status = done.stdout.rpartition(" ")
    assert status == "401" and json.loads(body) == {"code": 1800, "message": "user hasn't authenticated"}
    # REST v1 load, with the token
    status_code, answer = post(
        f"{proxy.http_url}/api/v1/partitions/load", {"collection_name": "book", "partition_names": ["novel"]}
    )
    assert (status_code, answer) == (200, {})
    assert cload_of(clean, "book")["spec"]["partitions"] == ["_default", "novel", "poetry"]
    status_code, answer = post(
        f"{proxy.http_url}/api/v1/collection/load", {"collection_name": "book"}, method="DELETE"
    )
    assert (status_code, answer) == (200, {})
    assert clean.collection_loads() == []


def test_rest_v1_errors_are_milvus_status_bodies(proxy: ProxyProcess, clean: QuerynodePool) -> None:
    status, answer = post(f"{proxy.http_url}/api/v1/collection/load", {"collection_name": "nope"})
    assert status == 200 and answer == {
        "error_code": 4,
        "reason": "collection not found[collection=nope]",
        "code": 100,
    }
    status, answer = post(f"{proxy.http_url}/api/v1/collection/load", {"collectionName": "book"})
    assert status == 400 and answer["error_code"] == 5 and "collectionName" in answer["reason"]
    status, answer = post(f"{proxy.http_url}/api/v1/partitions/load", b"{not json")
    assert status == 400 and "parse body failed" in answer["reason"]


def test_rest_v2_answers_and_refusals(
    proxy: ProxyProcess, client: MilvusClient, clean: QuerynodePool
) -> None:
    base = f"{proxy.uri}/v2/vectordb"
    assert post(f"{base}/collections/list", {}) == (200, {"code": 0, "data": ["book", MY_COLLECTION]})
    assert post(f"{base}/collections/has", {"collectionName": "book"}) == (
        200,
        {"code": 0, "data": {"has": True}},
    )
    assert post(f"{base}/collections/has", {"collectionName": "nope"})[1]["data"] == {"has": False}
    status, described = post(f"{base}/collections/describe", {"collectionName": MY_COLLECTION})
    assert status == 200 and described["code"] == 0
    fields = {f["name"]: f for f in described["data"]["fields"]}
    assert fields["my_id"]["primaryKey"] and fields["my_vector"]["type"] == "FloatVector"
    assert {"key": "dim", "value": "8"} in fields["my_vector"]["params"]
    assert described["data"]["enableDynamicField"] is True and described["data"]["load"] == "LoadStateNotLoad"
    assert post(f"{base}/collections/get_stats", {"collectionName": "book"})[1]["data"] == {"rowCount": 1800}
    assert post(f"{base}/partitions/list", {"collectionName": "book"})[1]["data"] == [
        "_default",
        "novel",
        "poetry",
    ]
    assert post(f"{base}/partitions/has", {"collectionName": "book", "partitionName": "novel"})[1][
        "data"
    ] == {"has": True}
    assert post(f"{base}/partitions/load", {"collectionName": "book", "partitionNames": ["novel"]})[1] == {
        "code": 0,
        "data": {},
    }
    status, state = post(
        f"{base}/collections/get_load_state", {"collectionName": "book", "partitionNames": ["novel"]}
    )
    assert state["data"]["loadState"] == "LoadStateLoaded"
    status, found = post(
        f"{base}/entities/search",
        {"collectionName": "book", "data": [[0.0] * 64], "annsField": "book_intro", "limit": 3,
         "outputFields": ["title"], "searchParams": {"params": {"ef": 64}}},
    )  # fmt: skip
    assert status == 200 and found["code"] == 0 and len(found["data"]) == 3 and found["topks"] == [3]
    assert all("title" in h and "distance" in h and "book_id" in h for h in found["data"])
    got = post(
        f"{base}/entities/get",
        {"collectionName": "book", "id": [found["data"][0]["book_id"]], "outputFields": ["title"]},
    )[1]
    assert got["data"] == [{"book_id": found["data"][0]["book_id"], "title": found["data"][0]["title"]}]
    queried = post(
        f"{base}/entities/query",
        {"collectionName": "book", "filter": "book_id in [1, 2]", "outputFields": ["title"]},
    )[1]
    assert queried["code"] == 0 and queried["data"] == []  # ids 1, 2 are in _default: not loaded here
    assert post(f"{base}/partitions/release", {"collectionName": "book", "partitionNames": ["novel"]})[1] == {
        "code": 0,
        "data": {},
    }
    assert clean.collection_loads() == []
    # refusals: HTTP 200 and a code naming the problem, never a 5xx
    refusals = [
        ({"collection_name": "book"}, 1100, "collection_name"),
        ({}, 1802, "collectionName"),
        (b'{"collectionName": ', 1801, "json"),
        ({"collectionName": ["book"]}, 1100, "collectionName"),
        ({"collectionName": "x" * 100000}, 1100, "Invalid collection name"),
        (b"[" * 100 + b"]" * 100, 1100, "--max-json-depth 32"),
        ({"collectionName": "nope"}, 100, "collection not found[collection=nope]"),
    ]
    for body, code, needle in refusals:
        status, answer = post(f"{base}/collections/load", body)
        assert status == 200 and answer["code"] == code and needle in answer["message"], (body, answer)
        assert len(answer["message"]) < 600
    status, answer = post(f"{base}/collections/no_such_endpoint", {})
    assert status == 404 and answer["code"] == 10
    status, answer = post(f"{base}/collections/load", {"collectionName": "book"}, token=None)
    assert (status, answer) == (401, {"code": 1800, "message": "user hasn't authenticated"})
    status, answer = post(f"{base}/collections/load", {"collectionName": "book"}, token="root:wrong")
    assert status == 401
    assert post(f"{base}/collections/list", {}, token=API_KEY)[0] == 200


def grpc_call(proxy: ProxyProcess, method: str, request: Any, metadata: list[tuple[str, str]] | None) -> Any:
    with grpc.insecure_channel(proxy.address) as channel:
        stub = milvus_pb2_grpc.MilvusServiceStub(channel)
        return getattr(stub, method)(request, metadata=metadata, timeout=10)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_grpc_authentication_refuses_as_milvus_does(proxy: ProxyProcess) -> None:
    request = milvus_pb2.ShowCollectionsRequest()
    cases = [
        (None, "missing authorization in header"),
        (
            [("authorization", b64("root:wrong"))],
            "auth check failure, please check username and password are correct",
        ),
        ([("authorization", b64("not-the-key"))], "auth check failure, please check api key is correct"),
        ([("authorization", "%%% not base64")], "invalid token format"),
    ]
    for metadata, message in cases:
        with pytest.raises(grpc.RpcError) as info:
            grpc_call(proxy, "ShowCollections", request, metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and info.value.details() == message
    answer = grpc_call(proxy, "ShowCollections", request, [("authorization", b64(ROOT_TOKEN))])
    assert answer.status.code == 0 and "book" in answer.collection_names
    answer = grpc_call(proxy, "ShowCollections", request, [("authorization", b64(API_KEY))])
    assert answer.status.code == 0
    for token in ("root:wrong", None):  # Connect fails, or (a reused channel) the first call
        with pytest.raises((MilvusException, grpc.RpcError)):
            MilvusClient(uri=proxy.uri, token=token).list_collections()
    log = proxy.log_path.read_text(errors="replace")
    assert (
        "wrong" not in log.replace("authentication failed", "")
        and API_KEY not in log
        and "Milvus" not in log.split("serving")[0]
    )


def test_the_credentials_file_is_re_read_when_it_changes(
    proxy_plane: Any, pool: QuerynodePool, storage_root: Path, proxy_workdir: Path
) -> None:
    p = ProxyProcess(
        proxy_plane, proxy_workdir, NAMESPACE, storage_root, data_token=TEST_TOKEN, credentials=["alice:one"]
    )
    p.start()
    try:
        MilvusClient(uri=p.uri, token="alice:one").list_collections()
        p.credentials_file.write_text("alice:two\n")
        future = time.time() + 5
        os.utime(p.credentials_file, (future, future))  # a Secret volume update changes the file at once

        def swapped() -> bool:
            try:
                MilvusClient(uri=p.uri, token="alice:two").list_collections()
            except (MilvusException, grpc.RpcError):
                return False
            return True

        wait_for("the new password accepted", swapped, timeout=15)
        with pytest.raises((MilvusException, grpc.RpcError)):  # pymilvus passes UNAUTHENTICATED on
            MilvusClient(uri=p.uri, token="alice:one").list_collections()
    finally:
        assert p.stop() == 0  # SIGTERM: a clean exit


def test_an_unimplemented_method_answers_grpc_unimplemented_and_the_proxy_keeps_serving(
    proxy: ProxyProcess,
) -> None:
    auth = [("authorization", b64(ROOT_TOKEN))]
    for method, request in (
        ("CreateAlias", milvus_pb2.CreateAliasRequest(collection_name="book", alias="x")),
        ("CreateResourceGroup", milvus_pb2.CreateResourceGroupRequest(resource_group="rg")),
        ("ManualCompaction", milvus_pb2.ManualCompactionRequest()),
    ):
        with pytest.raises(grpc.RpcError) as info:
            grpc_call(proxy, method, request, auth)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert info.value.details() == "Method not implemented!"
    assert grpc_call(proxy, "GetVersion", milvus_pb2.GetVersionRequest(), auth).version.startswith("v2.")
    assert 'code="UNIMPLEMENTED",method="CreateAlias"' in proxy.metrics()


def test_describe_has_and_list_calls(proxy: ProxyProcess, client: MilvusClient) -> None:
    assert client.list_collections() == ["book", MY_COLLECTION]
    assert client.has_collection("book") and not client.has_collection("nope")
    described = client.describe_collection(MY_COLLECTION)
    assert [(f["name"], f["type"].name) for f in described["fields"]] == [
        ("my_id", "INT64"), ("my_vector", "FLOAT_VECTOR"), ("color", "VARCHAR"),
    ]  # fmt: skip
    assert described["fields"][0]["is_primary"] and described["fields"][1]["params"] == {"dim": 8}
    assert described["fields"][2]["params"] == {"max_length": 16}
    assert described["enable_dynamic_field"] is True and not described["auto_id"]
    assert "$meta" not in [f["name"] for f in described["fields"]]  # as Milvus shows it
    assert client.list_partitions("book") == ["_default", "novel", "poetry"]
    assert client.has_partition("book", "novel") and not client.has_partition("book", "nope")
    assert client.get_collection_stats("book") == {"row_count": 1800}
    assert client.get_partition_stats("book", "novel") == {"row_count": 600}
    assert client.list_databases() == ["default"]
    assert client.get_server_version().startswith("v2.")
    indexes = client.list_indexes("book")
    assert sorted(indexes) == ["book_intro", "cover"]
    index = client.describe_index("book", "book_intro")
    assert index["index_type"] == "HNSW" and index["metric_type"] == "L2"
    assert client.list_aliases("book")["aliases"] == []
    with pytest.raises(MilvusException) as info:
        client.describe_collection("nope")
    assert info.value.code == 100
    with pytest.raises(MilvusException) as info:
        client.describe_collection("bad name!")
    assert info.value.code == 1100
    with pytest.raises(MilvusException) as info:
        MilvusClient(uri=proxy.uri, token=ROOT_TOKEN, db_name="no_such_db").list_collections()
    assert info.value.code == 800


def test_metrics_count_requests_by_method_and_code_with_latency_histograms(
    proxy: ProxyProcess, client: MilvusClient
) -> None:
    client.list_collections()
    with pytest.raises(MilvusException):
        client.describe_collection("nope")
    text = proxy.metrics()
    assert 'vectorload_proxy_requests_total{code="0",method="ShowCollections",protocol="grpc"}' in text
    assert 'vectorload_proxy_requests_total{code="100",method="DescribeCollection",protocol="grpc"}' in text
    assert (
        'vectorload_proxy_request_duration_seconds_bucket{le="0.005",method="ShowCollections",protocol="grpc"}'
        in text
    )
    assert "vectorload_proxy_requests_in_flight" in text and "vectorload_proxy_cache_synced 1.0" in text
    with urllib.request.urlopen(f"{proxy.http_url}/healthz", timeout=5) as r:  # noqa: S310
        assert json.loads(r.read()) == {"status": "ok"}


def test_command_line_exit_codes(tmp_path: Path, storage_root: Path) -> None:
    run = [sys.executable, "-m", "vectorload.cli", "proxy"]
    assert subprocess.run([*run, "--help"], capture_output=True, timeout=60).returncode == 0
    missing = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "--storage-root" in missing.stderr
    no_auth = subprocess.run(
        [*run, "--storage-root", str(storage_root)], capture_output=True, text=True, timeout=60
    )
    assert no_auth.returncode == 2 and "--credentials-file" in no_auth.stderr
    empty = tmp_path / "credentials"
    empty.write_text("# nobody\n")
    bad = subprocess.run(
        [*run, "--storage-root", str(storage_root), "--credentials-file", str(empty),
         "--port", "0", "--http-port", "0", "--bind-address", run_slot().host],
        capture_output=True, text=True, timeout=60, env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
    )  # fmt: skip
    assert bad.returncode == 1 and "holds no credential" in bad.stderr
    good = tmp_path / "good-credentials"
    good.write_text("root:Milvus\n")
    no_kube = subprocess.run(
        [*run, "--storage-root", str(storage_root), "--credentials-file", str(good),
         "--port", "0", "--http-port", "0", "--bind-address", run_slot().host],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none"), "KUBERNETES_SERVICE_HOST": ""},
    )  # fmt: skip
    assert no_kube.returncode == 1 and "cannot start the proxy" in no_kube.stderr
