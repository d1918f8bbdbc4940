"""Filter rule 5 and the score's power term through the extender verbs (in-process)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
from prometheus_client import CollectorRegistry

from edge_sched.codecs import extender as wire
from edge_sched.core.model import NodeInfo
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
from edge_sched.runtime.cluster import ClusterCache
from edge_sched.runtime.metrics import build_metrics
from edge_sched.runtime.plans import PlanStore
from edge_sched.runtime.power import build_power_service
from edge_sched.runtime.scheduler import Scheduler
from edge_sched.settings import Settings

GI = 1024**3
NODES = ["gpu-a", "gpu-b", "gpu-c"]


def settings(**computing_power: Any) -> Settings:
    base = Settings()
    return attrs.evolve(
        base,
        computing_power=attrs.evolve(base.computing_power, **computing_power),
        router=attrs.evolve(base.router, enabled=False),
    )


def make(cfg: Settings | None = None) -> Scheduler:
    cfg = cfg or settings()
    cache = ClusterCache(clock=lambda: 0.0)
    plans = PlanStore(clock=lambda: 1000.0, expiration_s=300)
    metrics = build_metrics(CollectorRegistry())
    power = build_power_service(cfg, metrics.registry) if cfg.computing_power.enabled else None
    if power is not None:
        power.store.clock = lambda: 0.0
    sched = Scheduler(cfg, cache, plans, metrics, None, wall_clock=lambda: 1000.0, power=power)
    cache.replace_nodes(
        [NodeInfo(n, {"cpu": 8000, "memory": 16 * GI, "pods": 110, "nvidia.com/gpu": 1}) for n in NODES]
    )
    if power is not None:
        # A: GPU loaded 95%; B: 10%; C: no reports at all.
        for name, load in (("gpu-a", 95), ("gpu-b", 10)):
            power.store.apply(
                PowerReport(
                    1,
                    (
                        HostPower(name, ComputeType.CPU, 16, 8, (PowerUnit(2.5, 20),) * 4),
                        HostPower(name, ComputeType.GPU, 16, 8, (PowerUnit(10.0, load, 16.0),)),
                    ),
                )
            )
    return sched


def gpu_pod(gpus: int = 1, cpu: str = "1") -> dict[str, Any]:
    res = {"cpu": cpu, "nvidia.com/gpu": str(gpus)}
    return {
        "metadata": {"name": "trainer", "namespace": "ml", "uid": "u-9"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": res, "limits": {"nvidia.com/gpu": str(gpus)}}}]},
    }


def args(pod: dict[str, Any]) -> wire.ExtenderArgs:
    return wire.parse_extender_args({"Pod": pod, "NodeNames": NODES})


async def test_rule5_fails_the_loaded_gpu_node_with_numbers() -> None:
    sched = make()
    result = await sched.filter(args(gpu_pod()))
    assert result["NodeNames"] == ["gpu-b", "gpu-c"]
    assert result["FailedNodes"] == {
        "gpu-a": "insufficient gpu power (need 5.00 TFLOPS, available 0.50 TFLOPS of 10.00 from 1 unit, "
        "average load 95 percent)"
    }
    await sched.prioritize(args(gpu_pod()))
    plan = sched.plans.get("ml/trainer")
    assert plan is not None
    assert "power demand: cpu 1.60 GHz, gpu 5.00 TFLOPS (fallback: router disabled)" in plan.notes
    assert "rule 5 not applied (no fresh cpu/gpu power report), passed: gpu-c" in plan.notes


async def test_demand_larger_than_any_idle_node_is_unresolvable() -> None:
    sched = make()
    result = await sched.filter(args(gpu_pod(cpu="7")))  # 11.2 GHz > 10 GHz even when idle
    assert set(result["FailedAndUnresolvableNodes"]) == {"gpu-a", "gpu-b"}
    assert result["FailedAndUnresolvableNodes"]["gpu-b"] == (
        "insufficient cpu power (need 11.20 GHz, available 8.00 GHz of 10.00 from 4 units, average load 20 percent)"
    )
    assert result["NodeNames"] == ["gpu-c"]


async def test_fallback_multiplier_raises_the_demand() -> None:
    sched = make(settings(fallback="aggressive"))  # GPU demand 10 TFLOPS: B has only 9
    result = await sched.filter(args(gpu_pod()))
    assert "need 10.00 TFLOPS, available 9.00 TFLOPS" in result["FailedNodes"]["gpu-b"]


async def test_rule5_off_keeps_every_node() -> None:
    sched = make(settings(filter_enabled=False))
    result = await sched.filter(args(gpu_pod()))
    assert result["NodeNames"] == NODES and result["FailedNodes"] == {}


async def test_prioritize_prefers_free_gpu_power() -> None:
    sched = make(settings(filter_enabled=False))
    scores = {h["Host"]: h["Score"] for h in await sched.prioritize(args(gpu_pod()))}
    assert scores["gpu-b"] == 10
    assert scores["gpu-b"] > scores["gpu-a"] >= scores["gpu-c"]
    plan = sched.plans.get("ml/trainer")
    assert plan is not None and plan.selected == "gpu-b"
    components = plan.to_json()["scores"]["gpu-b"]["components"]
    assert components["power"] == pytest.approx(1.0)


async def test_computing_power_disabled_means_no_rule5_and_no_power_term() -> None:
    sched = make(settings(enabled=False))
    assert sched.power is None
    result = await sched.filter(args(gpu_pod()))
    assert result["NodeNames"] == NODES
    scores = {h["Host"]: h["Score"] for h in await sched.prioritize(args(gpu_pod()))}
    assert scores == {"gpu-a": 10, "gpu-b": 10, "gpu-c": 10}


async def test_expired_reports_stop_counting_at_once() -> None:
    sched = make(settings(expiry_s=60))
    assert sched.power is not None
    sched.power.store.clock = lambda: 61.0
    result = await sched.filter(args(gpu_pod()))
    assert result["NodeNames"] == NODES


async def test_filter_answers_within_the_deadline_when_the_router_is_silent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    silent = trio.socket.socket(type=trio.socket.SOCK_DGRAM)  # bound, never answers
    with silent:
        await silent.bind(("127.0.0.1", 0))
        base = settings()
        cfg = attrs.evolve(
            base,
            router=attrs.evolve(base.router, enabled=True, port=silent.getsockname()[1], timeout_s=5.0),
            scheduler=attrs.evolve(base.scheduler, filter_timeout_s=3.0),
        )
        sched = make(cfg)
        result = await sched.filter(args(gpu_pod()))
    assert trio.current_time() == 1.5  # the router budget: half of SCHEDULER_FILTER_TIMEOUT
    assert result["FailedNodes"]["gpu-a"].startswith("insufficient gpu power (need 5.00 TFLOPS")
