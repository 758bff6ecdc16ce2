"""The seeds' client code in every official Milvus SDK but Python — Java (MilvusClientV2 and the v1
MilvusServiceClient), Node.js (@zilliz/milvus2-sdk-node), Go (milvus/client/v2 and the older
milvus-sdk-go/v2) — run unchanged but for the endpoint, as real processes, and their printed
output checked line by line (the `== step` headers are the programs'; the lines under each are
what the seed prints: `true`/`false`, `Success`, `LoadStateLoaded`, `{3 0}` ...).

Each program: load `my_collection` → Loaded; one search (row MY_QUERY_ID's vector finds itself
first); release → NotLoad; load with load_fields [my_id, my_vector] (where the SDK has it);
`book`: load, release partition `novel` → novel NotLoad, poetry still Loaded, release."""

from __future__ import annotations

import pytest

from vectorload_dev.e2e import sdk, seeds
from vectorload_dev.e2e.sdk import Endpoint

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MY, BOOK = str(seeds.MY_QUERY_ID), str(seeds.BOOK_QUERY_ID)


def run(program: sdk.Program, endpoint: Endpoint, query: list[float]) -> dict[str, list[str]]:
    proc = program.run(endpoint.env(query), netns_pid=endpoint.netns_pid)
    assert proc.returncode == 0, (
        f"{program.name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    )
    return sdk.stdout_steps(proc.stdout)


def test_java_milvus_client_v2(programs: dict[str, sdk.Program], endpoint: Endpoint) -> None:
    steps = run(programs["java-v2"], endpoint, seeds.arrays().my_query)
    assert steps == {
        "load my_collection": ["true"],
        "search my_collection": [f"hits=3 top1={MY}"],
        "release my_collection": ["false"],
        "load my_collection load_fields": ["true"],
        "release partitions book novel": ["novel false", "poetry true", "done"],
    }


def test_java_v1_milvus_service_client_release_partitions(
    programs: dict[str, sdk.Program], endpoint: Endpoint
) -> None:
    steps = run(programs["java-v1"], endpoint, seeds.arrays().book_query)
    assert steps == {
        "load book": ["Success", "LoadStateLoaded"],
        "release partitions book novel": ["Success", "novel LoadStateNotLoad", "poetry LoadStateLoaded"],
        "search book poetry": [f"hits=3 top1={BOOK}"],
        "release book": ["Success", "LoadStateNotLoad"],
    }


def test_node_sdk(programs: dict[str, sdk.Program], endpoint: Endpoint) -> None:
    steps = run(programs["node"], endpoint, seeds.arrays().my_query)
    expected = {
        "load my_collection": ["Success", "LoadStateLoaded"],
        "search my_collection": [f"Success hits=3 top1={MY}"],
        "release my_collection": ["Success", "LoadStateNotLoad"],
        # the seed's getCollectionLoadState is the REST client's: REST v2 get_load_state
        "load my_collection load_fields": ["LoadStateLoaded", "Success"],
        "release partitions book novel": [
            "Success",
            "novel LoadStateNotLoad",
            "poetry LoadStateLoaded",
            "Success",
        ],
    }
    if not endpoint.rest_v2:
        del expected["load my_collection load_fields"]
    assert steps == expected


def test_go_milvusclient(programs: dict[str, sdk.Program], endpoint: Endpoint) -> None:
    steps = run(programs["go-milvusclient"], endpoint, seeds.arrays().my_query)
    # fmt.Println(entity.LoadState{State, Progress}): the client asks for progress only while Loading
    assert steps == {
        "load my_collection": ["{3 0}"],
        "search my_collection": [f"hits=3 top1={MY}"],
        "release my_collection": ["{1 0}"],
        "load my_collection load_fields": ["{3 0}"],
        "release partitions book novel": ["novel {1 0}", "poetry {3 0}", "done"],
    }


def test_go_milvus_sdk_go_release_partitions(programs: dict[str, sdk.Program], endpoint: Endpoint) -> None:
    steps = run(programs["go-sdkgo"], endpoint, seeds.arrays().book_query)
    assert steps == {
        "load book": ["3"],
        "release partitions book novel": ["novel 1", "poetry 3"],
        "search book poetry": [f"hits=3 top1={BOOK}"],
        "release book": ["1"],
    }


def test_stdout_steps_parser() -> None:
    out = "noise\n== a\nx\n\ny\n== b c\nz\n"
    assert sdk.stdout_steps(out) == {"a": ["x", "y"], "b c": ["z"]}
