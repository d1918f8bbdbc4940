"""The metrics.k8s.io poller: the first fallback when Prometheus is unreachable (spec S7).

Lists `metrics.k8s.io/v1beta1` NodeMetrics (what `kubectl top nodes` shows; served by
metrics-server) every poll interval through the one Kubernetes client, so the fallback
is warm the moment Prometheus stops answering. The store decides per node which source
a decision uses; this poller only keeps its own source fresh.

A cluster without metrics-server answers 404: the source is reported as "not served"
(health, `edge_sched_node_metrics_polls_total{result="not_served"}`) and decisions go
on with the next source. Polling continues, so installing metrics-server later needs no
restart. The request is bounded by `KUBE_REQUEST_TIMEOUT` inside `KubeClient.request`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import NoReturn, Protocol

import trio

from edge_sched.codecs.node_metrics import NodeMetricsError, decode_node_metrics, to_readings
from edge_sched.core.load import METRICS_API, SeriesIndex
from edge_sched.core.model import CPU, MEMORY, NodeInfo
from edge_sched.errors import KubeError, KubeNotFound
from edge_sched.runtime.metrics import Metrics
from edge_sched.runtime.usage import UsageStore

log = logging.getLogger(__name__)

NODE_METRICS_PATH = "/apis/metrics.k8s.io/v1beta1/nodes"


class _Requester(Protocol):
    async def request(self, method: str, path: str) -> dict[str, object]: ...


async def run_node_metrics_poller(
    kube: _Requester,
    nodes: Callable[[], Mapping[str, NodeInfo]],
    store: UsageStore,
    metrics: Metrics,
    interval_s: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Poll NodeMetrics every `interval_s`, first at once.

    Args:
        kube: the Kubernetes client (`KubeClient`).
        nodes: the cached nodes by name (allocatable turns usage into utilisation).
        store: where readings go (source `metrics.k8s.io`).
        metrics: `node_metrics_polls` is counted here.
        interval_s: the poll interval (MONITOR_POLL_INTERVAL); readings stay fresh 2x this.
    """
    store.enable(METRICS_API, 2 * interval_s)
    task_status.started()
    last = ""
    next_at = trio.current_time()
    while True:
        result, detail = await _poll(kube, nodes, store)
        metrics.node_metrics_polls.labels(result).inc()
        if result != last:
            level = logging.INFO if result == "ok" else logging.WARNING
            log.log(level, "metrics.k8s.io: %s (%s)", result, detail)
            last = result
        next_at += interval_s
        now = trio.current_time()
        if next_at <= now:
            next_at = now + interval_s
        await trio.sleep_until(next_at)


async def _poll(
    kube: _Requester, nodes: Callable[[], Mapping[str, NodeInfo]], store: UsageStore
) -> tuple[str, str]:
    try:
        doc = await kube.request("GET", NODE_METRICS_PATH)
    except KubeNotFound:
        store.fail(METRICS_API, "not served (no metrics-server / metrics.k8s.io APIService)")
        return "not_served", "the API server does not serve metrics.k8s.io"
    except KubeError as exc:
        store.fail(METRICS_API, str(exc))
        return "error", str(exc)
    try:
        decoded = decode_node_metrics(doc)
    except NodeMetricsError as exc:
        store.fail(METRICS_API, f"unreadable answer: {exc}")
        return "error", str(exc)
    readings = to_readings(decoded, nodes(), store.clock())
    for resource in (CPU, MEMORY):
        store.publish(METRICS_API, resource, SeriesIndex.of_nodes(readings[resource]))
    detail = f"{len(decoded.items)} nodes"
    if decoded.problems:
        detail += f", {len(decoded.problems)} unreadable: {'; '.join(decoded.problems)[:200]}"
    return "ok", detail
