"""REST v2 of the write path, as the seeds' curl uses it: collections/create (quick form: index
and load included), entities/insert → search finds the rows, upsert, delete by filter, bad rows
with Milvus' text, indexes/list and describe, collections/drop."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from vectorload_dev.testing import wait_for
from vectorload_dev.testing.proxy_harness import ROOT_TOKEN, ProxyProcess


def post(proxy: ProxyProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(  # noqa: S310 (loopback)
        f"{proxy.uri}/v2/vectordb/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ROOT_TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        assert resp.status == 200
        return dict(json.loads(resp.read()))


def test_rest_v2_write_path(write_proxy: ProxyProcess, wclient: Any, write_root: Path) -> None:
    name = "rest_quick"
    assert post(write_proxy, "collections/create", {"collectionName": name, "dimension": 4}) == {
        "code": 0,
        "data": {},
    }
    try:
        state = post(write_proxy, "collections/get_load_state", {"collectionName": name})
        assert state["data"]["loadState"] == "LoadStateLoaded"
        assert post(write_proxy, "indexes/list", {"collectionName": name})["data"] == ["vector"]
        described = post(write_proxy, "indexes/describe", {"collectionName": name, "indexName": "vector"})[
            "data"
        ]
        assert described[0]["metricType"] == "COSINE" and described[0]["indexType"] == "HNSW"
        data = [{"id": i, "vector": [1.0, float(i), 0.5, -1.0], "tag": f"t{i}"} for i in range(1, 21)]
        out = post(write_proxy, "entities/insert", {"collectionName": name, "data": data})
        assert out["code"] == 0 and out["data"] == {"insertCount": 20, "insertIds": list(range(1, 21))}

        def found() -> bool:
            hits = post(
                write_proxy,
                "entities/search",
                {
                    "collectionName": name,
                    "data": [[1.0, 7.0, 0.5, -1.0]],
                    "limit": 1,
                    "outputFields": ["tag"],
                },
            )["data"]
            return bool(hits) and hits[0]["id"] == 7 and hits[0]["tag"] == "t7"

        wait_for("REST-inserted rows searchable", found, timeout=10, interval=0.05)
        out = post(
            write_proxy,
            "entities/upsert",
            {"collectionName": name, "data": [{"id": 7, "vector": [1.0, 7.0, 0.5, -1.0], "tag": "new"}]},
        )
        assert out["data"] == {"upsertCount": 1, "upsertIds": [7]}
        wait_for(
            "upserted",
            lambda: (
                post(write_proxy, "entities/get", {"collectionName": name, "id": 7, "outputFields": ["tag"]})[
                    "data"
                ]
                == [{"id": 7, "tag": "new"}]
            ),
            timeout=10,
            interval=0.05,
        )
        out = post(write_proxy, "entities/delete", {"collectionName": name, "filter": "id in [1, 2, 3]"})
        assert out == {"code": 0, "data": {"deleteCount": 3}}
        wait_for(
            "deleted",
            lambda: (
                post(
                    write_proxy,
                    "entities/query",
                    {"collectionName": name, "filter": "id < 5", "outputFields": ["id"]},
                )["data"]
                == [{"id": 4}]
            ),
            timeout=10,
            interval=0.05,
        )
        # bad rows: the whole request refused with Milvus' text, code 1100
        bad = post(
            write_proxy,
            "entities/insert",
            {"collectionName": name, "data": [{"id": 100, "vector": [1.0, 2.0]}]},
        )
        assert (
            bad["code"] == 1100
            and "the dim (2) of field data(vector) is not equal to schema dim (4)" in bad["message"]
        )
        bad = post(write_proxy, "entities/insert", {"collectionName": name, "data": [{"id": 100}]})
        assert bad["code"] == 1100 and "Insert missed an field `vector`" in bad["message"]
        bad = post(
            write_proxy,
            "entities/insert",
            {"collectionName": name, "data": [{"id": 2**63, "vector": [1, 2, 3, 4]}]},
        )
        assert bad["code"] == 1100 and "out of the Int64 range" in bad["message"]
        bad = post(
            write_proxy,
            "entities/insert",
            {
                "collectionName": name,
                "data": [{"id": 5, "vector": [1, 2, 3, 4]}, {"id": 5, "vector": [1, 2, 3, 4]}],
            },
        )
        assert (
            bad["code"] == 1100
            and "duplicate primary keys are not allowed in the same batch" in bad["message"]
        )
    finally:
        assert post(write_proxy, "collections/drop", {"collectionName": name})["code"] == 0
    assert not (write_root / name).exists()
    assert post(write_proxy, "collections/has", {"collectionName": name})["data"] == {"has": False}
