"""The chart's alert rules checked and unit-tested by Prometheus' own `promtool` (Debian's
`prometheus` package; `.ci/run` installs it): every rule of the rendered PrometheusRule parses as
Prometheus parses it, and alerts fire — and stay quiet — on synthetic series as their
descriptions say (`promtool test rules`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vectorload_dev.testing.chart import CI_VALUES, Render, one


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install prometheus (.ci/run installs it)")
    return path


@pytest.fixture(scope="module")
def rules_file(render: Render, tmp_path_factory: pytest.TempPathFactory) -> Path:
    (values,) = [p for p in CI_VALUES if p.stem == "monitoring-values"]
    rule = one(render([values]), "PrometheusRule")
    path = tmp_path_factory.mktemp("promtool") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False)


def test_every_rule_parses(promtool: str, rules_file: Path) -> None:
    proc = run(promtool, "check", "rules", str(rules_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    count = sum(len(g["rules"]) for g in groups)
    assert f"SUCCESS: {count} rules found" in proc.stdout


def unit_test(promtool: str, rules_file: Path, tests: list[dict[str, Any]]) -> None:
    spec = {"rule_files": [rules_file.name], "evaluation_interval": "1m", "tests": tests}
    path = rules_file.with_name(f"test-{len(list(rules_file.parent.iterdir()))}.yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = run(promtool, "test", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_writes_not_sealed_fires_only_for_a_proxy_that_stopped_sealing(
    promtool: str, rules_file: Path
) -> None:
    description = (
        "Acknowledged writes have waited in the proxy's write-ahead log for 15 minutes without a "
        "seal: a collection without an index on every vector field (its rows wait for create_index), "
        "or storage refusing writes (see the proxy's log). The rows are durable, not yet searchable."
    )
    unit_test(
        promtool,
        rules_file,
        [
            {
                "interval": "1m",
                "input_series": [
                    # p-0 holds 5 records and no seal pass completes; p-1 holds some too, but seals
                    {
                        "series": 'vectorload_proxy_unsealed_records{namespace="vl",pod="p-0"}',
                        "values": "0 5x40",
                    },
                    {
                        "series": 'vectorload_proxy_seal_duration_seconds_count{namespace="vl",pod="p-0"}',
                        "values": "3x40",
                    },
                    {
                        "series": 'vectorload_proxy_unsealed_records{namespace="vl",pod="p-1"}',
                        "values": "0 5x40",
                    },
                    {
                        "series": 'vectorload_proxy_seal_duration_seconds_count{namespace="vl",pod="p-1"}',
                        "values": "0+1x40",
                    },
                    # p-2 sealed everything: nothing waits
                    {
                        "series": 'vectorload_proxy_unsealed_records{namespace="vl",pod="p-2"}',
                        "values": "0x40",
                    },
                    {
                        "series": 'vectorload_proxy_seal_duration_seconds_count{namespace="vl",pod="p-2"}',
                        "values": "3x40",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "VectorloadWritesNotSealed", "exp_alerts": []},
                    {
                        "eval_time": "30m",
                        "alertname": "VectorloadWritesNotSealed",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "team": "search",
                                    "namespace": "vl",
                                    "pod": "p-0",
                                },
                                "exp_annotations": {
                                    "summary": "Proxy p-0 holds 5 durable writes it does not seal",
                                    "description": description,
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    )


def test_load_stuck_fires_after_the_configured_minutes_without_progress(
    promtool: str, rules_file: Path
) -> None:
    # ci/monitoring-values sets loadStuckMinutes: 20; progress last moved at t=0
    load = '{namespace="vl",name="book",collection="book"'
    progress = 'vectorload_operator_last_progress_timestamp_seconds{namespace="vl",name="book"}'
    description = (
        "Collection book has been Loading without any progress for 20 minutes. Check the "
        "CollectionLoad's conditions and events, and the querynodes' capacity."
    )
    unit_test(
        promtool,
        rules_file,
        [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'vectorload_operator_collection_load_state{load},state="Loading"}}',
                        "values": "1x40",
                    },
                    {"series": progress, "values": "0x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": "VectorloadLoadStuck", "exp_alerts": []},
                    {
                        "eval_time": "25m",
                        "alertname": "VectorloadLoadStuck",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "team": "search",
                                    "namespace": "vl",
                                    "name": "book",
                                    "collection": "book",
                                },
                                "exp_annotations": {
                                    "summary": "CollectionLoad vl/book is stuck loading",
                                    "description": description,
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    )
