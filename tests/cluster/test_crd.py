"""The CollectionLoad CRD against a real kube-apiserver: schema, CEL rules, status subresource,
printer columns and `kubectl wait`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vectorload_dev.cluster.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "crds" / "examples").glob("*.yaml"))


def _manifest(name: str, spec: object) -> str:
    return json.dumps(
        {
            "apiVersion": "vectorload.io/v1alpha1",
            "kind": "CollectionLoad",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def _get(plane: ControlPlane, namespace: str, name: str) -> dict[str, object]:
    out = plane.kubectl("-n", namespace, "get", "cload", name, "-o", "json").stdout
    loaded: dict[str, object] = json.loads(out)
    return loaded


def _patch_status(plane: ControlPlane, namespace: str, name: str, status: dict[str, object]) -> None:
    plane.kubectl(
        "-n", namespace, "patch", "cload", name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_crd_is_established_with_names(crd_installed: ControlPlane) -> None:
    crd = json.loads(
        crd_installed.kubectl("get", "crd", "collectionloads.vectorload.io", "-o", "json").stdout
    )
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["cload"]
    assert names["categories"] == ["vectorload"]
    # the short name and the category both resolve through discovery
    assert crd_installed.kubectl("get", "cload", "-A").returncode == 0
    assert crd_installed.kubectl("get", "vectorload", "-A").returncode == 0


def test_vectorload_crd_output_is_what_kubectl_applies(crd_installed: ControlPlane) -> None:
    """`vectorload crd | kubectl apply --server-side -f -`: the packaged CRD, no checkout needed."""
    command = [sys.executable, "-m", "vectorload.cli", "crd"]
    printed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert printed.stdout == (REPO / "crds" / "collectionload.yaml").read_text()
    applied = crd_installed.kubectl("apply", "--server-side", "-f", "-", input=printed.stdout)
    assert applied.stdout.strip() == (
        "customresourcedefinition.apiextensions.k8s.io/collectionloads.vectorload.io serverside-applied"
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_applies(crd_installed: ControlPlane, namespace: str, example: Path) -> None:
    crd_installed.kubectl("-n", namespace, "apply", "-f", str(example))
    name = yaml.safe_load(example.read_text())["metadata"]["name"]
    obj = _get(crd_installed, namespace, name)
    spec = obj["spec"]
    assert isinstance(spec, dict)
    assert spec["collection"] == "book"
    assert spec["replicas"] >= 1  # defaulted by the schema when absent
    assert spec["skipLoadDynamicField"] in (True, False)


INVALID: list[tuple[str, object, list[str]]] = [
    ("missing-collection", {"replicas": 1}, ["spec.collection", "Required"]),
    ("collection-pattern", {"collection": "1book"}, ["spec.collection", "should match"]),
    ("collection-too-long", {"collection": "b" * 256}, ["spec.collection", "255"]),
    ("collection-path", {"collection": "../etc"}, ["spec.collection"]),
    (
        "partition-duplicate",
        {"collection": "book", "partitions": ["novel", "novel"]},
        ["spec.partitions[1]", "Duplicate"],
    ),
    (
        "partition-pattern",
        {"collection": "book", "partitions": ["no/vel"]},
        ["spec.partitions[0]", "should match"],
    ),
    (
        "fields-duplicate",
        {"collection": "book", "loadFields": ["book_id", "book_id"]},
        ["spec.loadFields[1]", "Duplicate"],
    ),
    ("fields-one", {"collection": "book", "loadFields": ["book_id"]}, ["spec.loadFields", "primary key"]),
    (
        "fields-pattern",
        {"collection": "book", "loadFields": ["book_id", "$meta"]},
        ["spec.loadFields[1]", "should match"],
    ),
    ("replicas-zero", {"collection": "book", "replicas": 0}, ["spec.replicas", "greater than or equal to 1"]),
    (
        "replicas-too-many",
        {"collection": "book", "replicas": 65},
        ["spec.replicas", "less than or equal to 64"],
    ),
    ("replicas-type", {"collection": "book", "replicas": "two"}, ["spec.replicas", "integer"]),
    (
        "skip-dynamic-type",
        {"collection": "book", "skipLoadDynamicField": "yes"},
        ["spec.skipLoadDynamicField", "boolean"],
    ),
    (
        "selector-operator",
        {
            "collection": "book",
            "querynodeSelector": {"matchExpressions": [{"key": "pool", "operator": "Like"}]},
        },
        ["spec.querynodeSelector.matchExpressions[0].operator", "Unsupported value"],
    ),
    (
        "selector-in-without-values",
        {
            "collection": "book",
            "querynodeSelector": {"matchExpressions": [{"key": "pool", "operator": "In"}]},
        },
        ["spec.querynodeSelector.matchExpressions[0]", "values must be non-empty"],
    ),
    ("unknown-field", {"collection": "book", "replica": 2}, ["spec.replica", "unknown field"]),
]


@pytest.mark.parametrize(("case", "spec", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_resource_is_rejected_naming_the_field(
    crd_installed: ControlPlane, namespace: str, case: str, spec: object, expected: list[str]
) -> None:
    result = crd_installed.kubectl(
        "-n", namespace, "apply", "--validate=strict", "-f", "-", input=_manifest(case, spec), check=False
    )
    assert result.returncode != 0, f"{case} was accepted"
    message = result.stderr
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    # nothing was stored
    assert crd_installed.kubectl("-n", namespace, "get", "cload", case, check=False).returncode != 0


def test_missing_spec_is_rejected(crd_installed: ControlPlane, namespace: str) -> None:
    body = json.dumps(
        {"apiVersion": "vectorload.io/v1alpha1", "kind": "CollectionLoad", "metadata": {"name": "x"}}
    )
    result = crd_installed.kubectl("-n", namespace, "create", "-f", "-", input=body, check=False)
    assert result.returncode != 0
    assert "spec" in result.stderr and "Required" in result.stderr


def test_collection_is_immutable(crd_installed: ControlPlane, namespace: str) -> None:
    crd_installed.kubectl("-n", namespace, "apply", "-f", "-", input=_manifest("imm", {"collection": "book"}))
    result = crd_installed.kubectl(
        "-n",
        namespace,
        "patch",
        "cload",
        "imm",
        "--type=merge",
        "-p",
        '{"spec":{"collection":"movie"}}',
        check=False,
    )
    assert result.returncode != 0
    assert "spec.collection" in result.stderr and "immutable" in result.stderr


def test_spec_change_bumps_generation_status_patch_does_not(
    crd_installed: ControlPlane, namespace: str
) -> None:
    crd_installed.kubectl("-n", namespace, "apply", "-f", "-", input=_manifest("gen", {"collection": "book"}))
    first = _get(crd_installed, namespace, "gen")["metadata"]
    assert isinstance(first, dict) and first["generation"] == 1
    _patch_status(crd_installed, namespace, "gen", {"loadState": "Loading", "loadProgress": 10})
    after_status = _get(crd_installed, namespace, "gen")
    assert after_status["metadata"]["generation"] == 1  # type: ignore[index]
    assert after_status["status"]["loadProgress"] == 10  # type: ignore[index]
    crd_installed.kubectl(
        "-n", namespace, "patch", "cload", "gen", "--type=merge", "-p", '{"spec":{"replicas":2}}'
    )
    assert _get(crd_installed, namespace, "gen")["metadata"]["generation"] == 2  # type: ignore[index]
    # the main resource endpoint ignores status changes (status subresource)
    crd_installed.kubectl(
        "-n", namespace, "patch", "cload", "gen", "--type=merge", "-p", '{"status":{"loadProgress":99}}'
    )
    assert _get(crd_installed, namespace, "gen")["status"]["loadProgress"] == 10  # type: ignore[index]


FULL_STATUS: dict[str, object] = {
    "observedGeneration": 1,
    "loadState": "Loading",
    "loadProgress": 50,
    "progressText": "50%",
    "replicaText": "0/2",
    "loadedBytes": 1234567,
    "loadedBytesText": "1.2MiB",
    "loadedFields": ["book_id", "book_intro"],
    "partitions": [{"name": "novel", "loadProgress": 100}, {"name": "poetry", "loadProgress": 0}],
    "replicas": [{"id": 0, "nodes": ["qn-0", "qn-1"], "loadedSegments": 3, "totalSegments": 6}],
    "conditions": [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Loading",
            "message": "3 of 6 segments loaded",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        }
    ],
    "lastFailure": {
        "node": "qn-1",
        "segment": "novel/seg-0001",
        "reason": "ChecksumMismatch",
        "message": "book_intro.hnsw: sha256 mismatch",
        "time": "2026-01-01T00:00:00Z",
    },
}


def test_full_status_round_trips_without_pruning(crd_installed: ControlPlane, namespace: str) -> None:
    crd_installed.kubectl("-n", namespace, "apply", "-f", "-", input=_manifest("st", {"collection": "book"}))
    _patch_status(crd_installed, namespace, "st", FULL_STATUS)
    assert _get(crd_installed, namespace, "st")["status"] == FULL_STATUS


def test_invalid_status_is_rejected(crd_installed: ControlPlane, namespace: str) -> None:
    crd_installed.kubectl(
        "-n", namespace, "apply", "-f", "-", input=_manifest("bad-st", {"collection": "book"})
    )
    result = crd_installed.kubectl(
        "-n", namespace, "patch", "cload", "bad-st", "--subresource=status", "--type=merge",
        "-p", '{"status":{"loadState":"Halfway","loadProgress":101}}', check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "status.loadState" in result.stderr and "status.loadProgress" in result.stderr


def test_kubectl_get_shows_state_columns(crd_installed: ControlPlane, namespace: str) -> None:
    crd_installed.kubectl(
        "-n", namespace, "apply", "-f", "-", input=_manifest("cols", {"collection": "book", "replicas": 2})
    )
    _patch_status(crd_installed, namespace, "cols", FULL_STATUS)
    out = crd_installed.kubectl("-n", namespace, "get", "cload", "cols").stdout.splitlines()
    header = out[0].split()
    assert header == ["NAME", "COLLECTION", "STATE", "PROGRESS", "REPLICAS", "READY", "AGE"]
    row = out[1].split()
    assert row[:6] == ["cols", "book", "Loading", "50%", "0/2", "False"]
    wide = crd_installed.kubectl("-n", namespace, "get", "cload", "cols", "-o", "wide").stdout.splitlines()
    assert "LOADED" in wide[0] and "REASON" in wide[0] and "MESSAGE" in wide[0]
    assert "1.2MiB" in wide[1] and "3 of 6 segments loaded" in wide[1]


def test_kubectl_wait_for_ready(crd_installed: ControlPlane, namespace: str) -> None:
    crd_installed.kubectl(
        "-n", namespace, "apply", "-f", "-", input=_manifest("waitme", {"collection": "book"})
    )
    waiter = subprocess.Popen(
        [str(crd_installed.kubectl_bin), "-n", namespace, "wait", "--for=condition=Ready", "--timeout=30s",
         "cload/waitme"],
        env=crd_installed.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.0)
    assert waiter.poll() is None, "kubectl wait returned before the condition was set"
    ready = {
        "loadState": "Loaded",
        "loadProgress": 100,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Loaded",
                "message": "all segments loaded",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    _patch_status(crd_installed, namespace, "waitme", ready)
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert "condition met" in out
