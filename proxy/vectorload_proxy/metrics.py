"""The proxy's Prometheus metrics (base units, `_total` counters), on `--http-port` `/metrics`.

`vectorload_proxy_requests_total{protocol,method,code}` counts every answered request by the
Milvus code it carried (`0` success, `100` collection not found, ..., `UNAUTHENTICATED` /
`UNIMPLEMENTED` for gRPC status answers, `401`/`413`-style HTTP codes for REST refusals);
`vectorload_proxy_request_duration_seconds{protocol,method}` is the latency histogram;
`vectorload_proxy_requests_in_flight{protocol}` the requests being served. The write path adds
what an operator of a write-heavy deployment watches: rows acknowledged by operation, the
write-ahead log's group commits (fsyncs, records, fsync latency), durable records not yet sealed
(the seal lag, own and adopted logs), seal pass durations, compactions, and bulk import jobs by
final state. The chart's dashboard and PodMonitor read these names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

FSYNC_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
SEAL_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "vectorload_proxy_requests",
            "Requests answered, by protocol, Milvus method and answer code",
            ["protocol", "method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "vectorload_proxy_request_duration_seconds",
            "Time to answer a request, by protocol and Milvus method",
            ["protocol", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "vectorload_proxy_requests_in_flight", "Requests being served", ["protocol"], registry=r
        )
        self.replica_retries = Counter(
            "vectorload_proxy_replica_retries",
            "Searches and queries retried on another replica after a querynode failed",
            registry=r,
        )
        self.watch_events = Counter(
            "vectorload_proxy_watch_events", "Watch events applied to the cache", ["kind"], registry=r
        )
        self.cache_synced = Gauge(
            "vectorload_proxy_cache_synced", "1 once every watch has listed its objects", registry=r
        )
        self.connections = Counter(
            "vectorload_proxy_connections",
            "Connections accepted on the main port, by protocol detected",
            ["protocol"],
            registry=r,
        )
        # the write path (writes.py, wal.py, imports.py); zero on a --read-only proxy
        self.rows_written = Counter(
            "vectorload_proxy_rows_written",
            "Rows acknowledged (durable in the write-ahead log), by operation: insert, upsert, delete",
            ["op"],
            registry=r,
        )
        self.wal_fsyncs = Counter(
            "vectorload_proxy_wal_fsyncs", "Group commits of the write-ahead log (one fsync each)", registry=r
        )
        self.wal_records = Counter(
            "vectorload_proxy_wal_records", "Records made durable in the write-ahead log", registry=r
        )
        self.wal_fsync_seconds = Histogram(
            "vectorload_proxy_wal_fsync_duration_seconds",
            "Time to write and fsync one group commit of the write-ahead log",
            buckets=FSYNC_BUCKETS,
            registry=r,
        )
        self.unsealed_records = Gauge(
            "vectorload_proxy_unsealed_records",
            "Durable records not yet sealed into segments and deltas (this proxy's log and adopted ones)",
            registry=r,
        )
        self.seal_seconds = Histogram(
            "vectorload_proxy_seal_duration_seconds",
            "Time of one seal pass that sealed records (segments built, deltas written)",
            buckets=SEAL_BUCKETS,
            registry=r,
        )
        self.compactions = Counter(
            "vectorload_proxy_compactions", "Compactions done (small segments merged into one)", registry=r
        )
        self.import_jobs = Counter(
            "vectorload_proxy_import_jobs",
            "Bulk import jobs this proxy ran to an end, by final state: Completed, Failed",
            ["state"],
            registry=r,
        )
        for op in ("insert", "upsert", "delete"):  # every series exists from the start, at 0
            self.rows_written.labels(op)
        for state in ("Completed", "Failed"):
            self.import_jobs.labels(state)
        self.import_rows = Counter(
            "vectorload_proxy_import_rows", "Rows inserted by bulk import jobs", registry=r
        )
