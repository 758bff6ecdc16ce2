"""Prometheus metrics of one querynode, in their own CollectorRegistry."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .admission import MemoryAccount
from .memory import resident_bytes
from .registry import Registry
from .segment import META_KEY_CACHE, MetaKeyCache

LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SEARCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

# name -> help; docs/querynode.md lists the same set (a test checks it).
METRIC_NAMES = (
    "vectorload_querynode_segments_loaded",
    "vectorload_querynode_segments_loading",
    "vectorload_querynode_segments_failed",
    "vectorload_querynode_rows_loaded",
    "vectorload_querynode_loaded_bytes",
    "vectorload_querynode_segment_load_duration_seconds",
    "vectorload_querynode_segment_loads_total",
    "vectorload_querynode_segment_load_failures_total",
    "vectorload_querynode_segment_load_refusals_total",
    "vectorload_querynode_segment_load_cancellations_total",
    "vectorload_querynode_segment_releases_total",
    "vectorload_querynode_search_duration_seconds",
    "vectorload_querynode_requests_total",
    "vectorload_querynode_client_disconnects_total",
    "vectorload_querynode_memory_used_bytes",
    "vectorload_querynode_memory_capacity_bytes",
    "vectorload_querynode_memory_reserved_bytes",
    "vectorload_querynode_memory_threshold_ratio",
    "vectorload_querynode_resident_memory_bytes",
    "vectorload_querynode_meta_cache_entries",
    "vectorload_querynode_meta_cache_bytes",
    "vectorload_querynode_meta_cache_limit_entries",
    "vectorload_querynode_meta_cache_limit_bytes",
)


class _StateCollector(Collector):
    """Gauges computed at scrape time from the registry and the memory account."""

    def __init__(
        self, registry: Registry, account: MemoryAccount, rss: Callable[[], int], meta_cache: MetaKeyCache
    ) -> None:
        self.registry = registry
        self.account = account
        self.rss = rss
        self.meta_cache = meta_cache

    def collect(self) -> list[GaugeMetricFamily]:
        per_state = {
            "loaded": GaugeMetricFamily(
                "vectorload_querynode_segments_loaded", "Segments serving on this node", labels=["collection"]
            ),
            "loading": GaugeMetricFamily(
                "vectorload_querynode_segments_loading",
                "Segments loading on this node (not serving yet)",
                labels=["collection"],
            ),
            "failed": GaugeMetricFamily(
                "vectorload_querynode_segments_failed",
                "Segments whose last load failed",
                labels=["collection"],
            ),
        }
        rows = GaugeMetricFamily(
            "vectorload_querynode_rows_loaded", "Rows of the serving segments", labels=["collection"]
        )
        loaded_bytes = GaugeMetricFamily(
            "vectorload_querynode_loaded_bytes",
            "Accounted bytes of the serving segments",
            labels=["collection"],
        )
        counts: dict[tuple[str, str], int] = {}
        row_sums: dict[str, int] = {}
        byte_sums: dict[str, int] = {}
        for view in self.registry.views():
            collection = view.key.collection
            counts[(view.state, collection)] = counts.get((view.state, collection), 0) + 1
            if view.state == "loaded":
                row_sums[collection] = row_sums.get(collection, 0) + view.rows
                byte_sums[collection] = byte_sums.get(collection, 0) + view.bytes
        for (state, collection), n in sorted(counts.items()):
            per_state[state].add_metric([collection], n)
        for collection, n in sorted(row_sums.items()):
            rows.add_metric([collection], n)
        for collection, n in sorted(byte_sums.items()):
            loaded_bytes.add_metric([collection], n)
        cap = self.account.snapshot()
        cache_entries, cache_bytes = self.meta_cache.stats()
        cache_limits = self.meta_cache.limits
        return [
            *per_state.values(),
            rows,
            loaded_bytes,
            GaugeMetricFamily(
                "vectorload_querynode_memory_used_bytes",
                "Process overhead at start plus accounted bytes of serving segments",
                value=cap.used_bytes,
            ),
            GaugeMetricFamily(
                "vectorload_querynode_memory_capacity_bytes",
                "Memory limit of this node",
                value=cap.memory_limit_bytes,
            ),
            GaugeMetricFamily(
                "vectorload_querynode_memory_reserved_bytes",
                "Predicted bytes of admitted loads that have not finished",
                value=cap.reserved_bytes,
            ),
            GaugeMetricFamily(
                "vectorload_querynode_memory_threshold_ratio",
                "Fraction of the capacity that admission may fill",
                value=cap.threshold,
            ),
            GaugeMetricFamily(
                "vectorload_querynode_resident_memory_bytes", "Resident set size (VmRSS)", value=self.rss()
            ),
            GaugeMetricFamily(
                "vectorload_querynode_meta_cache_entries",
                "$meta key columns held by the node's key cache (all segments)",
                value=cache_entries,
            ),
            GaugeMetricFamily(
                "vectorload_querynode_meta_cache_bytes",
                "Bytes of the $meta key columns held by the node's key cache (not counted by admission)",
                value=cache_bytes,
            ),
            GaugeMetricFamily(
                "vectorload_querynode_meta_cache_limit_entries",
                "Bound of the $meta key cache in columns (--meta-cache-entries)",
                value=cache_limits.max_entries,
            ),
            GaugeMetricFamily(
                "vectorload_querynode_meta_cache_limit_bytes",
                "Bound of the $meta key cache in bytes (--meta-cache-bytes)",
                value=cache_limits.max_bytes,
            ),
        ]


class Metrics:
    def __init__(
        self, registry: Registry, account: MemoryAccount, meta_cache: MetaKeyCache = META_KEY_CACHE
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.load_duration = Histogram(
            "vectorload_querynode_segment_load_duration_seconds",
            "Time to load one segment (verify + read), successful loads only",
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.loads = Counter(
            "vectorload_querynode_segment_loads",
            "Segment loads that finished and now serve",
            registry=self.registry,
        )
        self.load_failures = Counter(
            "vectorload_querynode_segment_load_failures",
            "Segment loads that failed, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "vectorload_querynode_segment_load_refusals",
            "Segment loads refused, by reason (InsufficientMemory, SegmentNotFound, ...)",
            ["reason"],
            registry=self.registry,
        )
        self.cancellations = Counter(
            "vectorload_querynode_segment_load_cancellations",
            "Segment loads cancelled by a release or a newer load",
            registry=self.registry,
        )
        self.releases = Counter(
            "vectorload_querynode_segment_releases",
            "Segments released",
            registry=self.registry,
        )
        self.search_duration = Histogram(
            "vectorload_querynode_search_duration_seconds",
            "Time to answer one data request, by operation (search, query, get)",
            ["operation"],
            buckets=SEARCH_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "vectorload_querynode_requests",
            "HTTP requests answered, by route and status code",
            ["route", "code"],
            registry=self.registry,
        )
        self.disconnects = Counter(
            "vectorload_querynode_client_disconnects",
            "Requests whose client went away before the answer (not counted in requests_total)",
            ["route"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(registry, account, resident_bytes, meta_cache))

    def render(self) -> bytes:
        return generate_latest(self.registry)
