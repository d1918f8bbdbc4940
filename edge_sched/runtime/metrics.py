"""Prometheus metrics (spec S9), built on an explicit registry.

No global REGISTRY: each daemon (and each test) builds its own, so tests read
exact values and two daemons in one process never collide.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


@attrs.frozen
class Metrics:
    registry: CollectorRegistry
    extender_requests: Counter
    extender_duration: Histogram
    binds: Counter
    plan_overrides: Counter
    service_restarts: Counter
    cache_nodes: Gauge
    cache_pods: Gauge
    monitor_polls: Counter
    monitor_series_skipped: Counter
    node_metrics_polls: Counter
    events: Counter


def build_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    reg = registry if registry is not None else CollectorRegistry()
    return Metrics(
        registry=reg,
        extender_requests=Counter(
            "edge_sched_extender_requests",
            "Extender calls by verb and outcome (ok, bad_request, error).",
            ["verb", "outcome"],
            registry=reg,
        ),
        extender_duration=Histogram(
            "edge_sched_extender_request_duration_seconds",
            "Time to answer an extender call.",
            ["verb"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ),
        binds=Counter(
            "edge_sched_binds",
            "Bind outcomes (ok, node_missing, conflict, error, standalone).",
            ["result"],
            registry=reg,
        ),
        plan_overrides=Counter(
            "edge_sched_bind_plan_overrides",
            "Binds that followed a plan instead of kube-scheduler's choice.",
            registry=reg,
        ),
        service_restarts=Counter(
            "edge_sched_service_restarts",
            "Background services restarted after a crash.",
            ["service"],
            registry=reg,
        ),
        cache_nodes=Gauge("edge_sched_cache_nodes", "Nodes in the watch cache.", registry=reg),
        cache_pods=Gauge("edge_sched_cache_pods", "Pods on nodes in the watch cache.", registry=reg),
        monitor_polls=Counter(
            "edge_sched_monitor_polls",
            "Prometheus/Thanos queries by result (ok, empty, error, timeout, unreachable, bad_response).",
            ["result"],
            registry=reg,
        ),
        monitor_series_skipped=Counter(
            "edge_sched_monitor_series_skipped",
            "Series left out of decisions by reason (nan, inf, stale, out_of_range, unmatched, malformed).",
            ["resource", "reason"],
            registry=reg,
        ),
        node_metrics_polls=Counter(
            "edge_sched_node_metrics_polls",
            "metrics.k8s.io node metrics polls by result (ok, not_served, error).",
            ["result"],
            registry=reg,
        ),
        events=Counter(
            "edge_sched_events",
            "Kubernetes Events by result (posted, failed, dropped: the queue was full).",
            ["result"],
            registry=reg,
        ),
    )


@attrs.frozen
class PowerMetrics:
    """Computing-power metrics (S9, the seed's names), registered only when it is enabled."""

    reports: Counter
    parse_errors: Counter
    latest_report_timestamp: Gauge
    nodes: Gauge
    router_requests: Counter


def build_power_metrics(registry: CollectorRegistry, fresh_nodes: Callable[[], int]) -> PowerMetrics:
    """Args: fresh_nodes is read at scrape time, so an expiry shows without a sweep."""
    nodes = Gauge(
        "computing_power_nodes_total", "Nodes with at least one fresh computing-power report.", registry=registry
    )
    nodes.set_function(lambda: float(fresh_nodes()))
    return PowerMetrics(
        reports=Counter(
            "computing_power_reports", "Computing-power report datagrams accepted and applied.", registry=registry
        ),
        parse_errors=Counter(
            "computing_power_parse_errors",
            "Report datagrams dropped, by reason (truncated, trailing_bytes, oversize, unknown_type, "
            "invalid_value, invalid_name, duplicate_host, no_hosts, source_not_allowed, internal_error).",
            ["reason"],
            registry=registry,
        ),
        latest_report_timestamp=Gauge(
            "computing_power_latest_report_timestamp",
            "Unix time of the last accepted computing-power report.",
            registry=registry,
        ),
        nodes=nodes,
        router_requests=Counter(
            "edge_sched_router_requests",
            "Computing-power router request tries by result (ok, timeout, invalid, error).",
            ["result"],
            registry=registry,
        ),
    )
