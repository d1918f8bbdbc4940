"""Prometheus metrics (spec S9), built on an explicit registry.

No global REGISTRY: each daemon (and each test) builds its own, so tests read
exact values and two daemons in one process never collide.
"""

from __future__ import annotations

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
    )
