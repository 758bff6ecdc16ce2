"""`vectorload search --collection-load` against the real local control plane: the command reads
the CollectionLoad status and the pods from the API server, then searches the querynode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vectorload.client.cli import search_main
from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.testing.querynode_harness import DATA_TOKEN, QuerynodeFactory, load_all

pytestmark = pytest.mark.cluster


def test_search_through_a_collectionload(
    crd_installed: ControlPlane,
    namespace: str,
    querynode_factory: QuerynodeFactory,
    tiny_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plane = crd_installed
    qn = querynode_factory(tiny_root)
    load_all(qn, tiny_root, "book")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "querynode-0", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "querynode",
                    "image": "vectorload",
                    "ports": [{"name": "http", "containerPort": qn.port}],
                }
            ]
        },
    }
    load = {
        "apiVersion": "vectorload.io/v1alpha1",
        "kind": "CollectionLoad",
        "metadata": {"name": "book", "namespace": namespace},
        "spec": {"collection": "book"},
    }
    # the data API is closed: the command reads the data token from a Secret (the chart's
    # <release>-data-token holds it under the key `token`)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "book-data-token", "namespace": namespace},
        "stringData": {"token": DATA_TOKEN},
    }
    for obj in (pod, load, secret):
        plane.kubectl("apply", "-f", "-", input=json.dumps(obj))
    pod_status = {"status": {"phase": "Running", "podIP": qn.host, "podIPs": [{"ip": qn.host}]}}
    load_status = {"status": {"replicas": [{"id": 0, "nodes": ["querynode-0"]}]}}
    for kind, name, patch in (("pod", "querynode-0", pod_status), ("collectionload", "book", load_status)):
        plane.kubectl(
            "-n",
            namespace,
            "patch",
            kind,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
    monkeypatch.setenv("KUBECONFIG", str(plane.kubeconfig))
    for env in ("VECTORLOAD_TOKEN", "VECTORLOAD_DATA_TOKEN"):
        monkeypatch.delenv(env, raising=False)
    unauthenticated = ["--collection-load", "book", "-n", namespace, "--random", "--dim", "16"]
    assert search_main(unauthenticated) == 1
    assert "Unauthorized" in capsys.readouterr().err
    argv = [
        "--token-secret",
        "book-data-token",
        "--collection-load",
        "book",
        "-n",
        namespace,
        "--vector",
        json.dumps([0.1] * 16),
        "--anns-field",
        "cover",
    ]
    assert search_main([*argv, "--top-k", "3", "--output-fields", "title", "--json"]) == 0
    captured = capsys.readouterr()
    hits = json.loads(captured.out)["results"][0]
    assert len(hits) == 3 and all("title" in h["fields"] for h in hits)
    assert "replica 0 on querynode-0" in captured.err
    assert search_main(["--collection-load", "missing", "-n", namespace, "--random", "--dim", "16"]) == 1
    assert "missing" in capsys.readouterr().err
