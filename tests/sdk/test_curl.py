"""The seeds' curl commands as written — real `curl` processes run by bash, only the endpoint
(`CLUSTER_ENDPOINT`, `localhost:9091`) and the token changed: REST v2 load / get_load_state /
release on the gRPC port (19530), and REST v1 `DELETE /api/v1/partitions/load` on 9091.

What is asserted is what Milvus answers. Two lines of the seed's sample output differ from Milvus'
own REST v2 handler (internal/distributed/proxy/httpserver/handler_v2.go): Milvus puts `message`
beside `data`, not inside it, and a released collection reads `{"loadState": "LoadStateNotLoad"}`
(the proto enum's name; the seed's "LoadStateNotLoaded" is no enum value, and NotLoad carries no
progress). REST v1 answers the status as protobuf JSON, `{}` for success (Milvus 2.3.5 does). The REST v1
seed carries no credentials (it was written for a Milvus without authentication); against the
chart's proxy it is refused with Milvus' 1800, and run again with the REST v2 seed's header."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vectorload_dev.e2e import sdk
from vectorload_dev.e2e.sdk import Endpoint

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
VECTORLOAD = str(Path(sys.executable).with_name("vectorload"))  # this venv's console script

LOAD = """
curl --request POST \\
--url "${CLUSTER_ENDPOINT}/v2/vectordb/collections/load" \\
--header "Authorization: Bearer ${TOKEN}" \\
--header "Content-Type: application/json" \\
-d '{
    "collectionName": "my_collection"
}'
"""
GET_LOAD_STATE = """
curl --request POST \\
--url "${CLUSTER_ENDPOINT}/v2/vectordb/collections/get_load_state" \\
--header "Authorization: Bearer ${TOKEN}" \\
--header "Content-Type: application/json" \\
-d '{
    "collectionName": "my_collection"
}'
"""
RELEASE = """
curl --request POST \\
--url "${CLUSTER_ENDPOINT}/v2/vectordb/collections/release" \\
--header "Authorization: Bearer ${TOKEN}" \\
--header "Content-Type: application/json" \\
-d '{
    "collectionName": "my_collection"
}'
"""
# REST v1, as the seed writes it; `http://localhost:9091` becomes ${REST_V1}. The seed's command
# was written for a Milvus without authentication: ${AUTH} is the one line added, the same
# `Authorization` header the REST v2 seed sends (empty: exactly the seed's command).
RELEASE_PARTITIONS_V1 = """
curl -X 'DELETE' \\
  "${REST_V1}/api/v1/partitions/load" \\
  ${AUTH:+-H "Authorization: Bearer ${TOKEN}"} \\
  -H 'accept: application/json' \\
  -H 'Content-Type: application/json' \\
  -d '{
    "collection_name": "book",
    "partition_names": ["novel"],
    "replica_number": 1
  }'
"""
# the load before it, in the same REST v1 form
LOAD_V1 = """
curl -X 'POST' \\
  "${REST_V1}/api/v1/collection/load" \\
  ${AUTH:+-H "Authorization: Bearer ${TOKEN}"} \\
  -H 'accept: application/json' \\
  -H 'Content-Type: application/json' \\
  -d '{
    "collection_name": "book"
  }'
"""


def curl(endpoint: Endpoint, script: str, token: str | None = None, auth: bool = True) -> Any:
    env = {
        "CLUSTER_ENDPOINT": endpoint.uri,
        "TOKEN": endpoint.token if token is None else token,
        "REST_V1": endpoint.http_uri,
        "AUTH": "1" if auth else "",
    }
    program = sdk.Program("curl", ("bash", "-c", f"set -eu\n{script.strip()}"), sdk.SDK_DIR)
    proc = program.run(env, netns_pid=endpoint.netns_pid, timeout=60)
    assert proc.returncode == 0, f"curl failed ({proc.returncode}): {proc.stderr}"
    return json.loads(proc.stdout)


def load_state(endpoint: Endpoint, collection: str, partition: str = "") -> str:
    """`vectorload load-state` (pymilvus, gRPC) as the independent witness."""
    argv = ["vectorload", "load-state", "-c", collection, "--uri", endpoint.uri, "--token", endpoint.token]
    if partition:
        argv += ["-p", partition]
    proc = sdk.Program("load-state", (VECTORLOAD, *argv[1:]), sdk.SDK_DIR).run(
        {}, netns_pid=endpoint.netns_pid
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_rest_v2_load_get_load_state_release(endpoint: Endpoint) -> None:
    if not endpoint.rest_v2:
        pytest.skip(f"{endpoint.backend} has no REST v2 (Milvus added it in 2.4)")
    assert curl(endpoint, LOAD) == {"code": 0, "data": {}}
    # REST load answers once the load is accepted (Milvus' handler does not wait): poll as a user would
    deadline = time.monotonic() + 120
    while True:
        answer = curl(endpoint, GET_LOAD_STATE)
        assert answer["code"] == 0, answer
        if answer["data"]["loadState"] == "LoadStateLoaded":
            break
        assert answer["data"]["loadState"] == "LoadStateLoading", answer
        assert 0 <= answer["data"]["loadProgress"] <= 100, answer
        assert time.monotonic() < deadline, f"not Loaded after 120 s: {answer}"
        time.sleep(0.5)
    assert answer["data"]["loadProgress"] == 100
    assert answer.get("message", "") == "" and answer["data"].get("message", "") == ""
    assert load_state(endpoint, "my_collection") == "my_collection: Loaded"

    assert curl(endpoint, RELEASE) == {"code": 0, "data": {}}
    released = curl(endpoint, GET_LOAD_STATE)
    assert released["code"] == 0
    assert released["data"]["loadState"] == "LoadStateNotLoad", released
    assert released["data"].get("loadProgress", 0) == 0
    assert load_state(endpoint, "my_collection") == "my_collection: NotLoad"


def test_rest_v2_refuses_a_wrong_token(endpoint: Endpoint) -> None:
    if not endpoint.rest_v2:
        pytest.skip(f"{endpoint.backend} has no REST v2")
    answer = curl(endpoint, GET_LOAD_STATE, token="root:not-the-password")
    assert answer["code"] != 0 and answer.get("message"), answer
    assert "data" not in answer or not answer["data"].get("loadState"), answer


def test_rest_v1_release_partitions(endpoint: Endpoint) -> None:
    if endpoint.backend == "proxy":
        # the seed's command exactly as written has no credentials: the chart's proxy wants them
        refused = curl(endpoint, RELEASE_PARTITIONS_V1, auth=False)
        assert refused["code"] == 1800 and "authenticated" in refused["message"], refused
    assert curl(endpoint, LOAD_V1) == {}
    deadline = time.monotonic() + 120
    while load_state(endpoint, "book") != "book: Loaded":
        assert time.monotonic() < deadline, load_state(endpoint, "book")
        time.sleep(0.5)
    assert curl(endpoint, RELEASE_PARTITIONS_V1) == {}
    assert load_state(endpoint, "book", "novel") == "book/novel: NotLoad"
    assert load_state(endpoint, "book", "poetry") == "book/poetry: Loaded"
    assert load_state(endpoint, "book") == "book: Loaded"  # the collection keeps its other partitions
    release = [VECTORLOAD, "release", "-c", "book", "--uri", endpoint.uri]
    proc = sdk.Program("release", tuple(release), sdk.SDK_DIR).run(
        {"MILVUS_TOKEN": endpoint.token}, netns_pid=endpoint.netns_pid
    )
    assert (proc.returncode, proc.stdout) == (0, "book: NotLoad\n"), proc.stderr
