"""Every PromQL expression of the chart (alert rules and Grafana dashboard) names only metrics
that the code really exports, with label names (and label values, for `=` matchers) it really
produces. The exported set comes from instantiating the operator's and the querynode's metric
registries, not from a list kept here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vectorload_dev.testing.chart import CI_VALUES, Render, one

# Labels Prometheus attaches at scrape time (prometheus-operator target labels), and `le`.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "service", "endpoint", "le"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
KEYWORDS |= {"offset", "inf", "nan", "atan2"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}


@dataclass
class Exported:
    names: set[str] = field(default_factory=set)
    labels: dict[str, set[str]] = field(default_factory=dict)  # sample name -> label names
    values: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (sample, label) -> values

    def add(self, exposition: str) -> None:
        for family in text_string_to_metric_families(exposition):
            self.names.update(family.name + suffix for suffix in SUFFIXES[family.type])
            for sample in family.samples:
                self.names.add(sample.name)
                self.labels.setdefault(sample.name, set()).update(sample.labels)
                for label, value in sample.labels.items():
                    self.values.setdefault((sample.name, label), set()).add(value)


def operator_exposition() -> str:
    from vectorload_operator.metrics import OperatorMetrics

    metrics = OperatorMetrics()
    # give every labelled family a sample, through the same calls the operator makes
    metrics.observe_collection("ns", "book", "book", "Loading", 40, 1)
    metrics.observe_nodes([("qn-0", True, 2 << 30, 1 << 30), ("qn-1", False, None, None)])
    metrics.task("load", "loaded")
    metrics.load_duration.observe(3.0)
    metrics.reconcile_errors.inc()
    return metrics.render().decode()


def querynode_exposition() -> str:
    from vectorload_querynode.admission import MemoryAccount
    from vectorload_querynode.metrics import Metrics
    from vectorload_querynode.registry import Registry

    account = MemoryAccount(2 << 30, 0.9)
    metrics = Metrics(Registry(account), account)
    metrics.load_duration.observe(0.5)
    metrics.load_failures.labels("CorruptSegment").inc()
    metrics.search_duration.labels("search").observe(0.002)
    return metrics.render().decode()


def proxy_exposition() -> str:
    """The proxy's registry (`vectorload_proxy.metrics.ProxyMetrics`), given a sample per labelled
    family through the labels the proxy uses. Where the proxy is not in the checkout (its branch
    and this one were written side by side), the two families the chart reads, with exactly the
    names and labels that class defines."""
    import importlib.util

    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    if importlib.util.find_spec("vectorload_proxy") is not None:
        from vectorload_proxy.metrics import ProxyMetrics

        metrics = ProxyMetrics()
        metrics.requests.labels("grpc", "Search", "0").inc()
        metrics.latency.labels("grpc", "Search").observe(0.001)
        return generate_latest(metrics.registry).decode()
    registry = CollectorRegistry()
    requests = Counter(
        "vectorload_proxy_requests", "Milvus API calls", ["protocol", "method", "code"], registry=registry
    )
    requests.labels("grpc", "Search", "0").inc()
    duration = Histogram(
        "vectorload_proxy_request_duration_seconds",
        "Milvus API call latency",
        ["protocol", "method"],
        registry=registry,
    )
    duration.labels("grpc", "Search").observe(0.001)
    return generate_latest(registry).decode()


@pytest.fixture(scope="module")
def exported() -> Exported:
    result = Exported()
    result.add(operator_exposition())
    result.add(querynode_exposition())
    result.add(proxy_exposition())
    return result


@pytest.fixture(scope="module")
def expressions(render: Render) -> list[str]:
    values = [p for p in CI_VALUES if p.stem == "monitoring-values"]
    manifests = render(values)
    rule = one(manifests, "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    dashboard = json.loads(one(manifests, "ConfigMap", "-dashboard")["data"]["vectorload.json"])
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


@dataclass(frozen=True)
class Matcher:
    metric: str
    label: str
    op: str
    value: str


def strip_grafana(expr: str) -> str:
    """label_values(metric, label) is Grafana's, not PromQL: keep the metric only."""
    expr = re.sub(r"label_values\(\s*([^,()]+?)\s*,\s*\w+\s*\)", r"\1", expr)
    return expr.replace("$__rate_interval", "5m")


def metric_names(expr: str) -> set[str]:
    """Metric names of a PromQL expression: identifiers that are not functions, keywords,
    label names (inside {} or by/on/... clauses), durations or numbers."""
    text = strip_grafana(expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()", text):
        word = match.group(1)
        if word.lower() not in KEYWORDS:
            names.add(word)
    return names


def matchers(expr: str) -> list[Matcher]:
    found = []
    for selector in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", strip_grafana(expr)):
        for m in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', selector.group(2)):
            found.append(Matcher(selector.group(1), m.group(1), m.group(2), m.group(3)))
    return found


def all_names(exprs: Iterable[str]) -> set[str]:
    return set().union(*(metric_names(e) for e in exprs))


def test_parser_finds_metric_names() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, operation) (rate(a_bucket{x="y",z=~"$v"}[5m]))) '
        "/ on (pod) group_left b_total > 0.85 and c offset 5m unless d"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}
    assert metric_names("label_values(e_seconds, namespace)") == {"e_seconds"}
    assert matchers('a{x="y", z=~"p|q"}') == [Matcher("a", "x", "=", "y"), Matcher("a", "z", "=~", "p|q")]


def test_registries_export_the_documented_families(exported: Exported) -> None:
    """Guards the fixture itself: the registries were really instantiated and read."""
    assert "vectorload_operator_collection_load_progress" in exported.names
    assert "vectorload_querynode_search_duration_seconds_bucket" in exported.names
    assert "vectorload_operator_tasks_total" in exported.names
    assert "vectorload_proxy_requests_total" in exported.names
    assert "vectorload_proxy_request_duration_seconds_bucket" in exported.names


def test_expressions_were_collected(expressions: list[str]) -> None:
    assert len(expressions) >= 15
    assert len(all_names(expressions)) >= 10


def test_promql_names_only_exported_metrics(expressions: list[str], exported: Exported) -> None:
    unknown = {
        name: [e for e in expressions if name in metric_names(e)]
        for name in sorted(all_names(expressions) - exported.names)
    }
    assert not unknown, f"PromQL names metrics the code does not export: {unknown}"


def test_promql_label_matchers_match_exported_labels(expressions: list[str], exported: Exported) -> None:
    problems = []
    for expr in expressions:
        for m in matchers(expr):
            labels = exported.labels.get(m.metric)
            if labels is None or m.label in TARGET_LABELS - {"namespace"}:
                continue
            if m.label == "namespace" and m.metric.startswith("vectorload_querynode_"):
                continue  # the scrape target's namespace
            if m.label not in labels:
                problems.append(f"{m.metric} has no label {m.label!r} (has {sorted(labels)})")
            elif m.op == "=":
                values = exported.values.get((m.metric, m.label), set())
                if m.value not in values:
                    problems.append(f"{m.metric}{{{m.label}={m.value!r}}} matches none of {sorted(values)}")
    assert not problems, problems


def test_operator_state_matchers_use_the_code_states(expressions: list[str]) -> None:
    from vectorload_operator.metrics import LOAD_STATES

    states = {
        m.value
        for e in expressions
        for m in matchers(e)
        if m.metric == "vectorload_operator_collection_load_state" and m.label == "state"
    }
    assert states and states <= set(LOAD_STATES)
