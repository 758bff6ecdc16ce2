"""The proxy (Milvus front door) in the chart, rendered with `helm template`: its Deployment,
PodDisruptionBudget, Service, credentials Secret, least-privilege Roles, monitoring and toggle.

The proxy's command line is fixed (issue 10): `vectorload proxy --port --http-port --bind-address
--namespace --watch-namespaces --storage-root --querynode-selector --credentials-file | --no-auth
--data-token-file`, then either `--read-only` (the default: storage mounted read-only, no write
path) or, with `proxy.writes.enabled` (issue 12), the write path's `--seal-interval` and
`--compaction-interval --compaction-small-rows --gc-grace | --no-compaction` with storage mounted
read-write; these tests check that the chart passes exactly those flags, wired to the volumes,
ports and Secrets it renders."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from vectorload_dev.testing.chart import (
    CHART,
    CI_VALUES,
    Manifest,
    Render,
    find,
    one,
    run_helm,
    template_args,
)

CI = {path.stem.removesuffix("-values"): path for path in CI_VALUES}
PROXY_FLAGS = {
    "--port",
    "--http-port",
    "--bind-address",
    "--namespace",
    "--watch-namespaces",
    "--storage-root",
    "--read-only",
    "--querynode-selector",
    "--credentials-file",
    "--no-auth",
    "--data-token-file",
    "--seal-interval",
    "--compaction-interval",
    "--compaction-small-rows",
    "--gc-grace",
    "--no-compaction",
}
WRITE_FLAGS = {"--seal-interval", "--compaction-interval", "--compaction-small-rows", "--gc-grace"}
PROXY_RULES = {
    ("vectorload.io", "collectionloads", verb)
    for verb in ("get", "list", "watch", "create", "patch", "update", "delete")
} | {("vectorload.io", "collectionloads/status", "get")}
POD_RULES = {("", "pods", verb) for verb in ("get", "list", "watch")}
WITH_PROXY = [p for p in CI_VALUES if p.stem != "noproxy-values"]


def rules_of(role: Manifest) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def proxy_container(manifests: list[Manifest]) -> dict[str, Any]:
    deploy = one(manifests, "Deployment", "-proxy")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def flags(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args[1:]:
        name, _, value = arg.partition("=")
        assert name not in out, f"{name} given twice"
        out[name] = value
    return out


def mount_of(container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volumeMount holding `path` (a file or directory inside the container)."""
    found = [
        m
        for m in container["volumeMounts"]
        if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")
    ]
    assert len(found) == 1, f"{path}: mounts {found}"
    mount: dict[str, Any] = found[0]
    return mount


def volume(manifests: list[Manifest], name: str) -> dict[str, Any]:
    volumes = one(manifests, "Deployment", "-proxy")["spec"]["template"]["spec"]["volumes"]
    (found,) = [v for v in volumes if v["name"] == name]
    result: dict[str, Any] = found
    return result


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_ci_values_cover_the_proxy_scenarios() -> None:
    assert {"proxy", "noproxy"} <= set(CI)


@pytest.mark.parametrize("values", WITH_PROXY, ids=lambda p: p.stem)
def test_proxy_command_line_and_its_files(render: Render, values: Path) -> None:
    manifests = render([values])
    c = proxy_container(manifests)
    assert c["args"][0] == "proxy"
    args = flags(c["args"])
    assert set(args) <= PROXY_FLAGS, f"flags the proxy does not have: {set(args) - PROXY_FLAGS}"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert (
        ports
        == {"grpc": int(args["--port"]), "http": int(args["--http-port"])}
        == {"grpc": 19530, "http": 9091}
    )
    assert args["--bind-address"] == "0.0.0.0"
    # Milvus database `default` is the proxy's own namespace, from the downward API
    env = {e["name"]: e for e in c["env"]}
    assert args["--namespace"] == "$(POD_NAMESPACE)"
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # the catalog: the querynodes' storage, read-only unless the write path is on
    writes = values.stem == "writes-values"
    assert ("--read-only" in args) is not writes
    assert set(args) >= WRITE_FLAGS if writes else not WRITE_FLAGS & set(args)
    storage = mount_of(c, args["--storage-root"])
    assert storage["name"] == "storage" and storage["readOnly"] is not writes
    qn = one(manifests, "StatefulSet", "-querynode")
    qn_volumes = {v["name"]: v for v in qn["spec"]["template"]["spec"]["volumes"]}
    proxy_storage = volume(manifests, "storage")
    if "persistentVolumeClaim" in proxy_storage:
        assert proxy_storage["persistentVolumeClaim"]["readOnly"] is not writes
        assert (
            proxy_storage["persistentVolumeClaim"]["claimName"]
            == (qn_volumes["storage"]["persistentVolumeClaim"]["claimName"])
        )
    else:
        assert proxy_storage == qn_volumes["storage"]
    # credentials: the Secret's `credentials` key, mounted as the --credentials-file
    credentials = mount_of(c, args["--credentials-file"])
    assert credentials["readOnly"] is True
    source = volume(manifests, credentials["name"])["secret"]
    assert source["items"] == [{"key": "credentials", "path": Path(args["--credentials-file"]).name}]
    assert source["defaultMode"] == 0o440
    expected_secret = (
        "milvus-accounts" if values.stem == "proxy-values" else "rel-vectorload-proxy-credentials"
    )
    assert source["secretName"] == expected_secret
    # the querynodes' data token, the chart's <fullname>-data-token
    data = mount_of(c, args["--data-token-file"])
    data_source = volume(manifests, data["name"])["secret"]
    assert data_source["secretName"] == "rel-vectorload-data-token"
    assert data_source["items"] == [{"key": "token", "path": Path(args["--data-token-file"]).name}]
    # the same querynodes as the operator's
    op = one(manifests, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]
    (op_selector,) = [a.split("=", 1)[1] for a in op["args"] if a.startswith("--querynode-selector=")]
    assert args["--querynode-selector"] == op_selector
    # probes on the HTTP port
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])


def test_writes_mount_storage_read_write_for_the_proxy_only(render: Render) -> None:
    manifests = render([CI["writes"]])
    args = flags(proxy_container(manifests)["args"])
    assert "--read-only" not in args and "--no-compaction" not in args
    assert (
        args["--seal-interval"],
        args["--compaction-interval"],
        args["--compaction-small-rows"],
        args["--gc-grace"],
    ) == ("0.5", "10", "8192", "120")
    proxy_claim = volume(manifests, "storage")["persistentVolumeClaim"]
    assert proxy_claim == {"claimName": "vectorload-collections-rwx", "readOnly": False}
    assert mount_of(proxy_container(manifests), args["--storage-root"])["readOnly"] is False
    # the querynodes keep reading storage through a read-only mount of the same claim
    qn = one(manifests, "StatefulSet", "-querynode")["spec"]["template"]["spec"]
    (qn_claim,) = [v["persistentVolumeClaim"] for v in qn["volumes"] if v["name"] == "storage"]
    assert qn_claim == {"claimName": "vectorload-collections-rwx", "readOnly": True}
    (qn_mount,) = [m for m in qn["containers"][0]["volumeMounts"] if m["name"] == "storage"]
    assert qn_mount["readOnly"] is True
    off = flags(proxy_container(render([CI["writes"]], {"proxy.writes.compaction.enabled": "false"}))["args"])
    assert "--no-compaction" in off and not {"--compaction-interval", "--gc-grace"} & set(off)
    host = render(set_values={"storage.hostPath": "/srv/collections", "proxy.writes.enabled": "true"})
    assert volume(host, "storage")["hostPath"]["path"] == "/srv/collections"
    assert mount_of(proxy_container(host), "/var/lib/vectorload")["readOnly"] is False


def test_writes_without_shared_storage_are_refused(helm_bin: Path) -> None:
    proc = run_helm(helm_bin, *template_args(set_values={"proxy.writes.enabled": "true"}), check=False)
    assert proc.returncode != 0
    assert "proxy.writes.enabled needs storage every proxy and querynode pod shares" in proc.stderr
    for bad, key in (
        ({"proxy.writes.sealInterval": "0"}, "sealInterval"),
        ({"proxy.writes.nope": "1"}, "nope"),
    ):
        proc = run_helm(helm_bin, *template_args(set_values={"storage.hostPath": "/srv", **bad}), check=False)
        assert proc.returncode != 0 and key in proc.stderr, proc.stderr


def test_proxy_deployment_pdb_and_service(render: Render) -> None:
    manifests = render()
    deploy = one(manifests, "Deployment", "-proxy")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deploy["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "proxy"
    assert labels_match(deploy["spec"]["selector"]["matchLabels"], labels)
    assert pod["spec"]["serviceAccountName"] == "rel-vectorload-proxy"
    others = [
        m["spec"]["template"]["metadata"]["labels"]
        for m in manifests
        if m["kind"] in {"Deployment", "StatefulSet"} and m is not deploy
    ]
    pdb = one(manifests, "PodDisruptionBudget", "-proxy")
    assert pdb["spec"]["minAvailable"] == 1
    svc = one(manifests, "Service", "-proxy")
    for selector in (pdb["spec"]["selector"]["matchLabels"], svc["spec"]["selector"]):
        assert labels_match(selector, labels)
        assert not any(labels_match(selector, other) for other in others), "selects only proxy pods"
    assert svc["spec"]["ports"] == [
        {"name": "grpc", "port": 19530, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
        {"name": "http", "port": 9091, "targetPort": "http", "protocol": "TCP"},
    ]
    anti = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert labels_match(anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"], labels)


def test_proxy_replicas_and_pdb_follow_values(render: Render) -> None:
    manifests = render([CI["proxy"]])
    assert one(manifests, "Deployment", "-proxy")["spec"]["replicas"] == 3
    assert one(manifests, "PodDisruptionBudget", "-proxy")["spec"]["minAvailable"] == 2
    single = render(set_values={"proxy.replicas": "1"})
    assert not find(single, "PodDisruptionBudget"), "a PDB over one replica would block every drain"


def test_credentials_secret_is_generated_with_a_root_password(render: Render) -> None:
    manifests = render()
    secret = one(manifests, "Secret", "-proxy-credentials")
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "proxy"
    lines = base64.b64decode(secret["data"]["credentials"]).decode().splitlines()
    assert len(lines) == 1
    user, _, password = lines[0].partition(":")
    assert user == "root" and len(password) == 32 and password.isalnum()
    again = base64.b64decode(
        one(render(release="other"), "Secret", "-proxy-credentials")["data"]["credentials"]
    )
    assert again.decode().splitlines() != lines, "a fresh install draws a fresh password"


def test_existing_credentials_secret_is_used_not_generated(render: Render) -> None:
    manifests = render([CI["proxy"]])
    assert not find(manifests, "Secret", "-proxy-credentials")
    assert volume(manifests, "credentials")["secret"]["secretName"] == "milvus-accounts"


def test_no_auth_drops_the_credentials(render: Render) -> None:
    manifests = render(set_values={"proxy.noAuth": "true"})
    args = flags(proxy_container(manifests)["args"])
    assert "--no-auth" in args and "--credentials-file" not in args
    names = {v["name"] for v in one(manifests, "Deployment", "-proxy")["spec"]["template"]["spec"]["volumes"]}
    assert "credentials" not in names
    assert "--no-auth" not in flags(proxy_container(render())["args"])


@pytest.mark.parametrize(
    ("values", "set_values", "served"),
    [
        ([], {}, ["vl"]),
        (["namespaced"], {}, ["vl", "search"]),
        (["proxy"], {}, ["vl", "analytics", "search"]),
        (["namespaced", "proxy"], {}, ["vl", "search", "analytics"]),
        ([], {"operator.watchNamespace": "vl"}, ["vl"]),
    ],
    ids=["default", "operator-namespaced", "proxy-databases", "both", "operator-in-release-ns"],
)
def test_proxy_rbac_is_namespaced_least_privilege(
    render: Render, values: list[str], set_values: dict[str, str], served: list[str]
) -> None:
    manifests = render([CI[v] for v in values], set_values)
    roles = find(manifests, "Role", "-proxy")
    assert [r["metadata"]["namespace"] for r in roles] == served
    for role in roles:
        expected = PROXY_RULES | POD_RULES if role["metadata"]["namespace"] == "vl" else PROXY_RULES
        assert rules_of(role) == expected, role["metadata"]["namespace"]
    bindings = find(manifests, "RoleBinding", "-proxy")
    assert [b["metadata"]["namespace"] for b in bindings] == served
    for b in bindings:
        assert b["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "rel-vectorload-proxy",
        }
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": "rel-vectorload-proxy", "namespace": "vl"}
        ]
    assert not [m for m in manifests if m["kind"].startswith("Cluster") and "proxy" in m["metadata"]["name"]]
    args = flags(proxy_container(manifests)["args"])
    # its own namespace is `default` (--namespace); --watch-namespaces names the others, if any
    assert args.get("--watch-namespaces", "").split(",") == (served[1:] or [""])
    sa = one(manifests, "ServiceAccount", "-proxy")
    assert sa["automountServiceAccountToken"] is True


def test_proxy_rbac_can_be_left_to_the_user(render: Render) -> None:
    manifests = render(set_values={"proxy.rbacCreate": "false"})
    assert not find(manifests, "Role", "-proxy") and not find(manifests, "RoleBinding", "-proxy")
    assert one(manifests, "ServiceAccount", "-proxy")


def test_proxy_disabled_renders_nothing_of_it(render: Render) -> None:
    manifests = render([CI["noproxy"]])
    proxy_objects = [
        f"{m['kind']}/{m['metadata']['name']}"
        for m in manifests
        if "proxy" in m["metadata"]["name"]
        or m["metadata"]["labels"].get("app.kubernetes.io/component") == "proxy"
    ]
    assert not proxy_objects
    monitored = render([CI["noproxy"]], {"monitoring.podMonitor.enabled": "true"})
    assert len(find(monitored, "PodMonitor")) == 2
    assert one(manifests, "Deployment", "-operator")


def test_proxy_is_scraped_once_per_monitor_kind(render: Render) -> None:
    manifests = render([CI["monitoring"]])
    monitor = one(manifests, "ServiceMonitor", "-proxy")
    services = [
        s
        for s in find(manifests, "Service")
        if labels_match(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert [s["metadata"]["name"] for s in services] == ["rel-vectorload-proxy"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    pod_monitor = one(render([CI["podmonitor"]]), "PodMonitor", "-proxy")
    (pod_endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert pod_endpoint["port"] == "http"


def test_networkpolicy_lets_the_proxy_reach_the_querynodes(render: Render) -> None:
    manifests = render([CI["networkpolicy"]])
    proxy_labels = one(manifests, "Deployment", "-proxy")["spec"]["template"]["metadata"]["labels"]
    rules = one(manifests, "NetworkPolicy", "-querynode")["spec"]["ingress"]
    internal = [p["podSelector"]["matchLabels"] for p in rules[0]["from"]]
    assert any(labels_match(sel, proxy_labels) for sel in internal)
    without = one(render([CI["networkpolicy"], CI["noproxy"]]), "NetworkPolicy", "-querynode")["spec"][
        "ingress"
    ]
    assert len(without[0]["from"]) == len(internal) - 1


def test_dashboard_has_the_proxy_panels(render: Render) -> None:
    cm = one(render([CI["monitoring"]]), "ConfigMap", "-dashboard")
    dashboard = json.loads(cm["data"]["vectorload.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "vectorload.json").read_text())
    exprs = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}
    (requests,) = exprs["Proxy requests by method and code"]
    assert "sum by (method, code)" in requests and "vectorload_proxy_requests_total" in requests
    latency = exprs["Proxy latency"]
    assert any(e.startswith("histogram_quantile(0.5, sum by (le, method)") for e in latency)
    assert any(e.startswith("histogram_quantile(0.99, sum by (le, method)") for e in latency)
    assert all("vectorload_proxy_request_duration_seconds_bucket" in e for e in latency)


@pytest.mark.parametrize("values", WITH_PROXY, ids=lambda p: p.stem)
def test_rendered_proxy_args_parse_with_the_real_command_line(
    render: Render, values: Path, tmp_path: Path
) -> None:
    """The chart's arguments through `vectorload proxy`'s own parser (once the proxy is in the
    checkout: its branch and this one were written side by side)."""
    cli = pytest.importorskip("vectorload_proxy.cli", reason="the proxy is not in this checkout yet")
    manifests = render([values])
    c = proxy_container(manifests)
    env = {"POD_NAMESPACE": "vl"}
    args = [a.replace("$(POD_NAMESPACE)", env["POD_NAMESPACE"]) for a in c["args"][1:]]
    config = cli.config_from_args(cli.build_parser().parse_args(args))
    assert (config.port, config.http_port) == (19530, 9091)
    assert config.namespace == "vl"
    assert not config.no_auth and str(config.credentials_file).endswith("/credentials")
    assert str(config.data_token_file) == "/var/run/vectorload/data-token/token"
    served = [r["metadata"]["namespace"] for r in find(manifests, "Role", "-proxy")]
    assert [config.namespace, *config.watch_namespaces] == served
