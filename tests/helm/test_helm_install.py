"""The chart against the real local control plane: install (with the prometheus-operator CRDs),
Pod Security `restricted`, RBAC as the operator's and the proxy's ServiceAccounts, upgrade keeps the
token and the proxy's root password,
uninstall leaves only the CRDs. One cluster-wide release and one namespace-scoped release.

There is no kubelet here: pods are created (so admission ran) but stay Pending."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.testing import wait_for
from vectorload_dev.testing.chart import CHART, CI_VALUES, FIXTURES, KUBE_VERSION, Manifest, load_manifests

pytestmark = pytest.mark.cluster

CI = {path.stem.removesuffix("-values"): path for path in CI_VALUES}
MONITORING_CRDS = ("servicemonitors", "podmonitors", "prometheusrules")


@dataclass
class Release:
    plane: ControlPlane
    name: str
    namespace: str
    values: list[str]
    install_output: str

    @property
    def operator_sa(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}-vectorload-operator"

    @property
    def proxy_sa(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}-vectorload-proxy"

    def credentials(self) -> str:
        out = self.plane.kubectl(
            "-n",
            self.namespace,
            "get",
            "secret",
            f"{self.name}-vectorload-proxy-credentials",
            "-o",
            "jsonpath={.data.credentials}",
        ).stdout
        return base64.b64decode(out).decode()

    def manifest(self) -> list[Manifest]:
        return load_manifests(self.plane.helm("get", "manifest", self.name, "-n", self.namespace).stdout)

    def token(self) -> str:
        out = self.plane.kubectl(
            "-n",
            self.namespace,
            "get",
            "secret",
            f"{self.name}-vectorload-token",
            "-o",
            "jsonpath={.data.token}",
        ).stdout
        return base64.b64decode(out).decode()


def create_namespace(plane: ControlPlane, prefix: str, labels: dict[str, str] | None = None) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    plane.kubectl("create", "namespace", name)
    if labels:
        plane.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in labels.items()))
    return name


def can_i(plane: ControlPlane, user: str, verb: str, resource: str, *where: str) -> bool:
    proc = plane.kubectl("auth", "can-i", verb, resource, *where, f"--as={user}", check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


def install(plane: ControlPlane, name: str, namespace: str, values: list[str]) -> Release:
    proc = plane.helm("install", name, str(CHART), "-n", namespace, *values)
    return Release(plane, name, namespace, values, proc.stdout)


@pytest.fixture(scope="module")
def monitoring_crds(control_plane: ControlPlane) -> ControlPlane:
    control_plane.kubectl("apply", "--server-side", "-f", str(FIXTURES / "monitoring.coreos.com.yaml"))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{plural}.monitoring.coreos.com" for plural in MONITORING_CRDS),
    )
    return control_plane


@pytest.fixture(scope="module")
def release(monitoring_crds: ControlPlane) -> Iterator[Release]:
    """Cluster-wide release with every optional object, in a namespace that enforces the
    `restricted` Pod Security Standard."""
    plane = monitoring_crds
    namespace = create_namespace(plane, "helm", {"pod-security.kubernetes.io/enforce": "restricted"})
    values = [
        f"--values={CI['monitoring']}",
        f"--values={CI['networkpolicy']}",
        "--set=monitoring.podMonitor.enabled=true",
    ]
    rel = install(plane, "vl", namespace, values)
    yield rel
    plane.helm("uninstall", "vl", "-n", namespace, check=False)
    plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def namespaced_release(control_plane: ControlPlane) -> Iterator[Release]:
    """Namespace-scoped release: installed in one namespace, watching another."""
    home = create_namespace(control_plane, "helm-home")
    watched = create_namespace(control_plane, "helm-watched")
    rel = install(control_plane, "vlns", home, [f"--set=operator.watchNamespace={watched}"])
    rel.values.append(watched)
    yield rel
    control_plane.helm("uninstall", "vlns", "-n", home, check=False)
    for ns in (home, watched):
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_install_creates_every_rendered_object(release: Release) -> None:
    manifest = release.manifest()
    kinds = {m["kind"] for m in manifest}
    assert {
        "Deployment",
        "StatefulSet",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "NetworkPolicy",
    } <= kinds
    text = "\n---\n".join(json.dumps(m) for m in manifest)
    got = release.plane.kubectl(
        "-n", release.namespace, "get", "-f", "-", "-o", "name", input=text
    ).stdout.split()
    assert len(got) == len(manifest)
    deploy = json.loads(
        release.plane.kubectl(
            "-n", release.namespace, "get", "deployment", "vl-vectorload-operator", "-o", "json"
        ).stdout
    )
    (token,) = [v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "token"]
    assert token["secret"]["defaultMode"] == 0o440, "the API server read the mode as octal"
    crd = release.plane.kubectl("get", "crd", "collectionloads.vectorload.io", "-o", "name", check=False)
    assert crd.returncode == 0, "the chart's crds/ installs the CollectionLoad CRD"


def test_monitoring_objects_keep_every_field(release: Release) -> None:
    """The fixture CRDs prune unknown fields: a stored spec equal to the rendered one means
    every field the chart sets is a real field of the monitoring.coreos.com/v1 schema."""
    for m in release.manifest():
        if m["apiVersion"] != "monitoring.coreos.com/v1":
            continue
        stored = json.loads(
            release.plane.kubectl(
                "-n", release.namespace, "get", m["kind"], m["metadata"]["name"], "-o", "json"
            ).stdout
        )
        assert stored["spec"] == m["spec"], f"{m['kind']}/{m['metadata']['name']} lost fields"


def test_pods_pass_the_restricted_pod_security_standard(release: Release) -> None:
    """Pods are created by the Deployment/StatefulSet controllers under `enforce=restricted`:
    a non-compliant pod template would leave them with none."""

    def pods() -> list[str]:
        out = release.plane.kubectl(
            "-n", release.namespace, "get", "pods", "-l", "app.kubernetes.io/instance=vl", "-o", "name"
        ).stdout
        return out.split()

    wait_for("operator, querynode and proxy pods", lambda: len(pods()) == 5, timeout=60, interval=0.5)
    names = pods()
    assert sum("operator" in p for p in names) == 1
    assert sum("querynode" in p for p in names) == 2
    assert sum("proxy" in p for p in names) == 2
    show = ["--show-only=templates/tests/test-readyz.yaml", f"--kube-version={KUBE_VERSION}"]
    hook = release.plane.helm(
        "template", "vl", str(CHART), "-n", release.namespace, *release.values, *show
    ).stdout
    created = release.plane.kubectl(
        "-n", release.namespace, "create", "--dry-run=server", "-f", "-", input=hook
    )
    assert "created (server dry run)" in created.stdout


def test_notes(release: Release) -> None:
    notes = release.install_output.split("NOTES:", 1)[1]
    assert "deployment/vl-vectorload-operator" in notes
    assert f"helm test vl -n {release.namespace}" in notes
    assert "NetworkPolicies are on" in notes
    assert "scraped twice" in notes  # both monitor kinds enabled
    assert "removes everything but the CollectionLoad CRD" in notes
    # the pymilvus snippet for this release: the proxy Service, the root token from its Secret
    assert "port-forward svc/vl-vectorload-proxy 19530:19530" in notes
    assert f"kubectl -n {release.namespace} get secret vl-vectorload-proxy-credentials" in notes
    assert 'MilvusClient(uri="http://localhost:19530", token=os.environ.get("MILVUS_TOKEN", ""))' in notes
    assert 'client.load_collection(collection_name="book")' in notes


def rbac_cases_cluster_wide(ns: str) -> list[tuple[str, str, tuple[str, ...], bool]]:
    """(verb, resource, extra kubectl args, allowed) for the cluster-wide operator."""
    yes: list[tuple[str, str, tuple[str, ...], bool]] = []
    for where in (("-n", ns), ("-n", "default"), ("--all-namespaces",)):
        for verb in ("list", "watch", "patch"):
            yes.append((verb, "collectionloads.vectorload.io", where, True))
        for verb in ("list", "watch"):
            yes.append((verb, "pods", where, True))
    yes += [
        ("patch", "collectionloads.vectorload.io", ("-n", "default", "--subresource=status"), True),
        ("create", "events", ("-n", "default"), True),
        ("create", "events.events.k8s.io", ("-n", "default"), True),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", (), True),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", (), True),
    ]
    no = [
        *(
            (verb, "secrets", ("-n", where), False)
            for verb in ("get", "list", "watch")
            for where in (ns, "default")
        ),
        ("list", "secrets", ("--all-namespaces",), False),
        ("create", "pods", ("-n", ns, "--subresource=exec"), False),
        ("get", "pods", ("-n", ns, "--subresource=exec"), False),
        ("create", "pods", ("-n", ns), False),
        ("delete", "pods", ("-n", ns), False),
        ("patch", "pods", ("-n", ns), False),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io", (), False),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", (), False),
        ("patch", "customresourcedefinitions.apiextensions.k8s.io", (), False),
        ("update", "customresourcedefinitions.apiextensions.k8s.io", (), False),
        ("create", "collectionloads.vectorload.io", ("-n", ns), False),
        ("delete", "collectionloads.vectorload.io", ("-n", ns), False),
        ("update", "collectionloads.vectorload.io", ("-n", ns), False),
        ("delete", "events", ("-n", ns), False),
        ("list", "configmaps", ("-n", ns), False),
        ("create", "serviceaccounts/token", ("-n", ns), False),
        ("create", "kopfpeerings.kopf.dev", ("-n", ns), False),
        ("create", "clusterkopfpeerings.kopf.dev", (), False),
        ("bind", "clusterroles.rbac.authorization.k8s.io", (), False),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", (), False),
        ("impersonate", "users", (), False),
        ("create", "namespaces", (), False),
        ("list", "namespaces", (), False),
        ("get", "secrets", ("-n", "kube-system"), False),
        ("*", "*", ("--all-namespaces",), False),
    ]
    return yes + no


def test_rbac_matrix_cluster_wide(release: Release) -> None:
    wrong = [
        f"{'can' if allowed else 'cannot'} {verb} {resource} {' '.join(where)}"
        for verb, resource, where, allowed in rbac_cases_cluster_wide(release.namespace)
        if can_i(release.plane, release.operator_sa, verb, resource, *where) is not allowed
    ]
    assert not wrong, f"operator ServiceAccount should: {wrong}"


def test_rbac_matrix_namespaced(namespaced_release: Release) -> None:
    rel = namespaced_release
    home, watched = rel.namespace, rel.values[-1]
    cases: list[tuple[str, str, tuple[str, ...], bool]] = []
    for ns in (home, watched):
        for verb in ("list", "watch", "patch"):
            cases.append((verb, "collectionloads.vectorload.io", ("-n", ns), True))
        cases += [
            ("patch", "collectionloads.vectorload.io", ("-n", ns, "--subresource=status"), True),
            ("list", "pods", ("-n", ns), True),
            ("watch", "pods", ("-n", ns), True),
            ("create", "events", ("-n", ns), True),
            ("create", "events.events.k8s.io", ("-n", ns), True),
            ("get", "secrets", ("-n", ns), False),
            ("create", "pods", ("-n", ns, "--subresource=exec"), False),
        ]
    cases += [
        ("list", "customresourcedefinitions.apiextensions.k8s.io", (), True),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", (), True),
        ("list", "collectionloads.vectorload.io", ("-n", "default"), False),
        ("list", "collectionloads.vectorload.io", ("--all-namespaces",), False),
        ("list", "pods", ("-n", "default"), False),
        ("create", "events", ("-n", "default"), False),
        ("list", "namespaces", (), False),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io", (), False),
    ]
    wrong = [
        f"{'can' if allowed else 'cannot'} {verb} {resource} {' '.join(where)}"
        for verb, resource, where, allowed in cases
        if can_i(rel.plane, rel.operator_sa, verb, resource, *where) is not allowed
    ]
    assert not wrong, f"operator ServiceAccount should: {wrong}"
    jsonpath = "jsonpath={.spec.template.spec.containers[0].args}"
    args = rel.plane.kubectl(
        "-n", home, "get", "deployment", "vlns-vectorload-operator", "-o", jsonpath
    ).stdout
    assert f"--namespace={watched}" in args and f"--namespace={home}" in args
    assert "--all-namespaces" not in args


PROXY_COLLECTIONLOAD_VERBS = ("get", "list", "watch", "create", "patch", "update", "delete")


def proxy_rbac_cases(
    served: tuple[str, ...], pods_in: str, elsewhere: str
) -> list[tuple[str, str, tuple[str, ...], bool]]:
    """(verb, resource, extra kubectl args, allowed) for the proxy: CollectionLoads in every
    namespace it serves (and their status, read-only), pods read-only where the querynodes run,
    nothing else anywhere."""
    cases: list[tuple[str, str, tuple[str, ...], bool]] = []
    for ns in served:
        cases += [(v, "collectionloads.vectorload.io", ("-n", ns), True) for v in PROXY_COLLECTIONLOAD_VERBS]
        cases += [
            ("get", "collectionloads.vectorload.io", ("-n", ns, "--subresource=status"), True),
            ("patch", "collectionloads.vectorload.io", ("-n", ns, "--subresource=status"), False),
            ("update", "collectionloads.vectorload.io", ("-n", ns, "--subresource=status"), False),
            ("deletecollection", "collectionloads.vectorload.io", ("-n", ns), False),
            ("get", "secrets", ("-n", ns), False),
            ("list", "secrets", ("-n", ns), False),
            ("create", "events", ("-n", ns), False),
            ("list", "configmaps", ("-n", ns), False),
        ]
    cases += [(v, "pods", ("-n", pods_in), True) for v in ("get", "list", "watch")]
    cases += [(v, "pods", ("-n", pods_in), False) for v in ("create", "delete", "patch", "update")]
    cases += [
        ("create", "pods", ("-n", pods_in, "--subresource=exec"), False),
        ("get", "pods", ("-n", pods_in, "--subresource=log"), False),
        ("list", "collectionloads.vectorload.io", ("-n", elsewhere), False),
        ("list", "collectionloads.vectorload.io", ("--all-namespaces",), False),
        ("list", "pods", ("-n", elsewhere), False),
        ("list", "pods", ("--all-namespaces",), False),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", (), False),
        ("list", "namespaces", (), False),
        ("create", "serviceaccounts/token", ("-n", pods_in), False),
        ("impersonate", "users", (), False),
        ("*", "*", ("--all-namespaces",), False),
    ]
    return cases


def test_rbac_matrix_proxy(release: Release) -> None:
    wrong = [
        f"{'can' if allowed else 'cannot'} {verb} {resource} {' '.join(where)}"
        for verb, resource, where, allowed in proxy_rbac_cases(
            (release.namespace,), release.namespace, "default"
        )
        if can_i(release.plane, release.proxy_sa, verb, resource, *where) is not allowed
    ]
    assert not wrong, f"proxy ServiceAccount should: {wrong}"


def test_rbac_matrix_proxy_namespaced(namespaced_release: Release) -> None:
    """The operator's watched namespace is a Milvus database too: CollectionLoads there, pods
    only in the release namespace (where the querynodes are)."""
    rel = namespaced_release
    home, watched = rel.namespace, rel.values[-1]
    cases = proxy_rbac_cases((home, watched), home, "default")
    cases.append(("list", "pods", ("-n", watched), False))
    wrong = [
        f"{'can' if allowed else 'cannot'} {verb} {resource} {' '.join(where)}"
        for verb, resource, where, allowed in cases
        if can_i(rel.plane, rel.proxy_sa, verb, resource, *where) is not allowed
    ]
    assert not wrong, f"proxy ServiceAccount should: {wrong}"
    jsonpath = "jsonpath={.spec.template.spec.containers[0].args}"
    args = rel.plane.kubectl("-n", home, "get", "deployment", "vlns-vectorload-proxy", "-o", jsonpath).stdout
    assert f"--watch-namespaces={watched}" in args and "--namespace=$(POD_NAMESPACE)" in args


def test_upgrade_keeps_the_token(release: Release) -> None:
    before = release.token()
    assert len(before) == 48
    credentials = release.credentials()
    user, _, password = credentials.strip().partition(":")
    assert user == "root" and len(password) == 32 and password.isalnum()
    release.plane.helm(
        "upgrade",
        release.name,
        str(CHART),
        "-n",
        release.namespace,
        *release.values,
        "--set=querynode.replicas=3",
    )
    replicas = release.plane.kubectl(
        "-n",
        release.namespace,
        "get",
        "statefulset",
        "vl-vectorload-querynode",
        "-o",
        "jsonpath={.spec.replicas}",
    ).stdout
    assert replicas == "3", "the upgrade was applied"
    assert release.token() == before
    assert release.credentials() == credentials, "the proxy's root password survives the upgrade"
    history = release.plane.helm("history", release.name, "-n", release.namespace, "-o", "json").stdout
    assert [r["status"] for r in json.loads(history)] == ["superseded", "deployed"]


def test_uninstall_leaves_only_the_crds(release: Release) -> None:
    plane = release.plane
    plane.helm("uninstall", release.name, "-n", release.namespace, "--wait", "--timeout=60s")
    namespaced = plane.kubectl(
        "api-resources", "--verbs=list", "--namespaced=true", "-o", "name"
    ).stdout.split()
    cluster = plane.kubectl(
        "api-resources", "--verbs=list", "--namespaced=false", "-o", "name"
    ).stdout.split()
    selector = f"app.kubernetes.io/instance={release.name}"

    def leftovers() -> list[str]:
        names = [r for r in namespaced if r not in {"events", "events.events.k8s.io"}]
        left = plane.kubectl(
            "get", ",".join(names), "-n", release.namespace, "-l", selector, "-o", "name"
        ).stdout
        left += plane.kubectl("get", ",".join(cluster), "-l", selector, "-o", "name").stdout
        return left.split()

    wait_for(
        "uninstall to leave nothing (pods are garbage-collected)",
        lambda: not leftovers(),
        timeout=60,
        interval=0.5,
    )
    assert plane.kubectl("get", "crd", "collectionloads.vectorload.io", check=False).returncode == 0
    assert release.name not in plane.helm("list", "-n", release.namespace, "-q").stdout.split()


def test_fixture_crds_are_the_monitoring_kinds() -> None:
    docs = load_manifests(Path(FIXTURES / "monitoring.coreos.com.yaml").read_text())
    assert sorted(d["spec"]["names"]["plural"] for d in docs) == sorted(MONITORING_CRDS)
    assert all(d["spec"]["versions"][0]["name"] == "v1" for d in docs)
