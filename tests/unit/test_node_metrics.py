"""metrics.k8s.io fallback: NodeMetricsList codec and poller (spec S7)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from edge_sched.adapters.node_metrics_poller import NODE_METRICS_PATH, run_node_metrics_poller
from edge_sched.codecs.node_metrics import NodeMetricsError, decode_node_metrics, to_readings
from edge_sched.core.load import METRICS_API, REQUESTS, Reading
from edge_sched.core.model import NodeInfo
from edge_sched.errors import KubeNotFound, KubeRetryable
from edge_sched.runtime.metrics import build_metrics
from edge_sched.runtime.usage import UsageStore

GI = 1024**3
NODES = {
    "n1": NodeInfo("n1", {"cpu": 4000, "memory": 8 * GI}),
    "n2": NodeInfo("n2", {"cpu": 2000, "memory": 4 * GI}),
}


def node_metrics(*items: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "kind": "NodeMetricsList",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "items": [
            {"metadata": {"name": n}, "timestamp": "2026-12-03T19:00:00Z", "window": "20s",
             "usage": {"cpu": cpu, "memory": mem}}
            for n, cpu, mem in items
        ],
    }


def test_usage_becomes_utilisation_of_allocatable() -> None:
    decoded = decode_node_metrics(
        node_metrics(("n1", "1000000000n", "2Gi"), ("n2", "2500m", "1048576Ki"), ("gone", "1", "1Gi"))
    )
    readings = to_readings(decoded, NODES, now=50.0)
    assert readings["cpu"] == {"n1": Reading(0.25, 50.0), "n2": Reading(1.0, 50.0)}  # 2.5 of 2 cores: full
    assert readings["memory"] == {"n1": Reading(0.25, 50.0), "n2": Reading(0.25, 50.0)}


def test_unreadable_items_are_reported_one_by_one() -> None:
    doc = node_metrics(("n1", "bogus", "1Gi"), ("n2", "1", "1Gi"))
    doc["items"] += [{"metadata": {}}, {"metadata": {"name": "n3"}}, "x"]
    decoded = decode_node_metrics(doc)
    assert [m.name for m in decoded.items] == ["n2"]
    assert decoded.problems == (
        "n1: usage 'bogus': must start with a number (digits with an optional sign and at most one '.')",
        "items[2]: no metadata.name",
        "n3: no usage",
        "items[4]: no metadata.name",
    )
    assert decode_node_metrics({"items": None}).items == ()
    with pytest.raises(NodeMetricsError):
        decode_node_metrics({"items": {}})
    with pytest.raises(NodeMetricsError):
        decode_node_metrics([])


class FakeKube:
    def __init__(self) -> None:
        self.answer: Any = node_metrics(("n1", "2", "4Gi"))
        self.calls: list[float] = []

    async def request(self, method: str, path: str) -> dict[str, Any]:
        assert (method, path) == ("GET", NODE_METRICS_PATH)
        self.calls.append(trio.current_time())
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[no-any-return]


async def test_poller_publishes_counts_and_reports_not_served(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    kube, store, metrics = FakeKube(), UsageStore(), build_metrics()
    await nursery.start(run_node_metrics_poller, kube, lambda: NODES, store, metrics, 15.0)
    await trio.sleep(1)
    usage = store.usage(NODES["n1"])
    assert (usage.source, usage.cpu, usage.memory) == (METRICS_API, 0.5, 0.5)
    kube.answer = KubeNotFound("HTTP 404: the server could not find the requested resource", 404)
    await trio.sleep(15)
    assert store.source_status()[METRICS_API] == (
        "failing: not served (no metrics-server / metrics.k8s.io APIService) (last success 16s ago)"
    )
    kube.answer = KubeRetryable("HTTP 503: service unavailable", 503)
    await trio.sleep(15)
    assert store.usage(NODES["n1"]).source == REQUESTS  # 31 s old: stale
    assert kube.calls == [0.0, 15.0, 30.0]

    def polls(result: str) -> float | None:
        return metrics.registry.get_sample_value("edge_sched_node_metrics_polls_total", {"result": result})

    assert (polls("ok"), polls("not_served"), polls("error")) == (1.0, 1.0, 1.0)
    nursery.cancel_scope.cancel()
