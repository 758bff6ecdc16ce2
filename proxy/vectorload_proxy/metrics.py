"""The proxy's Prometheus metrics (base units, `_total` counters), on `--http-port` `/metrics`.

`vectorload_proxy_requests_total{protocol,method,code}` counts every answered request by the
Milvus code it carried (`0` success, `100` collection not found, ..., `UNAUTHENTICATED` /
`UNIMPLEMENTED` for gRPC status answers, `401`/`413`-style HTTP codes for REST refusals);
`vectorload_proxy_request_duration_seconds{protocol,method}` is the latency histogram;
`vectorload_proxy_requests_in_flight{protocol}` the requests being served. The chart's dashboard
and PodMonitor read these names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
