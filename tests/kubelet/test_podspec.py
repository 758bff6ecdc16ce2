"""Pure pod-spec semantics: $(VAR) expansion, env sources, quantities, volumes and mount rewriting."""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from vectorload_dev.kubelet.podspec import (
    SERVICE_ACCOUNT_PATH,
    SpecError,
    TokenFile,
    container_env,
    container_mounts,
    downward_files,
    entrypoint_for,
    expand,
    field_value,
    image_repository,
    keyed_files,
    parse_quantity,
    plan_container,
    pod_volumes,
    projected_files,
    referenced_objects,
    resource_value,
    rewrite_paths,
)

ALLOCATABLE = {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "100Gi"}


def _pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-0",
            "namespace": "ns1",
            "uid": "u-1",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": 'say "hi"'},
        },
        "spec": {"nodeName": "n1", "serviceAccountName": "robot", **spec},
        "status": {"podIP": "127.0.0.7", "hostIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.7"}]},
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x$(A)y$(B)z", "x1y/twoz"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$1"),
        ("$(A", "$(A"),
        ("a$b", "a$b"),
        ("trailing$", "trailing$"),
        ("$()", "$()"),
        ("", ""),
    ],
)
def test_expand_follows_kubernetes(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "/two"}) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", Fraction(2)),
        ("1Gi", Fraction(2**30)),
        ("1.5Mi", Fraction(3 * 2**19)),
        ("1e3", Fraction(1000)),
        ("1E", Fraction(10**18)),
        ("128974848", Fraction(128974848)),
        ("100k", Fraction(100_000)),
    ],
)
def test_parse_quantity(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(SpecError):
        parse_quantity("12 apples")


def test_field_values() -> None:
    pod = _pod()
    assert field_value(pod, "metadata.name") == "web-0"
    assert field_value(pod, "metadata.namespace") == "ns1"
    assert field_value(pod, "metadata.uid") == "u-1"
    assert field_value(pod, "metadata.labels['app']") == "web"
    assert field_value(pod, "metadata.annotations['note']") == 'say "hi"'
    assert field_value(pod, "metadata.labels['absent']") == ""
    assert field_value(pod, "spec.nodeName") == "n1"
    assert field_value(pod, "spec.serviceAccountName") == "robot"
    assert field_value(pod, "status.podIP") == "127.0.0.7"
    assert field_value(pod, "status.podIPs") == "127.0.0.7"
    assert field_value(pod, "status.hostIP") == "127.0.0.1"
    assert field_value(pod, "metadata.labels", whole_maps=True) == 'app="web"\ntier="front"'
    with pytest.raises(SpecError):
        field_value(pod, "metadata.labels")
    with pytest.raises(SpecError):
        field_value(pod, "spec.hostname")


def test_resource_values_round_up_and_fall_back_to_allocatable() -> None:
    container = {"name": "c", "resources": {"limits": {"memory": "1536Mi", "cpu": "500m"}, "requests": {}}}
    pod = _pod(containers=[container, {"name": "bare"}])
    assert resource_value(pod, "c", "limits.memory", "1Gi", ALLOCATABLE) == "2"
    assert resource_value(pod, "c", "limits.memory", None, ALLOCATABLE) == str(1536 * 2**20)
    assert resource_value(pod, "c", "limits.cpu", None, ALLOCATABLE) == "1"
    assert resource_value(pod, "c", "limits.cpu", "1m", ALLOCATABLE) == "500"
    assert resource_value(pod, "c", "requests.cpu", "1m", ALLOCATABLE) == "500"  # request defaults to limit
    assert resource_value(pod, "bare", "limits.memory", "1Mi", ALLOCATABLE) == str(8 * 1024)
    assert resource_value(pod, "bare", "requests.memory", None, ALLOCATABLE) == "0"
    with pytest.raises(SpecError):
        resource_value(pod, "nope", "limits.cpu", None, ALLOCATABLE)
    with pytest.raises(SpecError):
        resource_value(pod, "c", "limits.gpu", None, ALLOCATABLE)


def test_container_env_sources_and_order() -> None:
    container = {
        "name": "c",
        "envFrom": [
            {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
            {"secretRef": {"name": "missing", "optional": True}},
            {"secretRef": {"name": "sec"}},
        ],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "value": "http://$(POD_IP):$(PORT)/$(CM_color)$(UNKNOWN)"},
            {"name": "PORT", "value": "80"},
            {"name": "HOME_TOO", "value": "$(HOME)"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
            {"name": "SIZE", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "size"}}},
            {
                "name": "OPT",
                "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope", "optional": True}},
            },
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "token", "value": "env wins"},
        ],
    }
    env = container_env(
        _pod(containers=[container]),
        container,
        secrets={"sec": {"pw": b"hunter2", "token": b"from-secret"}},
        config_maps={"cm": {"color": b"blue", "size": b"3"}},
        base={"HOME": "/home/k"},
        allocatable=ALLOCATABLE,
    )
    assert env == {
        "CM_color": "blue",
        "CM_size": "3",
        "pw": "hunter2",
        "token": "env wins",
        "POD_IP": "127.0.0.7",
        "URL": "http://127.0.0.7:$(PORT)/blue$(UNKNOWN)",  # PORT is defined after URL
        "PORT": "80",
        "HOME_TOO": "/home/k",
        "PW": "hunter2",
        "SIZE": "3",
        "MEM": str(8 * 1024),
    }


def test_container_env_missing_objects_fail() -> None:
    missing_secret = {
        "name": "c",
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    }
    with pytest.raises(SpecError, match='secret "s" not found'):
        container_env(_pod(), missing_secret, secrets={"s": None}, config_maps={}, base={}, allocatable={})
    missing_key = {
        "name": "c",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}}}],
    }
    with pytest.raises(SpecError, match="couldn't find key k"):
        container_env(_pod(), missing_key, secrets={}, config_maps={"m": {}}, base={}, allocatable={})


def test_referenced_objects() -> None:
    pod = _pod(
        containers=[
            {
                "name": "c",
                "envFrom": [{"secretRef": {"name": "s1"}}, {"configMapRef": {"name": "m1"}}],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "m2", "key": "k"}}}],
            }
        ],
        volumes=[
            {"name": "a", "secret": {"secretName": "s2"}},
            {
                "name": "b",
                "projected": {"sources": [{"configMap": {"name": "m3"}}, {"secret": {"name": "s3"}}]},
            },
        ],
    )
    assert referenced_objects(pod) == ({"s1", "s2", "s3"}, {"m1", "m2", "m3"})


def test_volumes_and_mount_rewriting(tmp_path: Path) -> None:
    pod = _pod(
        volumes=[
            {"name": "data", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": "/srv/shared"}},
            {"name": "claim", "persistentVolumeClaim": {"claimName": "data-web-0"}},
            {"name": "conf", "configMap": {"name": "cm"}},
        ]
    )
    volumes = pod_volumes(pod, tmp_path / "pod", tmp_path / "state")
    assert volumes["data"].path == tmp_path / "pod" / "volumes" / "data"
    assert volumes["host"].path == Path("/srv/shared")
    assert volumes["claim"].path == tmp_path / "state" / "claims" / "ns1" / "data-web-0"
    container = {
        "name": "c",
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "data", "mountPath": "/data/cache/", "subPath": "c"},
            {"name": "conf", "mountPath": "/etc/app", "subPathExpr": "$(FLAVOUR)"},
        ],
    }
    mounts = container_mounts(container, volumes, {"FLAVOUR": "prod"}, tmp_path / "sa")
    assert [path for path, _ in mounts] == [SERVICE_ACCOUNT_PATH, "/data/cache", "/etc/app", "/data"]
    data = str(volumes["data"].path)
    assert rewrite_paths("--data=/data/x", mounts) == f"--data={data}/x"
    assert rewrite_paths("/data", mounts) == data
    assert rewrite_paths("/data/cache/f", mounts) == f"{data}/c/f"
    assert rewrite_paths("/etc/app/a.yaml", mounts) == f"{volumes['conf'].path}/prod/a.yaml"
    assert rewrite_paths(f"{SERVICE_ACCOUNT_PATH}/token", mounts) == f"{tmp_path / 'sa'}/token"
    # not a mount: other paths that merely contain the mount path
    for untouched in ("/var/data", "/database", "/data2/x", "http://h:80/data", "relative/data", "/data.bak"):
        assert rewrite_paths(untouched, mounts) == untouched
    assert rewrite_paths("a:/data:/etc/app", mounts) == f"a:{data}:{volumes['conf'].path}/prod"


def test_mounts_reject_bad_subpaths_and_unknown_volumes(tmp_path: Path) -> None:
    volumes = pod_volumes(_pod(volumes=[{"name": "v", "emptyDir": {}}]), tmp_path, tmp_path)
    with pytest.raises(SpecError):
        container_mounts(
            {"volumeMounts": [{"name": "v", "mountPath": "/m", "subPath": "../x"}]}, volumes, {}, None
        )
    with pytest.raises(SpecError):
        container_mounts({"volumeMounts": [{"name": "w", "mountPath": "/m"}]}, volumes, {}, None)
    with pytest.raises(SpecError, match="unsupported volume type"):
        pod_volumes(_pod(volumes=[{"name": "x", "nfs": {"server": "s"}}]), tmp_path, tmp_path)


def test_an_own_service_account_mount_is_kept(tmp_path: Path) -> None:
    volumes = pod_volumes(_pod(volumes=[{"name": "tok", "emptyDir": {}}]), tmp_path, tmp_path)
    mounts = container_mounts(
        {"volumeMounts": [{"name": "tok", "mountPath": SERVICE_ACCOUNT_PATH}]}, volumes, {}, tmp_path / "sa"
    )
    assert mounts == [(SERVICE_ACCOUNT_PATH, volumes["tok"].path)]


def test_plan_container(tmp_path: Path) -> None:
    work = tmp_path / "pod" / "volumes" / "work"
    work.mkdir(parents=True)
    pod = _pod(volumes=[{"name": "work", "emptyDir": {}}])
    container = {
        "name": "app",
        "command": ["/usr/local/bin/python", "-c"],
        "args": ["print(1)", "--dir=/work/sub", "--ip=$(POD_IP)", "--escaped=$$(POD_IP)"],
        "workingDir": "/work",
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "STORE", "value": "/work/store"},
        ],
        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
    }
    bindir = str(Path(sys.executable).parent)
    launch = plan_container(
        pod,
        container,
        volumes=pod_volumes(pod, tmp_path / "pod", tmp_path),
        service_account_dir=None,
        base_env={"PATH": bindir + os.pathsep + "/usr/bin", "KEEP": "/work/not-a-spec-value"},
        secrets={},
        config_maps={},
        allocatable=ALLOCATABLE,
        default_cwd=tmp_path,
    )
    assert Path(launch.argv[0]).parent == Path(bindir)  # /usr/local/bin/python does not exist: PATH lookup
    assert Path(launch.argv[0]).name == "python"
    assert launch.argv[1:] == ["-c", "print(1)", f"--dir={work}/sub", "--ip=127.0.0.7", "--escaped=$(POD_IP)"]
    assert launch.env["STORE"] == f"{work}/store"
    assert launch.env["KEEP"] == "/work/not-a-spec-value"
    assert launch.cwd == work


def test_plan_container_needs_a_command_and_an_executable(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {
        "volumes": {},
        "service_account_dir": None,
        "base_env": {"PATH": str(tmp_path)},
        "secrets": {},
        "config_maps": {},
        "allocatable": ALLOCATABLE,
        "default_cwd": tmp_path,
    }
    with pytest.raises(SpecError, match="no command"):
        plan_container(_pod(), {"name": "c", "args": ["x"]}, **kwargs)
    with pytest.raises(SpecError, match="not found on PATH"):
        plan_container(_pod(), {"name": "c", "command": ["no-such-program-xyz"]}, **kwargs)


def test_keyed_files() -> None:
    data = {"a": b"1", "b": b"2"}
    assert keyed_files(data, None, None, what="s", optional=False) == {"a": (b"1", 0o644), "b": (b"2", 0o644)}
    assert keyed_files(
        data, [{"key": "b", "path": "dir/b.txt", "mode": 0o400}], 0o600, what="s", optional=False
    ) == {"dir/b.txt": (b"2", 0o400)}
    assert keyed_files(data, [{"key": "a", "path": "a"}], 0o600, what="s", optional=False) == {
        "a": (b"1", 0o600)
    }
    assert keyed_files(None, None, None, what="s", optional=True) == {}
    with pytest.raises(SpecError):
        keyed_files(None, None, None, what="s", optional=False)
    with pytest.raises(SpecError):
        keyed_files(data, [{"key": "zz", "path": "zz"}], None, what="s", optional=False)
    with pytest.raises(SpecError):
        keyed_files(data, [{"key": "a", "path": "../escape"}], None, what="s", optional=False)


def test_downward_and_projected_files() -> None:
    pod = _pod(containers=[{"name": "c", "resources": {"limits": {"cpu": "1500m"}}}])
    items: list[dict[str, Any]] = [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
        {
            "path": "cpu",
            "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"},
        },
    ]
    assert downward_files(pod, items, None, ALLOCATABLE) == {
        "labels": (b'app="web"\ntier="front"', 0o644),
        "name": (b"web-0", 0o600),
        "cpu": (b"1500", 0o644),
    }
    source = {
        "defaultMode": 0o440,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 7200, "audience": "vault"}},
            {"configMap": {"name": "cm", "items": [{"key": "k", "path": "k.txt"}]}},
            {"secret": {"name": "s"}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        ],
    }
    files, tokens = projected_files(
        pod, source, secrets={"s": {"x": b"y"}}, config_maps={"cm": {"k": b"v"}}, allocatable=ALLOCATABLE
    )
    assert files == {"k.txt": (b"v", 0o440), "x": (b"y", 0o440), "ns": (b"ns1", 0o440)}
    assert tokens == [TokenFile("token", "vault", 7200, 0o440)]


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("vectorload/vectorload", "vectorload/vectorload"),
        ("vectorload/vectorload:0.1.0", "vectorload/vectorload"),
        ("registry:5000/vectorload/vectorload:1@sha256:abc", "registry:5000/vectorload/vectorload"),
        ("registry:5000/app", "registry:5000/app"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert image_repository(image) == repository


def test_images_without_command_use_a_known_entrypoint(tmp_path: Path) -> None:
    entrypoints = {"vectorload/vectorload": ["python", "-m", "vectorload.cli"], "*/tools": ["true"]}
    assert entrypoint_for("ghcr.io/x/tools:2", entrypoints) == ["true"]
    assert entrypoint_for("python:3.11", entrypoints) is None
    container = {"name": "op", "image": "vectorload/vectorload:0.1.0", "args": ["operator", "--x=$(A)"]}
    launch = plan_container(
        _pod(),
        container,
        volumes={},
        service_account_dir=None,
        base_env={"PATH": str(Path(sys.executable).parent), "A": "1"},
        secrets={},
        config_maps={},
        allocatable=ALLOCATABLE,
        default_cwd=tmp_path,
        entrypoints=entrypoints,
    )
    assert Path(launch.argv[0]).name == "python"
    assert launch.argv[1:] == ["-m", "vectorload.cli", "operator", "--x=1"]
