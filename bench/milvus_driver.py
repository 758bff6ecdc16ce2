"""The Milvus side of `bench_vs_milvus`: a small line-protocol server run with the python of the
bench's own Milvus venv (`bench/milvus_env.py`), never the project's.

Why a separate process and interpreter: the embedded Milvus (`milvus==2.3.5`) needs a pymilvus of
its generation (2.3.x, with pins of early 2024), while the project will pin a newer pymilvus for its
own proxy; keeping Milvus' client in a venv of its own leaves the project's environment untouched.
So this file imports only the standard library, numpy and pymilvus -- nothing of vectorload.

Two modes, the same client code:

* `serve`: start a Milvus 2.3.5 standalone (the binaries the `milvus` package bundles) in a
  **private network namespace** and talk to it. Milvus 2.3.5 binds its gRPC servers and its
  metrics/health HTTP server to the wildcard address (`net.Listen("tcp", ":port")`, no setting
  changes that), so configuring addresses alone cannot keep it off the machine's interfaces. In a
  namespace of its own the only interface is `lo`: every listener is reachable from loopback in
  that namespace and from nowhere else. The ports are still free ones and the addresses Milvus
  advertises (etcd, each component's `ip`) are 127.0.0.1.
* `connect --host H --port P`: only the client, against anything that speaks Milvus' gRPC API
  (later: vectorload's proxy), so both systems are measured with exactly the same client calls.

Protocol: one JSON object per line on stdin (`{"op": ..., ...}`), one JSON answer per line on
stdout (`{"ok": true, ...}` or `{"ok": false, "error": "..."}`); logs go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
PR_SET_PDEATHSIG = 1
LOOPBACK = "127.0.0.1"
# components of the standalone whose `ip` (the address they register in etcd) we pin to loopback
COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


def log(message: str) -> None:
    print(f"[milvus-driver] {message}", file=sys.stderr, flush=True)


# --- network namespace --------------------------------------------------------------------------


def enter_private_network() -> str:
    """Move this process into a new network namespace holding only `lo`, and bring `lo` up.

    Must run before anything starts a thread (a new user namespace requires a single-threaded
    process): numpy and pymilvus are imported afterwards. Returns how the namespace was made."""
    libc = ctypes.CDLL(None, use_errno=True)
    how = "unshare(CLONE_NEWNET)"
    if libc.unshare(CLONE_NEWNET) != 0:
        first = ctypes.get_errno()
        if first != errno.EPERM:
            raise OSError(first, f"unshare(CLONE_NEWNET): {os.strerror(first)}")
        # not privileged: an unprivileged user namespace owning the network namespace
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise SystemExit(
                "cannot give Milvus a private network namespace (unshare CLONE_NEWNET: "
                f"{os.strerror(first)}; with CLONE_NEWUSER: {os.strerror(err)}). Milvus 2.3.5 listens "
                "on all interfaces, so the benchmark refuses to run it in the machine's own network; "
                "run as root or enable unprivileged user namespaces (kernel.unprivileged_userns_clone=1)"
            )
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        how = "unshare(CLONE_NEWUSER | CLONE_NEWNET)"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        raise SystemExit(f"the private network namespace has interfaces {names}, expected only lo")
    return how


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# --- the Milvus server --------------------------------------------------------------------------


class MilvusServer:
    """Milvus standalone from the `milvus` package's bundled binaries, configured by its own
    template renderer (`MilvusServerConfig`), run as our child so that we own its lifecycle."""

    def __init__(self, data_dir: Path, bin_base: Path) -> None:
        import milvus  # the embedded-server package (bundled binaries + config template)

        self.data_dir = data_dir
        self.bin_base = bin_base
        milvus._initialize_data_files(str(bin_base))  # unpacks the .lzma binaries once (md5-checked)
        self.binary = bin_base / "bin" / "milvus"
        self.ports = {
            "proxy_port": free_port(),
            "proxy_internal_port": free_port(),
            "root_coord_port": free_port(),
            "query_coord_port": free_port(),
            "query_node_port": free_port(),
            "index_coord_port": free_port(),
            "index_node_port": free_port(),
            "data_coord_port": free_port(),
            "data_node_port": free_port(),
            "etcd_port": free_port(),
        }
        self.etcd_peer_port = free_port()
        self.metrics_port = free_port()
        config = milvus.MilvusServerConfig(data_dir=str(data_dir), **self.ports)
        for component in COMPONENTS:
            config.set(f"{component}.ip", LOOPBACK)
        config.set("minio.address", LOOPBACK)  # not used (storageType: local), pinned anyway
        config.resolve()  # writes data_dir/configs/milvus.yaml (and checks every port binds)
        self.config_file = data_dir / "configs" / "milvus.yaml"
        self._pin_embedded_etcd()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def _pin_embedded_etcd(self) -> None:
        """The embedded etcd's own listeners (client and peer URLs) through `etcd.config.path`: its
        defaults are localhost:2379/2380, fixed ports; ours are free ones on 127.0.0.1."""
        client = f"http://{LOOPBACK}:{self.ports['etcd_port']}"
        peer = f"http://{LOOPBACK}:{self.etcd_peer_port}"
        etcd_yaml = self.data_dir / "configs" / "embed-etcd.yaml"
        etcd_yaml.write_text(
            f"name: default\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
            f"initial-cluster: default={peer}\nlisten-metrics-urls: ''\n"
        )
        text = self.config_file.read_text()
        text = text.replace(f"localhost:{self.ports['etcd_port']}", f"{LOOPBACK}:{self.ports['etcd_port']}")
        marker = "  use:\n    embed: true"
        if marker not in text:
            raise RuntimeError("unexpected milvus.yaml template: no etcd.use.embed")
        text = text.replace(marker, f"  config:\n    path: {etcd_yaml}\n{marker}", 1)
        self.config_file.write_text(text)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("milvus not started")
        return self.proc.pid

    def start(self, timeout: float = 180.0) -> float:
        started = time.monotonic()
        env = {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.metrics_port),
            "MILVUSCONF": str(self.data_dir / "configs"),
            "LD_LIBRARY_PATH": ":".join([str(self.binary.parent), os.environ.get("LD_LIBRARY_PATH", "")]),
        }
        self._log = (self.data_dir / "logs" / "milvus-stdout-stderr.log").open("ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "run", "standalone"],
            cwd=self.data_dir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        health = f"http://{LOOPBACK}:{self.metrics_port}/healthz"
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"milvus exited with code {self.proc.returncode}; logs in {self.data_dir}")
            with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=5) as r:
                if b"OK" in r.read():
                    return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"milvus not healthy after {timeout}s; logs in {self.data_dir}")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (Milvus stops gracefully: flushes, closes etcd), SIGKILL after `timeout`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            # Milvus 2.3.5 writes a session file /tmp/milvus/server_id_<pid> (fixed path)
            with contextlib.suppress(OSError):
                Path(f"/tmp/milvus/server_id_{self.proc.pid}").unlink()
            with contextlib.suppress(OSError):
                Path("/tmp/milvus").rmdir()  # only if empty: another Milvus may use it
        if self._log is not None:
            self._log.close()
            self._log = None


def _die_with_parent() -> None:
    """preexec_fn: Milvus gets SIGKILL if this driver dies, so a killed benchmark leaves none."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# --- the client ---------------------------------------------------------------------------------


def _fresh_collection(req: dict[str, Any], description: str) -> Any:
    """The benchmark's collection, made anew: an int64 primary key `req["pk"]` and one float vector
    field `req["field"]` of `req["dim"]`, `req["shards"]` shards if given."""
    from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, utility

    name = req["collection"]
    if utility.has_collection(name):
        utility.drop_collection(name)
    schema = CollectionSchema(
        [
            FieldSchema(req["pk"], DataType.INT64, is_primary=True, auto_id=False),
            FieldSchema(req["field"], DataType.FLOAT_VECTOR, dim=int(req["dim"])),
        ],
        description=description,
    )
    shards = req.get("shards")
    return Collection(name, schema, **({} if shards is None else {"num_shards": int(shards)}))


def _hnsw(req: dict[str, Any]) -> dict[str, Any]:
    return {
        "index_type": "HNSW",
        "metric_type": req["metric"],
        "params": {"M": int(req["M"]), "efConstruction": int(req["efConstruction"])},
    }


def _wait_indexed(name: str, rows: int, interval: float) -> None:
    """Until the index covers every row (Milvus' wait_for_index_building_complete answers once
    the segments it saw are done, before later ones exist)."""
    from pymilvus import utility

    while True:
        progress = utility.index_building_progress(name)
        if int(progress.get("indexed_rows", 0)) >= rows and int(progress.get("total_rows", 0)) == rows:
            return
        time.sleep(interval)


class Client:
    """The pymilvus (ORM) calls the benchmark makes; the same against Milvus or vectorload's proxy."""

    def __init__(self, host: str, port: int, token: str = "") -> None:
        from pymilvus import connections

        self.host, self.port, self.token = host, port, token
        self.connect()
        self._connections = connections

    def connect(self, timeout: float = 60.0) -> None:
        from pymilvus import connections

        with contextlib.suppress(Exception):
            connections.disconnect("default")
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.token:  # vectorload's proxy authenticates (user:password)
                    connections.connect(
                        "default", host=self.host, port=str(self.port), token=self.token, timeout=10
                    )
                else:
                    connections.connect("default", host=self.host, port=str(self.port), timeout=10)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def ingest(self, req: dict[str, Any]) -> dict[str, Any]:
        """Create the collection (pk + one vector field, same partitions), insert every row, flush,
        build the HNSW index with the sample's M / efConstruction, wait until every row is indexed."""
        import numpy as np
        from pymilvus import utility

        name, field = req["collection"], req["field"]
        coll = _fresh_collection(req, "vectorload bench_vs_milvus")
        started = time.perf_counter()
        rows = 0
        for part in req["partitions"]:
            if not coll.has_partition(part["name"]):
                coll.create_partition(part["name"])
            keys = np.load(part["pk"], allow_pickle=False)
            vectors = np.load(part["vectors"], allow_pickle=False)
            step = int(req.get("insert_batch", 20_000))
            for start in range(0, len(keys), step):
                coll.insert(
                    [keys[start : start + step].tolist(), vectors[start : start + step]],
                    partition_name=part["name"],
                )
            rows += len(keys)
        insert_seconds = time.perf_counter() - started
        started = time.perf_counter()
        coll.flush()
        flush_seconds = time.perf_counter() - started
        started = time.perf_counter()
        index_params = _hnsw(req)
        coll.create_index(field, index_params)
        utility.wait_for_index_building_complete(name)
        _wait_indexed(name, rows, 0.2)
        index_seconds = time.perf_counter() - started
        return {
            "rows": rows,
            "entities": coll.num_entities,
            "insert_seconds": insert_seconds,
            "flush_seconds": flush_seconds,
            "index_seconds": index_seconds,
            "index": index_params,
            "shards": coll.num_shards,
        }

    def bulk_import(self, req: dict[str, Any]) -> dict[str, Any]:
        """Create the collection (pk + one vector field, same partitions) with its HNSW index,
        then `utility.do_bulk_insert` one file per partition (all jobs at once); timed until every
        job is ImportCompleted and until every row is indexed."""
        from pymilvus import utility
        from pymilvus.client.types import BulkInsertState

        name, field = req["collection"], req["field"]
        coll = _fresh_collection(req, "vectorload bench_import")
        for part in req["partitions"]:
            if not coll.has_partition(part["name"]):
                coll.create_partition(part["name"])
        index_params = _hnsw(req)
        coll.create_index(field, index_params)
        rows = int(req["rows"])
        started = time.perf_counter()
        tasks = [
            utility.do_bulk_insert(name, files=[part["file"]], partition_name=part["name"])
            for part in req["partitions"]
        ]
        pending = set(tasks)
        while pending:
            for task in list(pending):
                state = utility.get_bulk_insert_state(task)
                if state.state == BulkInsertState.ImportFailed:
                    raise RuntimeError(f"import task {task} failed: {state.failed_reason}")
                if state.state == BulkInsertState.ImportCompleted:
                    pending.discard(task)
            time.sleep(0.1)
        import_seconds = time.perf_counter() - started
        _wait_indexed(name, rows, 0.1)
        indexed_seconds = time.perf_counter() - started
        return {
            "rows": rows,
            "entities": coll.num_entities,
            "import_seconds": import_seconds,
            "indexed_seconds": indexed_seconds,
            "index": index_params,
        }

    def load(self, req: dict[str, Any]) -> dict[str, Any]:
        """`load_collection`, timed to the first poll (every 20 ms, as the querynode side polls)
        that sees it fully loaded; pymilvus' own wait polls every 0.5 s, too coarse to time."""
        from pymilvus import Collection, utility
        from pymilvus.client.types import LoadState

        name = req["collection"]
        coll = Collection(name)
        # vectorload's collection has more fields than the rows Milvus got: load the same two
        # (pymilvus >= 2.4 sends load_fields; the bench passes them only to such a client)
        fields = req.get("load_fields")
        extra = {"load_fields": fields, "skip_load_dynamic_field": True} if fields else {}
        started = time.perf_counter()
        coll.load(_async=True, **extra)
        while utility.load_state(name) != LoadState.Loaded:
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        progress = utility.loading_progress(name)
        return {"seconds": seconds, "progress": progress}

    def release(self, req: dict[str, Any]) -> dict[str, Any]:
        from pymilvus import Collection, utility
        from pymilvus.client.types import LoadState

        name = req["collection"]
        coll = Collection(name)
        started = time.perf_counter()
        coll.release()
        seconds = time.perf_counter() - started
        state = utility.load_state(name)
        if state != LoadState.NotLoad:
            raise RuntimeError(f"after release the load state is {state}")
        return {"seconds": seconds}

    def segments(self, req: dict[str, Any]) -> dict[str, Any]:
        from pymilvus import utility

        infos = utility.get_query_segment_info(req["collection"])
        return {
            "segments": [
                {
                    "segment_id": int(s.segmentID),
                    "partition_id": int(s.partitionID),
                    "rows": int(s.num_rows),
                    "index_name": s.index_name,
                    "state": int(s.state),
                    "node_ids": [int(n) for n in s.nodeIds],
                }
                for s in infos
            ]
        }

    def search(self, req: dict[str, Any]) -> dict[str, Any]:
        """`batch` query vectors per `search` call; full passes over the queries until `seconds`
        have gone by (at least one). q/s of the fastest pass and the mean; primary keys of the
        first pass (for recall). The same loop as `bench_vs_milvus.timed_passes`."""
        import numpy as np
        from pymilvus import Collection

        coll = Collection(req["collection"])
        queries = np.load(req["queries"], allow_pickle=False)[: req.get("count")]
        batch, top_k = int(req["batch"]), int(req["top_k"])
        chunks = [queries[s : s + batch].tolist() for s in range(0, len(queries), batch)]
        param = {"metric_type": req["metric"], "params": {"ef": int(req["ef"])}}
        first: list[list[int]] | None = None
        times: list[float] = []
        started = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            ids: list[list[int]] = []
            for chunk in chunks:
                result = coll.search(chunk, req["field"], param, limit=top_k, consistency_level="Eventually")
                ids += [list(hits.ids) for hits in result]
            times.append(time.perf_counter() - t0)
            if first is None:
                first = ids
            if time.perf_counter() - started >= float(req["seconds"]):
                break
        n = len(queries)
        return {
            "qps": n / min(times),
            "mean_qps": n * len(times) / sum(times),
            "passes": len(times),
            "ids": first,
        }


# --- the loop -----------------------------------------------------------------------------------


def serve_requests(client: Client, server: MilvusServer | None, hello: dict[str, Any]) -> None:
    def answer(payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    answer({"ok": True, **hello})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "stop":
                answer({"ok": True})
                return
            if op == "restart":
                if server is None:
                    raise RuntimeError("restart needs serve mode")
                server.stop()
                seconds = server.start()
                client.connect()
                answer({"ok": True, "pid": server.pid, "start_seconds": seconds})
                continue
            handlers = {
                "ingest": client.ingest,
                "bulk_import": client.bulk_import,
                "load": client.load,
                "release": client.release,
                "search": client.search,
                "segments": client.segments,
            }
            if op not in handlers:
                raise ValueError(f"unknown op {op!r}; known: stop, restart, {', '.join(handlers)}")
            answer({"ok": True, **handlers[op](req)})
        except Exception as exc:
            log(traceback.format_exc())
            answer({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    sub = p.add_subparsers(dest="mode", required=True)
    serve = sub.add_parser("serve", help="start Milvus standalone in a private network namespace")
    serve.add_argument("--data-dir", type=Path, required=True, help="empty directory for Milvus' data")
    serve.add_argument("--bin-base", type=Path, required=True, help="where the binaries are unpacked")
    connect = sub.add_parser("connect", help="client only, against a running Milvus-API endpoint")
    connect.add_argument("--host", required=True)
    connect.add_argument("--port", type=int, required=True)
    connect.add_argument("--token-env", default="", help="variable holding user:password, if any")
    args = p.parse_args()
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # the benchmark died: stop
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # -> finally: Milvus stopped, data removed
    server: MilvusServer | None = None
    try:
        if args.mode == "serve":
            namespace = enter_private_network()
            server = MilvusServer(args.data_dir, args.bin_base)
            start_seconds = server.start()
            log(f"milvus {server.pid} healthy after {start_seconds:.1f}s, gRPC {server.ports['proxy_port']}")
            client = Client(LOOPBACK, server.ports["proxy_port"])
            hello = {
                "pid": server.pid,
                "start_seconds": start_seconds,
                "namespace": namespace,
                "interfaces": [name for _, name in socket.if_nameindex()],
                "ports": {
                    **server.ports,
                    "etcd_peer_port": server.etcd_peer_port,
                    "metrics_port": server.metrics_port,
                },
                "config": str(server.config_file),
            }
        else:
            token = os.environ.get(args.token_env, "") if args.token_env else ""
            client = Client(args.host, args.port, token)
            hello = {"pid": None, "namespace": None}
        serve_requests(client, server, hello)
    finally:
        if server is not None:
            server.stop()
            if args.mode == "serve":
                shutil.rmtree(args.data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
