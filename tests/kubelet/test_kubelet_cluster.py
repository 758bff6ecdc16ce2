"""`vectorload-dev kubelet` against the real local control plane: the Node and its Lease, pods from
Deployments and StatefulSets (kube-controller-manager creates them, the kubelet binds and runs
them), env and volumes, service-account identity, restarts, deletion and shutdown."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vectorload_dev.cluster.controlplane import ControlPlane
from vectorload_dev.testing import pod_network, wait_for

pytestmark = pytest.mark.cluster


@dataclass
class Kubelet:
    proc: subprocess.Popen[bytes]
    node: str
    scheduler: str
    state_dir: Path
    log: Path
    pod_network: str  # this run's: a second test run's kubelets never hand out these addresses

    @property
    def pod_prefix(self) -> str:
        return self.pod_network.rsplit(".", 1)[0] + "."

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"kubelet did not stop in {timeout} s:\n{self.log_tail()}") from None


def start_kubelet(plane: ControlPlane, workdir: Path, *extra: str, name: str | None = None) -> Kubelet:
    """A kubelet with its own node name, scheduler name (it binds only pods that ask for it),
    state directory and pod network in this run's loopback slot (both reused when `name` is
    given again)."""
    name = name or f"kl-{uuid.uuid4().hex[:8]}"
    network = pod_network(name)
    state_dir = workdir / name
    state_dir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "vectorload_dev", "kubelet",
                "--kubeconfig", str(plane.kubeconfig),
                "--state-dir", str(state_dir),
                "--node-name", name,
                "--scheduler-name", name,
                "--heartbeat-interval", "2",
                "--backoff-base", "0.5",
                "--backoff-max", "4",
                "--max-grace-period", "10",
                "--pod-network", network,
                *extra,
            ],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    kubelet = Kubelet(proc, name, name, state_dir, log, network)
    try:
        wait_for(f"node {name} Ready", lambda: node_ready(plane, name), 30, details=kubelet.log_tail)
    except BaseException:
        kubelet.stop()
        raise
    return kubelet


def get(plane: ControlPlane, path: str) -> dict[str, Any] | None:
    status, body = plane.get(path)
    if status == 404:
        return None
    assert status == 200, f"GET {path}: {status} {body[:300]}"
    answer: dict[str, Any] = json.loads(body)
    return answer


def node_ready(plane: ControlPlane, name: str) -> bool:
    node = get(plane, f"/api/v1/nodes/{name}")
    return node is not None and condition(node, "Ready") == "True"


def condition(obj: dict[str, Any], kind: str) -> str | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond["type"] == kind:
            return str(cond["status"])
    return None


def pods(plane: ControlPlane, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    query = f"?labelSelector={selector}" if selector else ""
    listing = get(plane, f"/api/v1/namespaces/{namespace}/pods{query}")
    assert listing is not None
    items: list[dict[str, Any]] = listing["items"]
    return items


def pod(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    return get(plane, f"/api/v1/namespaces/{namespace}/pods/{name}")


def ready_pods(plane: ControlPlane, namespace: str, selector: str, count: int) -> list[dict[str, Any]] | None:
    found = [p for p in pods(plane, namespace, selector) if not p["metadata"].get("deletionTimestamp")]
    ready = [p for p in found if condition(p, "Ready") == "True"]
    return ready if len(ready) == count and len(found) == count else None


def container_pid(p: dict[str, Any], index: int = 0) -> int:
    return int(p["status"]["containerStatuses"][index]["containerID"].removeprefix("process://"))


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.rsplit(") ", 1)[-1].startswith("Z")


def processes_with_env(marker: str) -> list[int]:
    """Live processes whose environment contains `marker` (children inherit it)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes() and alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def kubelet(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubelet]:
    running = start_kubelet(control_plane, tmp_path_factory.mktemp("kubelet"), "--delete-node-on-exit")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log_tail()


def _apply(plane: ControlPlane, namespace: str, manifest: str) -> None:
    plane.kubectl("-n", namespace, "apply", "-f", "-", input=textwrap.dedent(manifest))


def _http(ip: str, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{ip}:8080{path}", timeout=5) as response:
        return str(response.read().decode())


def _status(p: dict[str, Any], index: int = 0) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = p["status"]["containerStatuses"]
    return statuses[index]


def test_node_is_ready_and_its_lease_renewed(control_plane: ControlPlane, kubelet: Kubelet) -> None:
    node = get(control_plane, f"/api/v1/nodes/{kubelet.node}")
    assert node is not None
    status = node["status"]
    assert condition(node, "Ready") == "True"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert status["capacity"]["cpu"] == str(len(os.sched_getaffinity(0)))
    assert status["capacity"]["memory"].endswith("Ki") and int(status["allocatable"]["pods"]) > 0

    def untainted() -> bool:  # the node lifecycle controller does not taint it (or lifts a taint at once)
        current = get(control_plane, f"/api/v1/nodes/{kubelet.node}")
        return current is not None and not current["spec"].get("taints")

    wait_for("no taints on the node", untainted, 10, details=kubelet.log_tail)
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{kubelet.node}"
    lease = get(control_plane, lease_path)
    assert lease is not None and lease["spec"]["holderIdentity"] == kubelet.node
    first = lease["spec"]["renewTime"]

    def renewed() -> bool:
        again = get(control_plane, lease_path)
        return again is not None and again["spec"]["renewTime"] != first

    wait_for("the lease to be renewed", renewed, 10, details=kubelet.log_tail)


def test_deployment_pod_serves_on_its_ip_and_restarts_after_kill(
    control_plane: ControlPlane, kubelet: Kubelet, namespace: str
) -> None:
    _apply(
        control_plane,
        namespace,
        f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          replicas: 1
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              schedulerName: {kubelet.scheduler}
              terminationGracePeriodSeconds: 5
              containers:
              - name: web
                image: python:3.11
                command: [python, -m, http.server, --bind, $(POD_IP), "8080"]
                env:
                - name: POD_IP
                  valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
                readinessProbe:
                  httpGet: {{path: /, port: http}}
                  periodSeconds: 1
                ports:
                - {{name: http, containerPort: 8080}}
        """,
    )
    (web,) = wait_for(
        "web Ready", lambda: ready_pods(control_plane, namespace, "app=web", 1), 30, details=kubelet.log_tail
    )
    assert web["spec"]["nodeName"] == kubelet.node
    ip = web["status"]["podIP"]
    assert ip.startswith(kubelet.pod_prefix) and ip != "127.0.0.1"
    assert web["status"]["podIPs"] == [{"ip": ip}] and web["status"]["hostIP"] == "127.0.0.1"
    assert "Directory listing" in _http(ip)
    assert condition(web, "ContainersReady") == "True" and condition(web, "PodScheduled") == "True"
    first = _status(web)
    assert (
        first["started"]
        and first["restartCount"] == 0
        and first["image"] == first["imageID"] == "python:3.11"
    )

    old_pid = container_pid(web)
    os.kill(old_pid, signal.SIGKILL)
    name = web["metadata"]["name"]

    def restarted() -> dict[str, Any] | None:
        p = pod(control_plane, namespace, name)
        return p if p and _status(p)["restartCount"] == 1 and condition(p, "Ready") == "True" else None

    again = wait_for("web restarted and Ready", restarted, 30, details=kubelet.log_tail)
    assert container_pid(again) != old_pid and alive(container_pid(again))
    last = _status(again)["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["signal"] == 9 and last["reason"] == "Error"
    assert again["status"]["podIP"] == ip
    assert "Directory listing" in _http(ip)


def test_statefulset_pods_get_distinct_ips_claims_persist_and_deleted_pods_come_back(
    control_plane: ControlPlane, kubelet: Kubelet, namespace: str
) -> None:
    script = (
        "import functools, http.server, os; "
        "open('/data/boots', 'a').write(os.environ['HOSTNAME'] + chr(10)); "
        "handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory='/data'); "
        "http.server.ThreadingHTTPServer((os.environ['POD_IP'], 8080), handler).serve_forever()"
    )
    _apply(
        control_plane,
        namespace,
        f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: db}}
        spec: {{clusterIP: None, selector: {{app: db}}, ports: [{{port: 8080}}]}}
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {{name: db}}
        spec:
          serviceName: db
          replicas: 2
          podManagementPolicy: Parallel
          selector: {{matchLabels: {{app: db}}}}
          template:
            metadata: {{labels: {{app: db}}}}
            spec:
              schedulerName: {kubelet.scheduler}
              terminationGracePeriodSeconds: 5
              containers:
              - name: db
                image: python:3.11
                command: [python, -c, {json.dumps(script)}]
                env:
                - name: POD_IP
                  valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
                volumeMounts: [{{name: data, mountPath: /data}}]
                readinessProbe:
                  tcpSocket: {{port: 8080}}
                  periodSeconds: 1
          volumeClaimTemplates:
          - metadata: {{name: data}}
            spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Mi}}}}}}
        """,
    )
    both = wait_for(
        "db-0 and db-1 Ready",
        lambda: ready_pods(control_plane, namespace, "app=db", 2),
        40,
        details=kubelet.log_tail,
    )
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in both}
    assert len(set(ips.values())) == 2
    assert _http(ips["db-0"], "/boots") == "db-0\n"
    assert _http(ips["db-1"], "/boots") == "db-1\n"
    claim = kubelet.state_dir / "claims" / namespace / "data-db-0" / "boots"
    assert claim.read_text() == "db-0\n"

    old = next(p for p in both if p["metadata"]["name"] == "db-0")
    old_pid = container_pid(old)
    control_plane.kubectl("-n", namespace, "delete", "pod", "db-0", "--wait=false")
    wait_for("the deleted pod's process to exit", lambda: not alive(old_pid), 15, details=kubelet.log_tail)

    def recreated() -> dict[str, Any] | None:
        p = pod(control_plane, namespace, "db-0")
        fresh = p and p["metadata"]["uid"] != old["metadata"]["uid"] and condition(p, "Ready") == "True"
        return p if fresh else None

    new = wait_for("db-0 recreated and Ready", recreated, 30, details=kubelet.log_tail)
    assert _http(new["status"]["podIP"], "/boots") == "db-0\ndb-0\n"  # the claim survived the pod


FILES = [
    "/etc/secret/password",
    "/etc/config/greeting",
    "/etc/podinfo/labels",
    "/etc/podinfo/mem",
    "/etc/projected/app",
    "/etc/projected/token",
    "/work/init.txt",
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
]
# the mount paths in this script are rewritten to the local volume directories by the kubelet
DUMP = f"""\
import json, os, stat
files = []
for path in {FILES!r}:
    with open(path) as f:
        files.append({{'path': path, 'text': f.read(), 'mode': stat.S_IMODE(os.stat(path).st_mode)}})
print(json.dumps({{'env': dict(os.environ), 'files': files, 'cwd': os.getcwd()}}))
"""


def test_env_volumes_init_containers_and_service_account_identity(
    control_plane: ControlPlane, kubelet: Kubelet, namespace: str
) -> None:
    kubectl = str(control_plane.kubectl_bin)
    _apply(
        control_plane,
        namespace,
        f"""\
        apiVersion: v1
        kind: ServiceAccount
        metadata: {{name: robot}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: creds}}
        stringData: {{password: hunter2, user: alice}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: settings}}
        data: {{greeting: hello, color: blue}}
        ---
        apiVersion: v1
        kind: Pod
        metadata:
          name: probe-me
          labels: {{app: dump}}
          annotations: {{team: vectors}}
        spec:
          schedulerName: {kubelet.scheduler}
          serviceAccountName: robot
          restartPolicy: Never
          volumes:
          - {{name: work, emptyDir: {{}}}}
          - name: secret
            secret: {{secretName: creds, items: [{{key: password, path: password, mode: 0400}}]}}
          - {{name: config, configMap: {{name: settings}}}}
          - name: podinfo
            downwardAPI:
              items:
              - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
              - path: mem
                resourceFieldRef: {{containerName: dump, resource: limits.memory, divisor: 1Mi}}
          - name: projected
            projected:
              sources:
              - configMap: {{name: settings, items: [{{key: color, path: app}}]}}
              - serviceAccountToken: {{path: token, audience: vault, expirationSeconds: 3600}}
          initContainers:
          - name: init
            image: busybox
            command: [python, -c, "open('/work/init.txt', 'w').write('from init')"]
            volumeMounts: [{{name: work, mountPath: /work}}]
          containers:
          - name: dump
            image: python:3.11
            command: [python, -c, {json.dumps(DUMP)}]
            workingDir: /work
            resources:
              requests: {{cpu: 250m, memory: 32Mi}}
              limits: {{cpu: 500m, memory: 64Mi}}
            envFrom:
            - configMapRef: {{name: settings}}
              prefix: CM_
            env:
            - {{name: MY_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
            - {{name: MY_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
            - {{name: MY_UID, valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}}}
            - {{name: MY_APP, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['app']"}}}}}}
            - {{name: MY_TEAM, valueFrom: {{fieldRef: {{fieldPath: "metadata.annotations['team']"}}}}}}
            - {{name: MY_NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
            - {{name: MY_SA, valueFrom: {{fieldRef: {{fieldPath: spec.serviceAccountName}}}}}}
            - {{name: MY_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
            - {{name: HOST_IP, valueFrom: {{fieldRef: {{fieldPath: status.hostIP}}}}}}
            - {{name: MEM_MI, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
            - {{name: CPU_REQ_M, valueFrom: {{resourceFieldRef: {{resource: requests.cpu, divisor: 1m}}}}}}
            - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
            - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: settings, key: greeting}}}}}}
            - {{name: URL, value: "http://$(MY_IP):8080/$(MY_NAME)"}}
            - {{name: DATA_FILE, value: /work/init.txt}}
            volumeMounts:
            - {{name: work, mountPath: /work}}
            - {{name: secret, mountPath: /etc/secret}}
            - {{name: config, mountPath: /etc/config}}
            - {{name: podinfo, mountPath: /etc/podinfo}}
            - {{name: projected, mountPath: /etc/projected}}
          - name: whoami
            image: bitnami/kubectl
            command: [{kubectl}, auth, whoami, -o, "jsonpath={{.status.userInfo.username}}"]
        """,
    )

    def finished() -> dict[str, Any] | None:
        p = pod(control_plane, namespace, "probe-me")
        return p if p and p["status"].get("phase") in ("Succeeded", "Failed") else None

    done = wait_for("probe-me to finish", finished, 40, details=kubelet.log_tail)
    uid = done["metadata"]["uid"]
    logs = kubelet.state_dir / "logs" / f"{namespace}_probe-me_{uid}"
    assert done["status"]["phase"] == "Succeeded", (
        done["status"],
        [p.read_text() for p in logs.glob("*.log")],
    )
    assert condition(done, "Initialized") == "True"
    init = done["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert init["exitCode"] == 0 and init["reason"] == "Completed"
    assert done["status"]["podIP"].startswith(kubelet.pod_prefix)

    assert (logs / "whoami.log").read_text().strip() == f"system:serviceaccount:{namespace}:robot"

    dump = json.loads((logs / "dump.log").read_text())
    env: dict[str, str] = dump["env"]
    expected = {
        "MY_NAME": "probe-me",
        "MY_NAMESPACE": namespace,
        "MY_UID": uid,
        "MY_APP": "dump",
        "MY_TEAM": "vectors",
        "MY_NODE": kubelet.node,
        "MY_SA": "robot",
        "MY_IP": done["status"]["podIP"],
        "HOST_IP": "127.0.0.1",
        "MEM_MI": "64",
        "CPU_REQ_M": "250",
        "PASSWORD": "hunter2",
        "GREETING": "hello",
        "CM_greeting": "hello",
        "CM_color": "blue",
        "URL": f"http://{done['status']['podIP']}:8080/probe-me",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(control_plane.state.api_port),
        "HOSTNAME": "probe-me",
    }
    assert {key: env.get(key) for key in expected} == expected
    work = kubelet.state_dir / "pods" / uid / "volumes" / "work"
    assert env["DATA_FILE"] == f"{work}/init.txt"  # mount path rewritten
    assert dump["cwd"] == str(work)  # workingDir /work is the emptyDir
    assert Path(env["KUBECONFIG"]).is_file() or not (kubelet.state_dir / "pods" / uid).exists()

    files = {path: (f["text"], f["mode"]) for path, f in zip(FILES, dump["files"], strict=True)}
    local = [f["path"] for f in dump["files"]]
    assert local[6] == f"{work}/init.txt" and all(not path.startswith(("/etc/", "/var/")) for path in local)
    assert files["/etc/secret/password"] == ("hunter2", 0o400)
    assert files["/etc/config/greeting"] == ("hello", 0o644)
    assert files["/etc/podinfo/labels"][0] == 'app="dump"'
    assert files["/etc/podinfo/mem"][0] == "64"
    assert files["/etc/projected/app"][0] == "blue"
    assert files["/work/init.txt"][0] == "from init"
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert files[f"{sa}/namespace"][0] == namespace
    assert "BEGIN CERTIFICATE" in files[f"{sa}/ca.crt"][0]
    assert stat.S_IMODE(files[f"{sa}/token"][1]) == 0o600

    # the projected token has the requested audience; the service-account token the API server's
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": files["/etc/projected/token"][0], "audiences": ["vault"]},
    }
    answer = json.loads(
        control_plane.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout
    )
    assert answer["status"]["authenticated"] is True
    assert answer["status"]["user"]["username"] == f"system:serviceaccount:{namespace}:robot"
    assert answer["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["probe-me"]


def test_restart_policies_back_off_and_liveness(
    control_plane: ControlPlane, kubelet: Kubelet, namespace: str
) -> None:
    def pod_json(name: str, policy: str, code: str, **container: Any) -> dict[str, Any]:
        main = {"name": "main", "image": "python:3.11", "command": ["python", "-c", code], **container}
        spec = {
            "schedulerName": kubelet.scheduler,
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 2,
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {**spec, "containers": [main]},
        }

    liveness = {
        "exec": {"command": ["python", "-c", "raise SystemExit(1)"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    pods_list = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            pod_json("crash", "Always", "raise SystemExit(3)"),
            pod_json("fail-once", "Never", "raise SystemExit(3)"),
            pod_json("unhealthy", "Always", "import time; time.sleep(300)", livenessProbe=liveness),
        ],
    }
    _apply(control_plane, namespace, json.dumps(pods_list))

    def crash_looping() -> dict[str, Any] | None:
        p = pod(control_plane, namespace, "crash")
        statuses = (p or {}).get("status", {}).get("containerStatuses") or []
        waiting = statuses[0]["state"].get("waiting", {}) if statuses else {}
        return p if waiting.get("reason") == "CrashLoopBackOff" and statuses[0]["restartCount"] >= 2 else None

    crash = wait_for("crash in CrashLoopBackOff", crash_looping, 30, details=kubelet.log_tail)
    assert crash["status"]["phase"] == "Running"
    assert _status(crash)["lastState"]["terminated"]["exitCode"] == 3

    def failed() -> dict[str, Any] | None:
        p = pod(control_plane, namespace, "fail-once")
        return p if p and p["status"].get("phase") == "Failed" else None

    fail = wait_for("fail-once Failed", failed, 20, details=kubelet.log_tail)
    terminated = _status(fail)["state"]["terminated"]
    assert (
        terminated["exitCode"] == 3 and terminated["reason"] == "Error" and _status(fail)["restartCount"] == 0
    )

    def restarted_by_liveness() -> dict[str, Any] | None:
        p = pod(control_plane, namespace, "unhealthy")
        statuses = (p or {}).get("status", {}).get("containerStatuses") or []
        return p if statuses and statuses[0]["restartCount"] >= 1 else None

    unhealthy = wait_for(
        "unhealthy restarted by its liveness probe", restarted_by_liveness, 30, details=kubelet.log_tail
    )
    assert _status(unhealthy)["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM


def test_shutdown_stops_every_process_and_marks_the_node_not_ready(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    own = start_kubelet(control_plane, tmp_path)
    marker = f"VL_KUBELET_TEST_{uuid.uuid4().hex}"
    try:
        _apply(
            control_plane,
            namespace,
            f"""\
            apiVersion: v1
            kind: Pod
            metadata: {{name: family, labels: {{app: family}}}}
            spec:
              schedulerName: {own.scheduler}
              containers:
              - name: parent
                image: python:3.11
                command: [python, -c, "import subprocess as s,time; s.Popen(['sleep', '99']); time.sleep(99)"]
                env: [{{name: {marker}, value: "1"}}]
              - name: sibling
                image: python:3.11
                command: [sleep, "300"]
                env: [{{name: {marker}, value: "1"}}]
            """,
        )
        wait_for(
            "family Ready",
            lambda: ready_pods(control_plane, namespace, "app=family", 1),
            30,
            details=own.log_tail,
        )
        wait_for(
            "parent, child and sibling",
            lambda: len(processes_with_env(marker)) >= 3,
            10,
            details=own.log_tail,
        )
    finally:
        code = own.stop()
    assert code == 0, own.log_tail()
    assert processes_with_env(marker) == []
    assert not list((own.state_dir / "processes").glob("*.json"))
    node = get(control_plane, f"/api/v1/nodes/{own.node}")
    assert node is not None and condition(node, "Ready") == "False"
    family = pod(control_plane, namespace, "family")
    assert family is not None and condition(family, "Ready") == "False"
    assert all("terminated" in s["state"] for s in family["status"]["containerStatuses"])
    control_plane.kubectl(
        "-n", namespace, "delete", "pod", "family", "--force", "--grace-period=0", check=False
    )
    control_plane.kubectl("delete", "node", own.node, check=False)


def test_a_killed_kubelet_leaves_no_processes_and_a_new_one_runs_the_pod_again(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    first = start_kubelet(control_plane, tmp_path)
    marker = f"VL_KUBELET_TEST_{uuid.uuid4().hex}"
    _apply(
        control_plane,
        namespace,
        f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: survivor, labels: {{app: survivor}}}}
        spec:
          schedulerName: {first.scheduler}
          nodeName: {first.node}
          containers:
          - name: main
            image: python:3.11
            command: [python, -c, "import subprocess as s,time; s.Popen(['sleep', '99']); time.sleep(99)"]
            env: [{{name: {marker}, value: "1"}}]
        """,
    )
    try:
        p = wait_for(
            "survivor Ready",
            lambda: ready_pods(control_plane, namespace, "app=survivor", 1),
            30,
            details=first.log_tail,
        )
        old_pid = container_pid(p[0])
        wait_for(
            "the container and its child",
            lambda: len(processes_with_env(marker)) == 2,
            10,
            details=first.log_tail,
        )
        first.proc.kill()  # SIGKILL: no cleanup at all; PR_SET_PDEATHSIG takes the container with it
        first.proc.wait()
        wait_for("the container to die with its kubelet", lambda: not alive(old_pid), 5)
        (grandchild,) = processes_with_env(marker)  # its child lives on, in the container's process group
        assert os.getpgid(grandchild) == old_pid
    finally:
        if first.proc.poll() is None:
            first.stop()
    again = start_kubelet(control_plane, tmp_path, name=first.node)  # same node, same state directory
    try:

        def rerun() -> int | None:
            current = pod(control_plane, namespace, "survivor")
            if not current or condition(current, "Ready") != "True":
                return None
            pid = container_pid(current)
            return pid if pid != old_pid and alive(pid) else None

        new_pid = wait_for("survivor running again under the new kubelet", rerun, 30, details=again.log_tail)
        assert not alive(grandchild)  # killed by the new kubelet from its process records
        wait_for(
            "the new container and its child",
            lambda: len(processes_with_env(marker)) == 2,
            10,
            details=again.log_tail,
        )
        assert {os.getpgid(pid) for pid in processes_with_env(marker)} == {new_pid}
        assert p[0]["status"]["podIP"] == pod(control_plane, namespace, "survivor")["status"]["podIP"]  # type: ignore[index]
    finally:
        assert again.stop() == 0
    assert processes_with_env(marker) == []
    control_plane.kubectl(
        "-n", namespace, "delete", "pod", "survivor", "--force", "--grace-period=0", check=False
    )
    control_plane.kubectl("delete", "node", first.node, check=False)
