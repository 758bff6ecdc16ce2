"""The pod address rule, once: the operator's pod parsing and `vectorload search` agree."""

from __future__ import annotations

from typing import Any

import pytest

from vectorload.client.kube import pod_url as search_pod_url
from vectorload.wire.address import base_url, pod_port, pod_url
from vectorload_operator.pods import parse_pod


def _pod(ip: str | None, annotation: str | None = None, http_port: int | None = None) -> dict[str, Any]:
    ports = [{"name": "metrics", "containerPort": 9}]
    if http_port is not None:
        ports.append({"name": "http", "containerPort": http_port})
    return {
        "metadata": {
            "name": "qn-0",
            "namespace": "ns",
            "annotations": {} if annotation is None else {"vectorload.io/port": annotation},
        },
        "spec": {"containers": [{"name": "querynode", "ports": ports}]},
        "status": {"podIP": ip, "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


@pytest.mark.parametrize(
    ("pod", "url"),
    [
        (_pod("10.0.0.5", http_port=8080), "http://10.0.0.5:8080"),
        (_pod("10.0.0.5", "19531", 8080), "http://10.0.0.5:19531"),
        (_pod("10.0.0.5", "not-a-port", 8080), "http://10.0.0.5:8080"),
        (_pod("10.0.0.5", "70000", 8080), "http://10.0.0.5:8080"),
        (_pod("10.0.0.5", "0"), "http://10.0.0.5:19530"),
        (_pod("10.0.0.5"), "http://10.0.0.5:19530"),
        (_pod("fd00::5", http_port=8080), "http://[fd00::5]:8080"),
        (_pod("fd00::5", "7100"), "http://[fd00::5]:7100"),
        (_pod(None, http_port=8080), None),
    ],
)
def test_operator_and_search_resolve_the_same_url(pod: dict[str, Any], url: str | None) -> None:
    assert pod_url(pod) == url
    assert search_pod_url(pod) == url
    assert parse_pod(pod).url == url


def test_port_rule_and_brackets() -> None:
    assert pod_port({}) == 19530
    assert base_url("127.0.0.3", 1) == "http://127.0.0.3:1"
    assert base_url("::1", 2) == "http://[::1]:2"
