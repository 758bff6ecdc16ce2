"""The chart, rendered with `helm template` over every values file in helm/vectorload/ci/."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from vectorload_dev.testing.chart import (
    CHART,
    CI_VALUES,
    KUBE_VERSION,
    REPO,
    Manifest,
    Render,
    find,
    one,
    pod_specs,
    run_helm,
    template_args,
)

CI = {path.stem.removesuffix("-values"): path for path in CI_VALUES}
COMMON_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)


def ci(name: str) -> list[Path]:
    return [CI[name]]


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-only label selectors (`a=b,c=d`), what the chart passes to the operator."""
    for requirement in selector.split(","):
        key, _, value = requirement.partition("=")
        if labels.get(key) != value:
            return False
    return True


def arg_value(args: list[str], flag: str) -> list[str]:
    return [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]


def container(manifest: Manifest, name: str) -> dict[str, Any]:
    spec = manifest["spec"]["template"]["spec"] if "template" in manifest["spec"] else manifest["spec"]
    (found,) = [c for c in spec["containers"] if c["name"] == name]
    result: dict[str, Any] = found
    return result


def test_ci_values_files_cover_the_required_scenarios() -> None:
    assert {"default", "monitoring", "hostpath", "namespaced", "networkpolicy"} <= set(CI)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_helm_lint_strict(helm_bin: Path, values: Path) -> None:
    proc = run_helm(
        helm_bin, "lint", str(CHART), "--strict", "--values", str(values), "--kube-version", KUBE_VERSION
    )
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_object_is_labelled(render: Render, values: Path) -> None:
    for m in render([values]):
        labels = m["metadata"].get("labels") or {}
        missing = [k for k in COMMON_LABELS if k not in labels]
        assert not missing, f"{m['kind']}/{m['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if m["kind"] != "CustomResourceDefinition":
            assert "app.kubernetes.io/component" in labels, m["metadata"]["name"]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_pod_is_non_root_and_locked_down(render: Render, values: Path) -> None:
    specs = list(pod_specs(render([values])))
    assert {name.split("/")[0] for name, _ in specs} == {"Deployment", "StatefulSet", "Pod"}
    for name, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["runAsUser"] == 10001, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert "hostNetwork" not in spec and "hostPID" not in spec, name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            where = f"{name} container {c['name']}"
            assert sc["runAsNonRoot"] is True, where
            assert sc["runAsUser"] == 10001, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{where} {kind}"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_operator_is_a_single_standalone_instance(render: Render, values: Path) -> None:
    deploy = one(render([values]), "Deployment", "-operator")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    op = container(deploy, "operator")
    assert op["args"][0] == "operator"
    assert "--standalone" in op["args"]
    assert arg_value(op["args"], "--token-file") == ["/var/run/vectorload/token/token"]
    probe = op["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in op["ports"]}
    assert ports[probe["port"]] == int(arg_value(op["args"], "--health-port")[0]) == 8081
    assert ports["metrics"] == int(arg_value(op["args"], "--metrics-port")[0]) == 8080
    assert {"name": "token", "mountPath": "/var/run/vectorload/token", "readOnly": True} in op["volumeMounts"]
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-vectorload-operator"
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deploy["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_querynode_capacity_comes_from_the_memory_limit(render: Render, values: Path) -> None:
    manifests = render([values])
    sts = one(manifests, "StatefulSet", "-querynode")
    qn = container(sts, "querynode")
    env = {e["name"]: e for e in qn["env"]}
    assert env["VECTORLOAD_MEMORY_LIMIT"]["valueFrom"] == {
        "resourceFieldRef": {"containerName": "querynode", "resource": "limits.memory", "divisor": "1"}
    }
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert qn["resources"]["limits"]["memory"]
    args = qn["args"]
    assert args[0] == "querynode"
    assert arg_value(args, "--memory-limit") == ["$(VECTORLOAD_MEMORY_LIMIT)"]
    assert arg_value(args, "--node-name") == ["$(POD_NAME)"]
    assert arg_value(args, "--token-file") == ["/var/run/vectorload/token/token"]
    assert arg_value(args, "--host") == ["0.0.0.0"]
    (http,) = [p for p in qn["ports"] if p["name"] == "http"]
    assert arg_value(args, "--port") == [str(http["containerPort"])]
    assert qn["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert qn["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    pod = sts["spec"]["template"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "querynode"
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    headless = one(manifests, "Service", "-querynode-headless")
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None"
    for svc in (headless, one(manifests, "Service", "-querynode")):
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert svc["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_operator_selector_finds_querynodes_only(render: Render, values: Path) -> None:
    manifests = render([values])
    op = container(one(manifests, "Deployment", "-operator"), "operator")
    (selector,) = arg_value(op["args"], "--querynode-selector")
    assert selector.split(",")[0] == "app.kubernetes.io/component=querynode"
    querynode_labels = one(manifests, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    operator_labels = one(manifests, "Deployment", "-operator")["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(selector, querynode_labels)
    assert not selector_matches(selector, operator_labels)
    assert not selector_matches(selector, {**querynode_labels, "app.kubernetes.io/instance": "other"})


def storage_of(manifests: list[Manifest]) -> tuple[dict[str, Any], dict[str, Any]]:
    sts = one(manifests, "StatefulSet")
    (volume,) = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "storage"]
    (mount,) = [m for m in container(sts, "querynode")["volumeMounts"] if m["name"] == "storage"]
    return volume, mount


def test_storage_defaults_to_a_writable_emptydir(render: Render) -> None:
    volume, mount = storage_of(render(ci("default")))
    assert volume == {"name": "storage", "emptyDir": {"sizeLimit": "1Gi"}}
    assert "readOnly" not in mount
    assert mount["mountPath"] == "/var/lib/vectorload"


def test_storage_hostpath_is_mounted_read_only(render: Render) -> None:
    manifests = render(ci("hostpath"))
    volume, mount = storage_of(manifests)
    assert volume == {"name": "storage", "hostPath": {"path": "/srv/vectorload", "type": "Directory"}}
    assert mount["readOnly"] is True
    args = container(one(manifests, "StatefulSet"), "querynode")["args"]
    assert arg_value(args, "--root") == ["/var/lib/vectorload"]
    assert arg_value(args, "--threshold") == ["0.8"]


def test_storage_existing_claim(render: Render) -> None:
    volume, mount = storage_of(render(ci("existingclaim")))
    assert volume["persistentVolumeClaim"] == {"claimName": "vectorload-collections", "readOnly": True}
    assert mount["readOnly"] is True


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        ({"storage.existingClaim": "a", "storage.hostPath": "/b"}, "at most one of storage.existingClaim"),
        ({"storage.hostPath": "relative/dir"}, "hostPath"),
        ({"querynode.resources.limits.memory": "null"}, "memory"),
        ({"querynode.threshold": "1.5"}, "threshold"),
        ({"operator.watchNamespace": "Not_A_Namespace"}, "watchNamespace"),
        ({"operator.unknownKey": "x"}, "unknownKey"),
        ({"image.pullPolicy": "Sometimes"}, "pullPolicy"),
    ],
)
def test_invalid_values_are_refused(helm_bin: Path, set_values: dict[str, str], message: str) -> None:
    proc = run_helm(helm_bin, *template_args(set_values=set_values), check=False)
    assert proc.returncode != 0, f"{set_values} rendered:\n{proc.stdout[:500]}"
    assert message in proc.stderr


def rules_of(role: Manifest) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# Exactly the calls of kopf 1.45 and vectorload_operator (helm/vectorload/README.md, RBAC table).
WATCH_RULES = {
    ("vectorload.io", "collectionloads", "list"),
    ("vectorload.io", "collectionloads", "watch"),
    ("vectorload.io", "collectionloads", "patch"),
    ("vectorload.io", "collectionloads/status", "patch"),
    ("", "events", "create"),
    ("events.k8s.io", "events", "create"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
}
CRD_RULES = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses(render: Render) -> None:
    manifests = render(ci("default"))
    role = one(manifests, "ClusterRole")
    assert rules_of(role) == WATCH_RULES | CRD_RULES
    assert not find(manifests, "Role", "-operator")
    binding = one(manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-vectorload-operator", "namespace": "vl"}
    ]
    op = container(one(manifests, "Deployment", "-operator"), "operator")
    assert "--all-namespaces" in op["args"]
    assert not arg_value(op["args"], "--namespace")


def test_namespaced_rbac(render: Render) -> None:
    manifests = render(ci("namespaced"))
    assert rules_of(one(manifests, "ClusterRole")) == CRD_RULES
    roles = find(manifests, "Role", "-operator")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["search", "vl"]
    for role in roles:
        assert rules_of(role) == WATCH_RULES
    bindings = find(manifests, "RoleBinding", "-operator")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["search", "vl"]
    for b in bindings:
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": "rel-vectorload-operator", "namespace": "vl"}
        ]
    op = container(one(manifests, "Deployment", "-operator"), "operator")
    assert "--all-namespaces" not in op["args"]
    assert arg_value(op["args"], "--namespace") == ["search", "vl"]


def test_namespaced_in_the_release_namespace_needs_one_role(render: Render) -> None:
    manifests = render(set_values={"operator.watchNamespace": "vl"})
    assert [r["metadata"]["namespace"] for r in find(manifests, "Role", "-operator")] == ["vl"]
    op = container(one(manifests, "Deployment", "-operator"), "operator")
    assert arg_value(op["args"], "--namespace") == ["vl"]


def test_rbac_never_grants_secrets_wildcards_or_exec(render: Render) -> None:
    for values in CI_VALUES:
        for m in render([values]):
            if m["kind"] not in {"Role", "ClusterRole"}:
                continue
            for group, resource, verb in rules_of(m):
                assert "*" not in (group, resource, verb), m["metadata"]["name"]
                assert resource not in {"secrets", "pods/exec", "pods/attach", "serviceaccounts/token"}
                if (m["metadata"]["name"], group, resource, verb) == (
                    "rel-vectorload-proxy",
                    "vectorload.io",
                    "collectionloads",
                    "delete",
                ):
                    continue  # ReleaseCollection deletes the collection's CollectionLoad
                assert verb not in {"delete", "deletecollection", "escalate", "bind", "impersonate"}


def test_token_secret_is_generated_and_mounted(render: Render) -> None:
    manifests = render(ci("default"))
    secret = one(manifests, "Secret", "vectorload-token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 48 and token.isalnum()
    assert "helm.sh/resource-policy" not in (secret["metadata"].get("annotations") or {})
    for kind, suffix in (("Deployment", "-operator"), ("StatefulSet", "-querynode")):
        volumes = one(manifests, kind, suffix)["spec"]["template"]["spec"]["volumes"]
        (token_volume,) = [v for v in volumes if v["name"] == "token"]
        assert token_volume["secret"]["secretName"] == secret["metadata"]["name"]
        assert token_volume["secret"]["defaultMode"] == 0o440  # YAML 1.1 octal: owner and fsGroup read


def test_data_token_secret_closes_the_data_api(render: Render) -> None:
    manifests = render(ci("default"))
    secret = one(manifests, "Secret", "-data-token")
    data_token = base64.b64decode(secret["data"]["token"]).decode()
    control = base64.b64decode(one(manifests, "Secret", "vectorload-token")["data"]["token"]).decode()
    assert len(data_token) == 48 and data_token.isalnum() and data_token != control
    qn = one(manifests, "StatefulSet")
    (volume,) = [v for v in qn["spec"]["template"]["spec"]["volumes"] if v["name"] == "data-token"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    args = container(qn, "querynode")["args"]
    assert "--data-token-file=/var/run/vectorload/data-token/token" in args and "--open-data-api" not in args
    env = {e["name"]: e for e in container(one(manifests, "Deployment", "-operator"), "operator")["env"]}
    assert env["VECTORLOAD_DATA_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "token",
    }
    # only an explicit value opens it
    open_qn = one(render(set_values={"querynode.openDataApi": "true"}), "StatefulSet")
    open_args = container(open_qn, "querynode")["args"]
    assert "--open-data-api" in open_args and not any(a.startswith("--data-token-file") for a in open_args)


def test_existing_token_secret_is_used_not_generated(render: Render) -> None:
    manifests = render(
        set_values={
            "token.existingSecret": "my-token",
            "dataToken.existingSecret": "my-data",
            "proxy.credentials.existingSecret": "my-accounts",
        }
    )
    assert not find(manifests, "Secret")
    for kind, suffix in (("Deployment", "-operator"), ("StatefulSet", "-querynode")):
        volumes = one(manifests, kind, suffix)["spec"]["template"]["spec"]["volumes"]
        assert "my-token" in {v["secret"]["secretName"] for v in volumes if "secret" in v}
    qn_volumes = one(manifests, "StatefulSet")["spec"]["template"]["spec"]["volumes"]
    assert "my-data" in {v["secret"]["secretName"] for v in qn_volumes if "secret" in v}


def test_default_renders_no_optional_objects(render: Render) -> None:
    kinds = {m["kind"] for m in render(ci("default"))}
    assert kinds.isdisjoint({"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy"})


def test_monitoring_objects(render: Render) -> None:
    manifests = render(ci("monitoring"))
    monitors = find(manifests, "ServiceMonitor")
    assert sorted(m["metadata"]["name"] for m in monitors) == [
        "rel-vectorload-operator",
        "rel-vectorload-proxy",
        "rel-vectorload-querynode",
    ]
    services = find(manifests, "Service")
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        selected = [
            s
            for s in services
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, "each ServiceMonitor scrapes exactly one Service (no double scrape)"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        # the operator's series carry the CollectionLoad's namespace label; it must survive the scrape
        assert endpoint.get("honorLabels", False) is (monitor["metadata"]["name"].endswith("-operator"))
    assert one(manifests, "Service", "-querynode-headless") in [
        s for s in services if s["metadata"]["labels"].get("vectorload.io/scrape") == "true"
    ]
    rule = one(manifests, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {
        "VectorloadLoadStuck",
        "VectorloadCollectionLoadFailed",
        "VectorloadSegmentLoadFailures",
        "VectorloadQuerynodeMemoryHigh",
        "VectorloadDegradedReplicas",
        "VectorloadWritesNotSealed",
    } <= set(alerts)
    assert "> 1200" in alerts["VectorloadLoadStuck"]["expr"]  # loadStuckMinutes: 20 in ci/monitoring
    assert all(r["labels"]["team"] == "search" for r in alerts.values())
    assert "{{ $labels.namespace }}" in alerts["VectorloadLoadStuck"]["annotations"]["summary"]
    assert "> 0.85" in alerts["VectorloadQuerynodeMemoryHigh"]["expr"]


def test_podmonitors(render: Render) -> None:
    manifests = render(ci("podmonitor"))
    assert not find(manifests, "ServiceMonitor")
    monitors = find(manifests, "PodMonitor")
    assert len(monitors) == 3  # operator, querynodes, proxy
    workloads = {
        m["metadata"]["name"]: m["spec"]["template"]
        for m in manifests
        if m["kind"] in {"Deployment", "StatefulSet"}
    }
    for monitor in monitors:
        selected = [
            t
            for t in workloads.values()
            if monitor["spec"]["selector"]["matchLabels"].items() <= t["metadata"]["labels"].items()
        ]
        assert len(selected) == 1
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] in {p["name"] for c in selected[0]["spec"]["containers"] for p in c["ports"]}
        assert endpoint["interval"] == "15s"


def test_dashboard_configmap(render: Render) -> None:
    cm = one(render(ci("monitoring")), "ConfigMap", "-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["vectorload.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "vectorload.json").read_text())
    exprs = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}
    for title in ("Segment load latency", "Collection load duration", "Search latency"):
        assert any("histogram_quantile(0.5," in e for e in exprs[title]), title
        assert any("histogram_quantile(0.95," in e for e in exprs[title]), title
    assert "Load progress per collection" in exprs
    assert "Load state" in exprs
    assert "Loaded bytes per querynode" in exprs
    assert "Load failures" in exprs
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_networkpolicy(render: Render) -> None:
    manifests = render(ci("networkpolicy"))
    querynode_np = one(manifests, "NetworkPolicy", "-querynode")
    operator_np = one(manifests, "NetworkPolicy", "-operator")
    qn_labels = one(manifests, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    op_labels = one(manifests, "Deployment", "-operator")["spec"]["template"]["metadata"]["labels"]
    test_labels = one(manifests, "Pod")["metadata"]["labels"]
    assert querynode_np["spec"]["podSelector"]["matchLabels"].items() <= qn_labels.items()
    assert operator_np["spec"]["podSelector"]["matchLabels"].items() <= op_labels.items()
    rules = querynode_np["spec"]["ingress"]
    assert all(r["ports"] == [{"port": "http", "protocol": "TCP"}] for r in rules)
    internal = [p["podSelector"]["matchLabels"] for p in rules[0]["from"]]
    assert any(sel.items() <= op_labels.items() for sel in internal), "operator reaches the control API"
    assert any(sel.items() <= test_labels.items() for sel in internal), "the helm test pod reaches /readyz"
    assert not any(sel.items() <= qn_labels.items() for sel in internal)
    assert rules[1]["from"] == [{"podSelector": {"matchLabels": {"vectorload.io/client": "true"}}}]
    assert rules[2]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert operator_np["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_networkpolicy_without_peers_closes_the_operator(render: Render) -> None:
    manifests = render(set_values={"networkPolicy.enabled": "true"})
    assert one(manifests, "NetworkPolicy", "-operator")["spec"]["ingress"] == []
    assert len(one(manifests, "NetworkPolicy", "-querynode")["spec"]["ingress"]) == 1


def test_helm_test_hook_checks_every_querynode(render: Render) -> None:
    manifests = render(ci("hostpath"))
    pod = one(manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == container(one(manifests, "StatefulSet"), "querynode")["image"]
    script = c["args"][0]
    compile(script, "readyz-hook", "exec")
    headless = one(manifests, "Service", "-querynode-headless")["metadata"]["name"]
    assert f"rel-vectorload-querynode-%d.{headless}.vl.svc" in script
    assert "range(3)" in script  # querynode.replicas: 3 in ci/hostpath
    assert "/readyz" in script


def test_crd_copy_is_identical_to_the_source_of_truth() -> None:
    source = {p.name: p.read_bytes() for p in sorted((REPO / "crds").glob("*.yaml"))}
    copy = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*"))}
    assert source, "no CRD in crds/"
    assert copy.keys() == source.keys(), "helm/vectorload/crds/ must hold exactly the files of crds/"
    for name, data in source.items():
        assert copy[name] == data, f"helm/vectorload/crds/{name} differs from crds/{name}: copy it over"


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of container args."""
    for name, value in env.items():
        arg = arg.replace(f"$({name})", value)
    return arg


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_rendered_args_parse_with_the_real_command_lines(
    render: Render, values: Path, tmp_path: Path
) -> None:
    from vectorload_operator.cli import build_parser, config_from_args
    from vectorload_querynode.memory import parse_bytes
    from vectorload_querynode.settings import parse_settings

    manifests = render([values])
    op = container(one(manifests, "Deployment", "-operator"), "operator")
    config = config_from_args(build_parser().parse_args(op["args"][1:]))
    watch = arg_value(op["args"], "--namespace")
    assert config.all_namespaces is (not watch)
    assert list(config.namespaces) == watch
    assert (config.metrics_port, config.health_port) == (8080, 8081)
    qn_pod = one(manifests, "StatefulSet")["spec"]["template"]
    assert config.querynode_selector.matches(qn_pod["metadata"]["labels"])
    op_pod = one(manifests, "Deployment", "-operator")["spec"]["template"]
    assert not config.querynode_selector.matches(op_pod["metadata"]["labels"])

    qn = container(one(manifests, "StatefulSet"), "querynode")
    token = tmp_path / "token"
    token.write_text("t" * 48)
    limit = parse_bytes(qn["resources"]["limits"]["memory"])  # the downward API's value, divisor 1
    env = {"POD_NAME": "rel-vectorload-querynode-0", "VECTORLOAD_MEMORY_LIMIT": str(limit)}
    args = [expand(a, env) for a in qn["args"][1:]]
    args = [f"--token-file={token}" if a.startswith("--token-file=") else a for a in args]
    data_token = tmp_path / "data-token"
    data_token.write_text("d" * 48)
    args = [f"--data-token-file={data_token}" if a.startswith("--data-token-file=") else a for a in args]
    settings = parse_settings(args)
    assert settings.data_token == "d" * 48 and not settings.open_data_api
    assert settings.limits.max_request_bytes == 64 * 2**20 and settings.limits.max_search_results == 262144
    assert settings.memory_limit == limit
    assert settings.node_name == "rel-vectorload-querynode-0"
    assert settings.port == 19530
    assert settings.token == "t" * 48
    assert settings.host == "0.0.0.0"
