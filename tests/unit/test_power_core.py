"""Demand estimate (S6.4), filter rule 5 and the score's power term (S5), pure."""

from __future__ import annotations

import pytest

from edge_sched.core.filtering import FilterLimits, filter_node
from edge_sched.core.model import Candidate, NodeInfo, PodDemand
from edge_sched.core.power import (
    ComputeType,
    ContainerProfile,
    FallbackModel,
    HostPower,
    NodePower,
    PowerDemand,
    PowerUnit,
    PowerWeights,
    RouterAnswer,
    blend,
    container_profile,
    demand_from_router,
    estimate_demand,
    is_fpga_resource,
    is_gpu_resource,
    power_terms,
    term_weights,
    unjudged_types,
    with_power_demand,
)

GI = 1024**3
CPU, GPU, FPGA = ComputeType.CPU, ComputeType.GPU, ComputeType.FPGA


def entry(kind: ComputeType, *units: tuple[float, int], name: str = "n") -> HostPower:
    return HostPower(name, kind, 64, 32, tuple(PowerUnit(p, load) for p, load in units))


def power(*entries: HostPower) -> NodePower:
    return NodePower({e.type: e for e in entries})


def cand(name: str, node_power: NodePower | None = None, **alloc: int) -> Candidate:
    allocatable = {"cpu": 8000, "memory": 16 * GI, "pods": 110, "nvidia.com/gpu": 2, **alloc}
    return Candidate(NodeInfo(name, allocatable), power=node_power)


def pod(requests: dict[str, int], demand: PowerDemand | None = None) -> PodDemand:
    p = PodDemand("default", "p", "u", requests)
    return with_power_demand(p, demand) if demand is not None else p


# -- demand --------------------------------------------------------------------------------


def test_resource_kinds() -> None:
    assert is_gpu_resource("nvidia.com/gpu") and is_gpu_resource("amd.com/gpu")
    assert not is_gpu_resource("gpu") and not is_gpu_resource("nvidia.com/mig-1g.5gb")
    assert is_fpga_resource("example.com/fpga") and is_fpga_resource("intel.com/fpga-arria10")
    assert not is_fpga_resource("fpga") and not is_fpga_resource("example.com/gpu")


@pytest.mark.parametrize(
    ("strategy", "multiplier"), [("default", 1.0), ("conservative", 1.5), ("aggressive", 2.0)]
)
def test_fallback_estimate_for_each_strategy(strategy: str, multiplier: float) -> None:
    from edge_sched.settings import FALLBACK_MULTIPLIERS

    assert FALLBACK_MULTIPLIERS[strategy] == multiplier
    model = FallbackModel(cpu_power_ratio=0.8, gpu_tflops=5.0, fpga_tflops=2.0, multiplier=multiplier)
    demand = estimate_demand(
        {"cpu": 2500, "memory": GI, "nvidia.com/gpu": 2, "example.com/fpga": 3}, model, "router disabled"
    )
    assert demand.cpu == pytest.approx(2.5 * 2.0 * 0.8 * multiplier)
    assert demand.gpu == pytest.approx(2 * 5.0 * multiplier)
    assert demand.fpga == pytest.approx(3 * 2.0 * multiplier)
    assert demand.source == "fallback" and demand.detail == "router disabled"
    assert demand.needed == (CPU, GPU, FPGA)


def test_cpu_only_pod_needs_cpu_only() -> None:
    demand = estimate_demand({"cpu": 500}, FallbackModel())
    assert demand.needed == (CPU,)
    assert demand.describe() == "cpu 0.80 GHz (fallback)"


def test_container_profile_uses_reference_devices_and_rounds_cores_up() -> None:
    assert container_profile({"cpu": 100}) == ContainerProfile(2, 1, 0, 0, 0)
    assert container_profile({"cpu": 2000, "nvidia.com/gpu": 2}) == ContainerProfile(2, 2, 50, 1, 0)
    assert container_profile({"example.com/fpga": 1}) == ContainerProfile(0, 0, 0, 0, 100)


def test_router_answers_sum_per_container() -> None:
    demand = demand_from_router([RouterAnswer(4, 5.05, 0.0), RouterAnswer(2, 0.0, 1.5)])
    assert (demand.cpu, demand.gpu, demand.fpga, demand.source) == (6.0, pytest.approx(5.05), 1.5, "router")


# -- rule 5 -----------------------------------------------------------------------------------


def test_available_power_discounts_load() -> None:
    e = entry(GPU, (10.0, 95), (10.0, 10))
    assert e.available_power == pytest.approx(0.5 + 9.0)
    assert e.total_power == 20.0 and e.average_load_pct == 52.5


def test_rule5_reason_names_the_numbers() -> None:
    demand = PowerDemand(cpu=1.6, gpu=5.0)
    busy = cand("gpu-a", power(entry(CPU, (2.5, 10), (2.5, 10)), entry(GPU, (10.0, 95))))
    verdict = filter_node(pod({"cpu": 1000, "nvidia.com/gpu": 1}, demand), busy, FilterLimits())
    assert verdict.reason == (
        "insufficient gpu power (need 5.00 TFLOPS, available 0.50 TFLOPS of 10.00 from 1 unit, "
        "average load 95 percent)"
    )
    # An idle node of 10 TFLOPS could run it: evicting pods may help.
    assert not verdict.unresolvable
    # kube-scheduler uses the message as a Go format string (Eventf): no "%" may appear.
    assert "%" not in verdict.reason


def test_rule5_unresolvable_when_even_an_idle_node_is_too_small() -> None:
    demand = PowerDemand(cpu=12.0)
    small = cand("small", power(entry(CPU, (2.5, 0), (2.5, 0), (2.5, 50))))
    verdict = filter_node(pod({"cpu": 1000}, demand), small, FilterLimits())
    assert verdict.reason == (
        "insufficient cpu power (need 12.00 GHz, available 6.25 GHz of 7.50 from 3 units, average load 17 percent)"
    )
    assert verdict.unresolvable


def test_rule5_names_every_short_type() -> None:
    demand = PowerDemand(cpu=4.0, gpu=5.0)
    node = cand("x", power(entry(CPU, (2.0, 50)), entry(GPU, (4.0, 0))))
    reason = filter_node(pod({"cpu": 1000, "nvidia.com/gpu": 1}, demand), node, FilterLimits()).reason
    assert reason.startswith("insufficient cpu power (need 4.00 GHz, available 1.00 GHz")
    assert "; insufficient gpu power (need 5.00 TFLOPS, available 4.00 TFLOPS" in reason


def test_rule5_passes_with_enough_power_or_without_fresh_reports() -> None:
    demand = PowerDemand(cpu=1.6, gpu=5.0)
    p = pod({"cpu": 1000, "nvidia.com/gpu": 1}, demand)
    roomy = cand("b", power(entry(GPU, (10.0, 10))))
    assert filter_node(p, roomy, FilterLimits()).passed
    # No fresh reports at all, and no GPU report: both pass, and the plan says why.
    assert filter_node(p, cand("c"), FilterLimits()).passed
    assert unjudged_types(demand, None) == (CPU, GPU)
    cpu_only = cand("d", power(entry(CPU, (2.5, 0))))
    assert filter_node(p, cpu_only, FilterLimits()).passed
    assert unjudged_types(demand, cpu_only.power) == (GPU,)
    assert unjudged_types(demand, roomy.power) == (CPU,)


def test_rule5_off_without_a_demand() -> None:
    busy = cand("a", power(entry(GPU, (10.0, 100))))
    assert filter_node(pod({"nvidia.com/gpu": 1}), busy, FilterLimits()).passed


def test_exact_fit_passes() -> None:
    demand = PowerDemand(gpu=5.0)
    exact = cand("e", power(entry(GPU, (10.0, 50))))
    assert filter_node(pod({"nvidia.com/gpu": 1}, demand), exact, FilterLimits()).passed


# -- score ----------------------------------------------------------------------------------


def test_term_weights() -> None:
    w = PowerWeights(cpu=0.5, gpu=0.3, fpga=0.2)
    both = PowerDemand(cpu=1.0, gpu=5.0)
    assert term_weights(both, [CPU, GPU], w, gpu_preference=False) == pytest.approx(
        {CPU: 0.5 / 0.8, GPU: 0.3 / 0.8}
    )
    assert term_weights(both, [CPU, GPU], w, gpu_preference=True) == pytest.approx({GPU: 0.8, CPU: 0.2})
    # Types no candidate reports drop out; a pod needing none of the reported types has no term.
    assert term_weights(both, [CPU], w, gpu_preference=True) == {CPU: 1.0}
    assert term_weights(PowerDemand(fpga=1.0), [CPU, GPU], w, gpu_preference=False) == {}


def test_power_term_prefers_free_gpu_power() -> None:
    demand = PowerDemand(cpu=1.6, gpu=5.0)
    a = cand("gpu-a", power(entry(CPU, (2.5, 50)), entry(GPU, (10.0, 95))))
    b = cand("gpu-b", power(entry(CPU, (2.5, 50)), entry(GPU, (10.0, 10))))
    none = cand("gpu-c")
    terms = power_terms(demand, [a, b, none], PowerWeights(), gpu_preference=True)
    assert terms["gpu-b"] == pytest.approx(1.0)
    assert terms["gpu-a"] == pytest.approx(0.8 * 0.5 / 9.0 + 0.2)
    assert terms["gpu-c"] == 0.0
    assert terms["gpu-b"] > terms["gpu-a"] > terms["gpu-c"]


def test_gpu_preference_outweighs_cpu_power() -> None:
    # Node a: lots of free CPU power, busy GPU. Node b: busy CPUs, free GPU.
    demand = PowerDemand(cpu=1.6, gpu=5.0)
    a = cand("a", power(entry(CPU, *[(2.5, 0)] * 8), entry(GPU, (10.0, 80))))
    b = cand("b", power(entry(CPU, (2.5, 90)), entry(GPU, (10.0, 20))))
    plain = power_terms(demand, [a, b], PowerWeights(), gpu_preference=False)
    preferring = power_terms(demand, [a, b], PowerWeights(), gpu_preference=True)
    assert plain["a"] > plain["b"]  # CPU weight 0.5 beats GPU weight 0.3
    assert preferring["b"] > preferring["a"]


def test_no_term_without_reports() -> None:
    assert power_terms(PowerDemand(cpu=1.0), [cand("a"), cand("b")], PowerWeights(), gpu_preference=False) == {}


def test_all_loaded_nodes_score_zero_on_that_type() -> None:
    demand = PowerDemand(gpu=5.0)
    a = cand("a", power(entry(GPU, (10.0, 100))))
    assert power_terms(demand, [a], PowerWeights(), gpu_preference=False) == {"a": 0.0}


def test_blend_ordering() -> None:
    assert blend(60.0, None) == 60.0
    assert blend(60.0, 1.0) == pytest.approx(80.0)
    assert blend(60.0, 0.0) == pytest.approx(30.0)
    # Equal resource scores: the power term decides.
    assert blend(50.0, 0.9) > blend(50.0, 0.1)
