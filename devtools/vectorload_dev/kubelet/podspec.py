"""What a pod spec means on this machine: pure functions, no I/O.

* `$(VAR)` expansion exactly as Kubernetes does it (`$$` escapes, unknown references stay as is);
* environment from `value`, `valueFrom` (fieldRef, resourceFieldRef, secretKeyRef,
  configMapKeyRef) and `envFrom`;
* where each volume lives locally, and the rewriting of every `volumeMount.mountPath` occurring in
  command, args and env values to that local directory (processes share one filesystem);
* the files a secret / configMap / downwardAPI / projected volume consists of.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

Json = dict[str, Any]
# a secret's or configMap's keys -> bytes; None when the object does not exist
Objects = Mapping[str, Mapping[str, bytes] | None]

SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_FILE_MODE = 0o644


class SpecError(ValueError):
    """The pod cannot run as specified (Kubernetes reports CreateContainerConfigError)."""


# ----- quantities --------------------------------------------------------------------------------
_SUFFIXES: dict[str, Fraction] = {
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?")


def parse_quantity(text: str | int | float) -> Fraction:
    """A Kubernetes resource quantity ("500m", "1Gi", "1e3", 2) as an exact fraction."""
    match = _QUANTITY.fullmatch(str(text).strip())
    if match is None:
        raise SpecError(f"invalid quantity {text!r}")
    number, exponent, suffix = match.groups()
    value = Fraction(number)
    if exponent is not None:
        return value * Fraction(10) ** int(exponent)
    return value * _SUFFIXES[suffix or ""]


# ----- $(VAR) expansion --------------------------------------------------------------------------
def expand(text: str, lookup: Mapping[str, str]) -> str:
    """Kubernetes' `expansion.Expand`: `$(NAME)` -> value if defined (else left as is), `$$` -> `$`."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = rest[1:close]
                    out.append(lookup.get(name, f"$({name})"))
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


# ----- downward API ------------------------------------------------------------------------------
_MAP_FIELD = re.compile(r"metadata\.(labels|annotations)\[['\"]?(.+?)['\"]?\]")


def _format_map(values: Mapping[str, str]) -> str:
    return "\n".join(f"{key}={json.dumps(values[key])}" for key in sorted(values))


def field_value(pod: Json, path: str, *, whole_maps: bool = False) -> str:
    """The value of a downward-API `fieldRef.fieldPath` for this pod."""
    meta: Json = pod.get("metadata", {})
    spec: Json = pod.get("spec", {})
    status: Json = pod.get("status", {})
    match = _MAP_FIELD.fullmatch(path)
    if match is not None:
        values: Mapping[str, str] = meta.get(match.group(1)) or {}
        return str(values.get(match.group(2), ""))
    if whole_maps and path in ("metadata.labels", "metadata.annotations"):
        return _format_map(meta.get(path.split(".", 1)[1]) or {})
    simple: dict[str, Callable[[], Any]] = {
        "metadata.name": lambda: meta.get("name", ""),
        "metadata.namespace": lambda: meta.get("namespace", "default"),
        "metadata.uid": lambda: meta.get("uid", ""),
        "spec.nodeName": lambda: spec.get("nodeName", ""),
        "spec.serviceAccountName": lambda: service_account_name(pod),
        "status.podIP": lambda: status.get("podIP", ""),
        "status.hostIP": lambda: status.get("hostIP", ""),
        "status.podIPs": lambda: ",".join(ip["ip"] for ip in status.get("podIPs") or []),
        "status.hostIPs": lambda: ",".join(ip["ip"] for ip in status.get("hostIPs") or []),
    }
    if path not in simple:
        raise SpecError(f"unsupported fieldRef.fieldPath {path!r}")
    return str(simple[path]() or "")


def service_account_name(pod: Json) -> str:
    spec: Json = pod.get("spec", {})
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def _find_container(pod: Json, name: str) -> Json:
    spec: Json = pod.get("spec", {})
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if container.get("name") == name:
            return dict(container)
    raise SpecError(f"resourceFieldRef names unknown container {name!r}")


def resource_value(
    pod: Json, container_name: str, resource: str, divisor: str | int | None, allocatable: Mapping[str, str]
) -> str:
    """`resourceFieldRef`: limits fall back to the node's allocatable; the result is rounded up."""
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise SpecError(f"unsupported resourceFieldRef.resource {resource!r}")
    resources: Json = _find_container(pod, container_name).get("resources") or {}
    declared = (resources.get(kind) or {}).get(name)
    if declared is None and kind == "limits":
        declared = allocatable.get(name)
    if declared is None and kind == "requests":
        declared = (resources.get("limits") or {}).get(name, "0")
    quantity = parse_quantity(declared if declared is not None else "0")
    unit = parse_quantity(divisor if divisor not in (None, "") else "1")
    if unit <= 0:
        raise SpecError(f"invalid divisor {divisor!r}")
    return str(math.ceil(quantity / unit))


# ----- environment -------------------------------------------------------------------------------
def referenced_objects(pod: Json) -> tuple[set[str], set[str]]:
    """Names of the secrets and configMaps the pod's env, envFrom and volumes refer to."""
    secrets: set[str] = set()
    config_maps: set[str] = set()
    spec: Json = pod.get("spec", {})
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                secrets.add(source["secretRef"]["name"])
            if "configMapRef" in source:
                config_maps.add(source["configMapRef"]["name"])
        for var in container.get("env") or []:
            value_from: Json = var.get("valueFrom") or {}
            if "secretKeyRef" in value_from:
                secrets.add(value_from["secretKeyRef"]["name"])
            if "configMapKeyRef" in value_from:
                config_maps.add(value_from["configMapKeyRef"]["name"])
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            secrets.add(volume["secret"]["secretName"])
        if "configMap" in volume:
            config_maps.add(volume["configMap"]["name"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                secrets.add(source["secret"]["name"])
            if "configMap" in source:
                config_maps.add(source["configMap"]["name"])
    return secrets, config_maps


def _object(objects: Objects, kind: str, name: str, optional: bool) -> Mapping[str, bytes] | None:
    data = objects.get(name)
    if data is None and not optional:
        raise SpecError(f'{kind} "{name}" not found')
    return data


def _key(objects: Objects, kind: str, ref: Json) -> str | None:
    optional = bool(ref.get("optional", False))
    data = _object(objects, kind, ref["name"], optional)
    if data is None:
        return None
    if ref["key"] not in data:
        if optional:
            return None
        raise SpecError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
    return data[ref["key"]].decode()


def container_env(
    pod: Json,
    container: Json,
    *,
    secrets: Objects,
    config_maps: Objects,
    base: Mapping[str, str],
    allocatable: Mapping[str, str],
) -> dict[str, str]:
    """The variables the spec defines (envFrom, then env), in order; `$(VAR)` in `value` is expanded
    against the variables defined before it and `base` (the kubelet's own variables)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix", ""))
        if "configMapRef" in source:
            ref: Json = source["configMapRef"]
            data = _object(config_maps, "configmap", ref["name"], bool(ref.get("optional", False)))
        else:
            ref = source["secretRef"]
            data = _object(secrets, "secret", ref["name"], bool(ref.get("optional", False)))
        for key, value in (data or {}).items():
            env[prefix + key] = value.decode()
    for var in container.get("env") or []:
        name = str(var["name"])
        value_from: Json | None = var.get("valueFrom")
        if value_from is None:
            env[name] = expand(str(var.get("value", "")), {**base, **env})
        elif "fieldRef" in value_from:
            env[name] = field_value(pod, value_from["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in value_from:
            ref = value_from["resourceFieldRef"]
            env[name] = resource_value(
                pod,
                ref.get("containerName") or container["name"],
                ref["resource"],
                ref.get("divisor"),
                allocatable,
            )
        elif "secretKeyRef" in value_from:
            found = _key(secrets, "secret", value_from["secretKeyRef"])
            if found is not None:
                env[name] = found
        elif "configMapKeyRef" in value_from:
            found = _key(config_maps, "configmap", value_from["configMapKeyRef"])
            if found is not None:
                env[name] = found
        else:
            raise SpecError(f"env {name}: unsupported valueFrom {sorted(value_from)}")
    return env


# ----- volumes and mount paths -------------------------------------------------------------------
@dataclass(frozen=True)
class Volume:
    name: str
    kind: str  # emptyDir | hostPath | persistentVolumeClaim | secret | configMap | projected | downwardAPI
    path: Path
    source: Json = field(default_factory=dict)


SUPPORTED_VOLUMES = (
    "emptyDir",
    "hostPath",
    "persistentVolumeClaim",
    "secret",
    "configMap",
    "projected",
    "downwardAPI",
)


def pod_volumes(pod: Json, pod_dir: Path, state_dir: Path) -> dict[str, Volume]:
    """Where each of the pod's volumes lives on this machine."""
    namespace = pod["metadata"].get("namespace", "default")
    volumes: dict[str, Volume] = {}
    for spec in pod.get("spec", {}).get("volumes") or []:
        name = str(spec["name"])
        kinds = [kind for kind in SUPPORTED_VOLUMES if kind in spec]
        if not kinds:
            unsupported = sorted(set(spec) - {"name"})
            raise SpecError(f"volume {name!r}: unsupported volume type {unsupported}")
        kind = kinds[0]
        source: Json = spec[kind] or {}
        if kind == "hostPath":
            path = Path(source["path"])
        elif kind == "persistentVolumeClaim":
            path = state_dir / "claims" / namespace / str(source["claimName"])
        else:
            path = pod_dir / "volumes" / name
        volumes[name] = Volume(name, kind, path, source)
    return volumes


def container_mounts(
    container: Json, volumes: Mapping[str, Volume], env: Mapping[str, str], service_account_dir: Path | None
) -> list[tuple[str, Path]]:
    """(mountPath, local path) for each volumeMount, longest mountPath first. The service-account
    directory is mounted at the usual place unless the container mounts something there itself."""
    mounts: list[tuple[str, Path]] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise SpecError(f"volumeMount {mount['name']!r}: no such volume")
        local = volume.path
        sub_path = mount.get("subPath") or (
            expand(mount["subPathExpr"], env) if mount.get("subPathExpr") else ""
        )
        if sub_path:
            if Path(sub_path).is_absolute() or ".." in Path(sub_path).parts:
                raise SpecError(f"volumeMount {mount['name']!r}: subPath must be relative: {sub_path!r}")
            local = local / sub_path
        mount_path = str(mount["mountPath"]).rstrip("/")
        if mount_path:
            mounts.append((mount_path, local))
    if service_account_dir is not None and all(path != SERVICE_ACCOUNT_PATH for path, _ in mounts):
        mounts.append((SERVICE_ACCOUNT_PATH, service_account_dir))
    mounts.sort(key=lambda item: len(item[0]), reverse=True)
    return mounts


def rewrite_paths(text: str, mounts: Sequence[tuple[str, Path]]) -> str:
    """Replace each mountPath that occurs as a path (not inside another path component) by its local
    directory: `--data=/data/x` -> `--data=/tmp/.../volumes/data/x`, but `/var/data` stays."""
    if not mounts or not text:
        return text
    by_path = {path: str(local) for path, local in mounts}
    alternatives = "|".join(re.escape(path) for path, _ in mounts)
    pattern = re.compile(rf"(?<![\w.\-/])({alternatives})(?![\w.\-])")
    return pattern.sub(lambda match: by_path[match.group(1)], text)


# ----- what to run -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


def image_repository(image: str) -> str:
    """`registry:5000/team/app:1.2@sha256:..` -> `registry:5000/team/app`."""
    repository = image.split("@", 1)[0]
    head, _, tag = repository.rpartition(":")
    return head if head and "/" not in tag else repository


def entrypoint_for(image: str, entrypoints: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The entrypoint of the first pattern (fnmatch on the repository, without tag) that matches."""
    repository = image_repository(image)
    for pattern, argv in entrypoints.items():
        if fnmatch.fnmatchcase(repository, pattern):
            return list(argv)
    return None


def resolve_executable(name: str, path_env: str, cwd: Path) -> str:
    """`name` on PATH; a path is used as is if it exists, else its basename is looked up on PATH
    (images install programs to /usr/local/bin and similar places that do not exist here)."""
    if "/" in name:
        candidate = Path(name) if Path(name).is_absolute() else cwd / name
        if candidate.exists():
            return str(candidate)
        name = Path(name).name
    found = shutil.which(name, path=path_env)
    if found is None:
        raise SpecError(f'executable "{name}" not found on PATH')
    return found


def plan_container(
    pod: Json,
    container: Json,
    *,
    volumes: Mapping[str, Volume],
    service_account_dir: Path | None,
    base_env: Mapping[str, str],
    secrets: Objects,
    config_maps: Objects,
    allocatable: Mapping[str, str],
    default_cwd: Path,
    entrypoints: Mapping[str, Sequence[str]] | None = None,
) -> Launch:
    """argv, environment and working directory of one container's process. Without `command`,
    the image's entrypoint comes from `entrypoints` (image pattern -> argv)."""
    name = container.get("name", "?")
    command = [str(part) for part in container.get("command") or []]
    if not command:
        image = str(container.get("image", ""))
        command = list(entrypoint_for(image, entrypoints or {}) or [])
        if not command:
            raise SpecError(
                f"container {name!r} has no command and image {image!r} has no known entrypoint "
                "(a process kubelet cannot read images; see --image-entrypoint)"
            )
    spec_env = container_env(
        pod, container, secrets=secrets, config_maps=config_maps, base=base_env, allocatable=allocatable
    )
    everything = {**base_env, **spec_env}
    mounts = container_mounts(container, volumes, everything, service_account_dir)
    argv = [
        rewrite_paths(expand(part, everything), mounts)
        for part in [*command, *(str(arg) for arg in container.get("args") or [])]
    ]
    env = dict(base_env)
    env.update({key: rewrite_paths(value, mounts) for key, value in spec_env.items()})
    cwd = default_cwd
    if container.get("workingDir"):
        local = Path(rewrite_paths(str(container["workingDir"]), mounts))
        if local.is_dir():
            cwd = local
    argv[0] = resolve_executable(argv[0], env.get("PATH", os.defpath), cwd)
    return Launch(argv, env, cwd)


# ----- volume contents ---------------------------------------------------------------------------
Files = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


def _relative(path: str) -> str:
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts:
        raise SpecError(f"volume item path must be relative and without '..': {path!r}")
    return path


def keyed_files(
    data: Mapping[str, bytes] | None,
    items: Iterable[Json] | None,
    default_mode: int | None,
    *,
    what: str,
    optional: bool,
) -> Files:
    """The files of a secret or configMap volume (all keys, or just `items`)."""
    mode = DEFAULT_FILE_MODE if default_mode is None else int(default_mode)
    if data is None:
        if optional:
            return {}
        raise SpecError(f"{what} not found")
    items = list(items or [])
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    files: Files = {}
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise SpecError(f"{what}: no key {key!r}")
        files[_relative(item["path"])] = (data[key], int(item.get("mode", mode)))
    return files


def object_files(objects: Objects, kind: str, name: str, ref: Json, default_mode: int | None) -> Files:
    """The files of secret or configMap `name` as a volume (or projected source) `ref` asks."""
    return keyed_files(
        objects.get(name),
        ref.get("items"),
        default_mode,
        what=f'{kind} "{name}"',
        optional=bool(ref.get("optional", False)),
    )


def downward_files(
    pod: Json, items: Iterable[Json] | None, default_mode: int | None, allocatable: Mapping[str, str]
) -> Files:
    mode = DEFAULT_FILE_MODE if default_mode is None else int(default_mode)
    files: Files = {}
    for item in items or []:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"], whole_maps=True)
        else:
            ref: Json = item["resourceFieldRef"]
            if not ref.get("containerName"):
                raise SpecError("downwardAPI volume resourceFieldRef needs containerName")
            value = resource_value(
                pod, ref["containerName"], ref["resource"], ref.get("divisor"), allocatable
            )
        files[_relative(item["path"])] = (value.encode(), int(item.get("mode", mode)))
    return files


@dataclass(frozen=True)
class TokenFile:
    """A projected serviceAccountToken: the kubelet mints it through the TokenRequest API."""

    path: str
    audience: str | None
    expiration_seconds: int
    mode: int


def projected_files(
    pod: Json, source: Json, *, secrets: Objects, config_maps: Objects, allocatable: Mapping[str, str]
) -> tuple[Files, list[TokenFile]]:
    default_mode = source.get("defaultMode")
    mode = DEFAULT_FILE_MODE if default_mode is None else int(default_mode)
    files: Files = {}
    tokens: list[TokenFile] = []
    for part in source.get("sources") or []:
        if "secret" in part:
            ref: Json = part["secret"]
            files.update(object_files(secrets, "secret", ref["name"], ref, mode))
        elif "configMap" in part:
            ref = part["configMap"]
            files.update(object_files(config_maps, "configmap", ref["name"], ref, mode))
        elif "downwardAPI" in part:
            files.update(downward_files(pod, part["downwardAPI"].get("items"), mode, allocatable))
        elif "serviceAccountToken" in part:
            ref = part["serviceAccountToken"]
            tokens.append(
                TokenFile(
                    _relative(ref["path"]),
                    ref.get("audience") or None,
                    int(ref.get("expirationSeconds", 3600)),
                    mode,
                )
            )
        else:
            raise SpecError(f"unsupported projected volume source {sorted(part)}")
    return files, tokens
