"""The verbs with live load: rule 4 and the score read the usage store (spec S5, S7)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from edge_sched.codecs import extender as wire
from edge_sched.core.load import PROMETHEUS, Reading, SeriesIndex
from edge_sched.core.model import NodeInfo
from edge_sched.runtime.cluster import ClusterCache
from edge_sched.runtime.metrics import build_metrics
from edge_sched.runtime.plans import PlanStore
from edge_sched.runtime.scheduler import Scheduler
from edge_sched.runtime.usage import UsageStore
from edge_sched.settings import Settings

GI = 1024**3
ALLOC = {"cpu": 8000, "memory": 16 * GI, "pods": 110}


@attrs.define
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeKube:
    def __init__(self) -> None:
        self.bound: list[str] = []

    async def request(self, method: str, path: str, *, params: Any = None, body: Any = None) -> dict[str, Any]:
        if method == "POST" and path.endswith("/binding"):
            self.bound.append(body["target"]["name"])
            return {}
        if method == "GET":
            parts = path.strip("/").split("/")
            if parts[2] == "nodes":
                return {}
            return {"metadata": {"name": parts[5], "namespace": parts[3], "uid": "u-1"},
                    "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}
        raise AssertionError(f"unexpected {method} {path}")


def make(settings: Settings | None = None, *, damping_s: float | None = None) -> tuple[Scheduler, UsageStore, Clock]:
    clock = Clock()
    cache = ClusterCache(clock=clock)
    usage = UsageStore(clock=clock, damping_settle_s=damping_s)
    usage.enable(PROMETHEUS, 30.0)
    cfg = settings or Settings()
    plans = PlanStore(clock=clock, expiration_s=cfg.scheduler.plan_expiration_s)
    sched = Scheduler(cfg, cache, plans, build_metrics(), FakeKube(), wall_clock=clock, usage=usage)  # type: ignore[arg-type]
    cache.replace_nodes(
        [
            NodeInfo("hot", ALLOC, addresses=("10.0.0.5",)),
            NodeInfo("cool", ALLOC, addresses=("10.0.0.50",)),
            NodeInfo("lifted", ALLOC, annotations={"edge-sched.io/cpu-threshold": "0.97"}),
        ]
    )
    cache.replace_pods([])
    return sched, usage, clock


def publish(usage: UsageStore, at: float, **cpu: float) -> None:
    index = SeriesIndex.of_nodes({n: Reading(v, at) for n, v in cpu.items()})
    usage.publish(PROMETHEUS, "cpu", index)
    usage.publish(PROMETHEUS, "memory", SeriesIndex.of_nodes({n: Reading(0.3, at) for n in cpu}))


def pod(cpu: str = "500m", name: str = "p1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": "u-1"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
    }


def args(*nodes: str, **kw: Any) -> wire.ExtenderArgs:
    return wire.parse_extender_args({"Pod": pod(**kw), "NodeNames": list(nodes)})


async def test_filter_fails_the_node_above_its_threshold() -> None:
    sched, usage, _ = make()
    publish(usage, 1000.0, hot=0.95, cool=0.2, lifted=0.95)
    result = await sched.filter(args("hot", "cool", "lifted"))
    assert result["NodeNames"] == ["cool", "lifted"]  # lifted's annotation allows 0.97
    assert result["FailedNodes"] == {"hot": "load too high: cpu usage 0.95 > threshold 0.85 (prometheus)"}
    assert result["FailedAndUnresolvableNodes"] == {}


async def test_threshold_settings_are_used() -> None:
    sched, usage, _ = make(Settings.from_env({"LOAD_CPU_THRESHOLD": "0.96"}))
    publish(usage, 1000.0, hot=0.95)
    assert (await sched.filter(args("hot")))["NodeNames"] == ["hot"]


async def test_idle_node_scores_higher_than_busy_node() -> None:
    sched, usage, _ = make()
    publish(usage, 1000.0, hot=0.7, cool=0.2)
    scores = {p["Host"]: p["Score"] for p in await sched.prioritize(args("hot", "cool"))}
    assert scores == {"cool": 10, "hot": 0}
    plan = sched.plans.get("default/p1")
    assert plan is not None
    assert plan.scores["hot"].components["cpu_free"] == 1 - (0.7 * 8000 + 500) / 8000


async def test_stale_usage_passes_open_and_fails_closed() -> None:
    sched, usage, clock = make()
    publish(usage, 1000.0, hot=0.95)
    clock.now = 1031.0
    assert (await sched.filter(args("hot")))["NodeNames"] == ["hot"]
    closed, usage, clock = make(Settings.from_env({"LOAD_STALE_POLICY": "closed"}))
    publish(usage, 1000.0, hot=0.5)
    clock.now = 1031.0
    result = await closed.filter(args("hot"))
    assert result["FailedNodes"] == {
        "hot": "load unknown: cpu and memory usage unknown or stale: prometheus cpu stale (31s old, limit 30s); "
        "prometheus memory stale (31s old, limit 30s) (LOAD_STALE_POLICY=closed)"
    }


async def test_nodes_sent_as_objects_are_matched_by_internal_ip() -> None:
    """Standalone form: the node is not in the cache, the series has instance=IP:port."""
    sched, usage, _ = make()
    usage.publish(
        PROMETHEUS, "cpu", SeriesIndex(by_ip={__import__("ipaddress").ip_address("192.168.7.7"): Reading(0.9, 1000.0)})
    )
    node = {"metadata": {"name": "edge-x"}, "status": {
        "allocatable": {"cpu": "4", "memory": "8Gi"}, "addresses": [{"type": "InternalIP", "address": "192.168.7.7"}]}}
    result = await sched.filter(wire.parse_extender_args({"Pod": pod(), "Nodes": {"items": [node]}}))
    assert result["FailedNodes"] == {"edge-x": "load too high: cpu usage 0.9 > threshold 0.85 (prometheus)"}


async def test_a_bind_damps_the_node_until_its_load_shows() -> None:
    sched, usage, clock = make(damping_s=300.0)
    publish(usage, 1000.0, hot=0.5, cool=0.5)
    first = {p["Host"]: p["Score"] for p in await sched.prioritize(args("hot", "cool", cpu="2"))}
    assert first == {"hot": 10, "cool": 10}
    clock.now = 1001.0
    bound = await sched.bind(wire.parse_binding_args(
        {"PodName": "p1", "PodNamespace": "default", "PodUID": "u-1", "Node": "cool"}))
    assert bound == {"Error": ""}
    # The next pod: cool's 50 % sample predates the 2-core pod, so it counts on top.
    usage_now = usage.usage(sched.cache.nodes["cool"])
    assert usage_now.cpu == 0.5 + 2000 / 8000
    second = {p["Host"]: p["Score"] for p in await sched.prioritize(args("hot", "cool", cpu="2", name="p2"))}
    assert second == {"hot": 10, "cool": 0}


async def test_c19_nan_and_inf_nodes_score_neutrally_and_no_nan_reaches_json() -> None:
    from edge_sched.codecs.prom import decode_query_response
    from edge_sched.core.load import index_samples

    sched, usage, _ = make()
    body = """{"status":"success","data":{"resultType":"vector","result":[
     {"metric":{"node":"hot"},"value":[1717000000.5,"NaN"]},
     {"metric":{"node":"lifted"},"value":[1717000000.5,"+Inf"]},
     {"metric":{"node":"cool"},"value":[1717000000.5,"0.42"]}]}}"""
    index = index_samples(decode_query_response(body).samples, wall_now_s=1717000001.0, now=1000.0, max_age_s=30).index
    usage.publish(PROMETHEUS, "cpu", index)
    result = await sched.filter(args("hot", "cool", "lifted"))
    assert result["NodeNames"] == ["hot", "cool", "lifted"]  # unknown is not overloaded
    await sched.prioritize(args("hot", "cool", "lifted"))
    plan = sched.plans.get("default/p1")
    assert plan is not None
    # NaN/Inf nodes are neither 0 % busy (they are empty: requests alone would make them the
    # freest) nor full: they score with the measured candidates' median, here cool's 42 %.
    assert plan.scores["hot"].value == plan.scores["lifted"].value == plan.scores["cool"].value
    assert plan.scores["cool"].components["cpu_free"] == pytest.approx(1 - (0.42 * 8000 + 500) / 8000)
    json.dumps(plan.to_json(), allow_nan=False)
    json.dumps(usage.health(sched.cache.nodes.values()), allow_nan=False)
