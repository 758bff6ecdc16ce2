"""End to end, as users run it: `helm install` of the chart on the local control plane, the
process kubelet running the operator and querynode pods, CollectionLoads applied with kubectl,
searches through the querynodes named in the status. One test per seed scenario
(shared/seeds: load and release a collection, partitions, fields, replicas)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vectorload.client.http import QuerynodeError
from vectorload.storage.sample import SAMPLE_SIZES, sample_queries
from vectorload_dev.e2e.system import LocalSystem, Release
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.e2e import PARTITIONS, install, replica_holdings, segments

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

QUERIES = sample_queries(0, 8, spec=SAMPLE_SIZES["small"]).tolist()


@pytest.fixture(scope="module")
def release(local_system: LocalSystem, sample_root: Path) -> Iterator[Release]:
    yield from install(local_system, sample_root, "e2e")


@pytest.fixture
def rel(release: Release) -> Iterator[Release]:
    """The module's release, handed back as found: no CollectionLoad, two querynodes."""
    yield release
    if release.cload("book") is not None:
        release.delete_cload("book")
    if len(release.pods("querynode")) != 2:
        release.kubectl("scale", f"statefulset/{release.querynode_sts}", "--replicas=2")
    release.wait_querynodes(2, timeout=60)


def test_helm_install_runs_the_system_as_processes(rel: Release) -> None:
    """kube-controller-manager made the pods, the kubelet runs them on their own pod IP (this run's),
    the querynodes answer on their pod IP and the operator uses its own ServiceAccount."""
    qns = rel.querynodes()
    assert [p["metadata"]["name"] for p in qns] == [f"{rel.querynode_sts}-0", f"{rel.querynode_sts}-1"]
    ips = {p["status"]["podIP"] for p in qns}
    operator = rel.operator_pod()
    assert operator is not None
    ips.add(operator["status"]["podIP"])
    prefix = rel.system.kubelet.pod_prefix  # 127.N.x.: this test run's pod network
    assert len(ips) == 3 and all(ip.startswith(prefix) and ip != "127.0.0.1" for ip in ips)
    owner = operator["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet", "the Deployment controller created the operator pod"
    for pod in qns:
        dist = rel.distribution(pod)
        assert dist["node"] == pod["metadata"]["name"]
        assert dist["capacity"]["memoryLimitBytes"] == 256 * 2**20, "limits.memory via the downward API"
    # the operator's credentials: a bound ServiceAccount token the kubelet minted, nothing else
    uid = operator["metadata"]["uid"]
    token = (rel.system.kubelet.state_dir / "pods" / uid / "serviceaccount" / "token").read_text()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == f"system:serviceaccount:{rel.namespace}:{rel.operator_deploy}"
    assert claims["kubernetes.io"]["pod"]["uid"] == uid
    # ... and with them it reconciles: it lists pods, patches status, posts events
    rel.apply_cload("book", {"collection": "book"})
    rel.wait_state("book", "Loaded")
    events = rel.kubectl("get", "events", "--field-selector=involvedObject.kind=CollectionLoad", "-o", "json")
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"LoadStarted", "Loaded"} <= reasons


def test_load_collection_reaches_loaded(rel: Release) -> None:
    """Seed 003: load_collection("book") → get_load_state → Loaded; then search works."""
    rel.apply_cload("book", {"collection": "book"})
    rel.kubectl("wait", "--for=condition=Ready", "cload/book", "--timeout=60s")
    status = rel.wait_state("book", "Loaded")["status"]
    assert status["loadProgress"] == 100
    columns = rel.kubectl("get", "cload", "book").splitlines()
    assert columns[0].split()[:6] == ["NAME", "COLLECTION", "STATE", "PROGRESS", "REPLICAS", "READY"]
    assert columns[1].split()[:6] == ["book", "book", "Loaded", "100%", "1/1", "True"]
    assert replica_holdings(rel) == [segments()], "every segment exactly once"
    code, out, err = rel.search_cli("book", "--random", "--seed=1", "--top-k=3", "--json")
    assert code == 0, err
    hits = json.loads(out)["results"][0]
    assert len(hits) == 3 and {h["partition"] for h in hits} <= set(PARTITIONS)


def test_load_state_shows_loading_with_progress(rel: Release) -> None:
    """Seed 003: get_load_state during the load → Loading with a growing loadProgress."""
    rel.apply_cload("book", {"collection": "book"})
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = rel.status("book")
        if "loadState" in status:
            seen.append((status["loadState"], int(status.get("loadProgress", 0))))
            if status["loadState"] == "Loaded":
                break
        time.sleep(0.1)
    assert seen and seen[-1] == ("Loaded", 100), seen
    loading = [p for s, p in seen if s == "Loading"]
    assert any(0 < p < 100 for p in loading), f"no partial progress observed: {seen}"
    progress = [p for _, p in seen]
    assert progress == sorted(progress), f"progress went backwards: {seen}"


def test_load_specific_fields(rel: Release) -> None:
    """Seed 003: load_fields + skip_load_dynamic_field; only loaded fields filter and output."""
    fields = ["book_id", "book_intro", "word_count"]
    rel.apply_cload("book", {"collection": "book", "loadFields": fields, "skipLoadDynamicField": True})
    status = rel.wait_state("book", "Loaded")["status"]
    assert sorted(status["loadedFields"]) == sorted(fields)
    hits = rel.search("book", QUERIES[0], filter="word_count > 0", output_fields=["word_count"])
    assert hits and all("word_count" in h["fields"] for h in hits)
    for options in ({"filter": "rating > 1"}, {"output_fields": ["title"]}):
        with pytest.raises(QuerynodeError) as err:
            rel.search("book", QUERIES[0], **options)
        assert err.value.reason == "FieldNotLoaded", err.value
    code, _, stderr = rel.search_cli("book", "--random", "--filter", "in_print == true")
    assert code == 1 and "in_print" in stderr


def test_release_collection_frees_memory(rel: Release) -> None:
    """Seed 003: release_collection → NotLoad; the querynodes' memory is freed."""
    before = rel.used_bytes()
    rel.apply_cload("book", {"collection": "book"})
    rel.wait_state("book", "Loaded")
    loaded = rel.used_bytes()
    assert sum(loaded.values()) > sum(before.values()) + 10 * 2**20
    rel.delete_cload("book")
    rel.wait_gone("book")
    assert rel.held() == {name: [] for name in loaded}
    after = rel.used_bytes()
    assert sum(after.values()) <= sum(before.values()) + 2**20, (before, loaded, after)
    with pytest.raises(QuerynodeError) as err:
        _search_node(rel)
    assert err.value.reason == "CollectionNotLoaded"


def _search_node(rel: Release) -> Any:
    import asyncio

    from vectorload.client.cli import fan_out

    urls = [rel.url(p) for p in rel.querynodes()]
    # the data API is closed by default: the release's token opens it
    return asyncio.run(fan_out(urls, rel.token_cached, "book", [QUERIES[0]], 3, anns_field="book_intro"))


def test_release_partition_while_searching(rel: Release) -> None:
    """Seed 000: release partition `novel` of `book` while `poetry` stays searchable; a search
    loop over poetry never fails, novel's memory is freed."""
    rel.apply_cload("book", {"collection": "book", "partitions": list(PARTITIONS)})
    loaded_before = int(rel.wait_state("book", "Loaded")["status"]["loadedBytes"])
    before = sum(rel.used_bytes().values())
    failures: list[str] = []
    searches = 0
    stop = threading.Event()

    def loop() -> None:
        nonlocal searches
        while not stop.is_set():
            try:
                hits = rel.search("book", QUERIES[searches % len(QUERIES)], partitions=["poetry"])
                if not hits or {h["partition"] for h in hits} != {"poetry"}:
                    failures.append(f"bad answer {hits}")
            except Exception as exc:
                failures.append(repr(exc))
            searches += 1

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        time.sleep(0.5)
        rel.patch_cload("book", {"partitions": ["_default", "poetry"]})
        rel.wait_state("book", "Loaded")
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(10)
    assert not failures, failures[:5]
    assert searches > 5
    assert replica_holdings(rel) == [segments(("_default", "poetry"))]
    after = sum(rel.used_bytes().values())
    novel = loaded_before - int(rel.status("book")["loadedBytes"])
    assert novel > loaded_before / 4, "status: a third of the bytes went with novel"
    assert before - after >= 0.9 * novel, f"querynodes freed {before - after} of novel's {novel} bytes"
    with pytest.raises(QuerynodeError) as err:
        rel.search("book", QUERIES[0], partitions=["novel"])
    assert err.value.reason == "PartitionNotLoaded"


def test_load_partitions(rel: Release) -> None:
    """Seed 000: load partitions; add one later without releasing the others."""
    rel.apply_cload("book", {"collection": "book", "partitions": ["novel"]})
    rel.wait_state("book", "Loaded")
    assert replica_holdings(rel) == [segments(("novel",))]
    hits = rel.search("book", QUERIES[1], top_k=10)
    assert {h["partition"] for h in hits} == {"novel"}
    rel.patch_cload("book", {"partitions": ["novel", "poetry"]})
    rel.wait_state("book", "Loaded")
    assert replica_holdings(rel) == [segments(("novel", "poetry"))]
    assert rel.status("book")["loadProgress"] == 100


def test_two_replicas_on_three_querynodes(rel: Release) -> None:
    """replica_number=2 on three querynodes: two full copies, each searchable on its own."""
    rel.kubectl("scale", f"statefulset/{rel.querynode_sts}", "--replicas=3")
    rel.wait_querynodes(3)
    rel.apply_cload("book", {"collection": "book", "replicas": 2})
    status = rel.wait_state("book", "Loaded")["status"]
    assert status["replicaText"].startswith("2/2")
    assert replica_holdings(rel) == [segments(), segments()]
    used = {n for r in status["replicas"] for n in r["nodes"]}
    assert len(used) == 3, status["replicas"]
    for replica in (0, 1):
        assert len(rel.search("book", QUERIES[2], replica=replica, top_k=5)) == 5


def test_scale_querynodes_up_and_down(rel: Release) -> None:
    """`kubectl scale` the querynode StatefulSet: the operator uses new pods and reloads what
    removed pods held, staying searchable at the end of each step."""
    rel.apply_cload("book", {"collection": "book", "replicas": 2})
    status = rel.wait_state("book", "Loaded")["status"]
    assert len({n for r in status["replicas"] for n in r["nodes"]}) == 2

    rel.kubectl("scale", f"statefulset/{rel.querynode_sts}", "--replicas=4")
    rel.wait_querynodes(4)
    wait_for("status naming the new querynodes", lambda: _nodes_used(rel) == 4 or None, 60)
    rel.wait_state("book", "Loaded")
    assert replica_holdings(rel) == [segments(), segments()]

    rel.kubectl("scale", f"statefulset/{rel.querynode_sts}", "--replicas=2")
    rel.wait_querynodes(2)
    wait_for("status on the remaining two querynodes", lambda: _nodes_used(rel) == 2 or None, 60)
    rel.wait_state("book", "Loaded")
    assert replica_holdings(rel) == [segments(), segments()]
    assert len(rel.search("book", QUERIES[3])) == 5

    rel.kubectl("scale", f"statefulset/{rel.querynode_sts}", "--replicas=1")
    rel.wait_querynodes(1)
    wait_for("InsufficientNodes", lambda: _insufficient_nodes(rel), 60)
    assert len(rel.search("book", QUERIES[3])) == 5, "the remaining replica keeps serving"


def _nodes_used(rel: Release) -> int:
    st = rel.status("book")
    if st.get("loadState") != "Loaded":
        return 0
    return len({n for r in st.get("replicas") or [] for n in r.get("nodes") or []})


def _insufficient_nodes(rel: Release) -> bool:
    text = json.dumps(rel.status("book"))
    return "InsufficientNodes" in text


def test_helm_upgrade_during_a_load_converges_and_keeps_the_token(rel: Release) -> None:
    """`helm upgrade` (new querynode and operator pods) in the middle of a load: the load
    converges and the control-API token survives the upgrade."""
    token = rel.token()
    rel.apply_cload("book", {"collection": "book"})
    wait_for("Loading", lambda: rel.status("book").get("loadState") == "Loading" or None, 30)
    rel.values["querynode"]["podAnnotations"] = {"e2e/upgrade": "1"}
    rel.values["operator"]["podAnnotations"] = {"e2e/upgrade": "1"}
    try:
        out = rel.helm_install()
        assert "STATUS: deployed" in out
        assert "REVISION: 2" in out or "REVISION: " in out
        rel.kubectl("rollout", "status", f"statefulset/{rel.querynode_sts}", "--timeout=120s")
        rel.kubectl("rollout", "status", f"deployment/{rel.operator_deploy}", "--timeout=120s")
        rel.wait_ready()
        assert rel.token() == token
        for pod in rel.querynodes():
            assert pod["metadata"]["annotations"]["e2e/upgrade"] == "1"
        rel.wait_state("book", "Loaded", timeout=120)
        assert replica_holdings(rel) == [segments()]
    finally:
        rel.values["querynode"].pop("podAnnotations")
        rel.values["operator"].pop("podAnnotations")
