"""Computing power (spec S6, filter rule 5, the score's power term), as pure functions.

Units, fixed here once so that supply and demand are comparable:

* CPU power is *effective GHz*: a CPU unit reports clock × efficiency (the seed's test
  packet says 2.5 for one CPU), and a pod's CPU demand is cores × 2.0 GHz × ratio (S6.4)
  or the router's cores × GHz (S6.3).
* GPU and FPGA power are TFLOPS.

A node's *available* power of one type is Σ over its units of power × (1 − load/100).
Reports are kept per (node, type); only fresh ones reach these functions (the runtime
drops expired entries), so "no entry" always means "no fresh report".

Nothing here reads clocks, sockets or settings: callers pass plain values.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal

import attrs

from edge_sched.core.model import CPU, Candidate, PodDemand


class ComputeType(enum.IntEnum):
    """`computing_force_type` of the report (S6.1)."""

    CPU = 1
    GPU = 2
    FPGA = 3

    @property
    def label(self) -> str:
        """Lower-case name used in reasons, JSON and metrics: cpu, gpu, fpga."""
        return self.name.lower()

    @property
    def unit(self) -> str:
        return "GHz" if self is ComputeType.CPU else "TFLOPS"


COMPUTE_TYPES: Final = tuple(ComputeType)


@attrs.frozen
class PowerUnit:
    """One CPU, GPU or FPGA of a host.

    Attributes:
        power: effective GHz (CPU) or TFLOPS (GPU, FPGA).
        load_pct: utilisation in percent, 0..100.
        memory_gib: GPU memory; None for CPUs and FPGAs.
    """

    power: float
    load_pct: int
    memory_gib: float | None = None

    @property
    def available(self) -> float:
        return self.power * (1.0 - self.load_pct / 100.0)


@attrs.frozen
class HostPower:
    """One host entry of a report: a node's units of one type, plus its memory."""

    name: str
    type: ComputeType
    total_memory_gib: int
    available_memory_gib: int
    units: tuple[PowerUnit, ...] = ()

    # Cached: the verbs read these for every candidate on every call (immutable inputs).
    @functools.cached_property
    def total_power(self) -> float:
        return math.fsum(u.power for u in self.units)

    @functools.cached_property
    def available_power(self) -> float:
        return math.fsum(u.available for u in self.units)

    @functools.cached_property
    def average_load_pct(self) -> float | None:
        if not self.units:
            return None
        return math.fsum(u.load_pct for u in self.units) / len(self.units)


@attrs.frozen
class PowerReport:
    """A decoded Node-Computing-Force-Information-Report (S6.1)."""

    report_id: int
    hosts: tuple[HostPower, ...]


@attrs.frozen
class NodePower:
    """The fresh power entries of one node, by type (absent type: no fresh report)."""

    entries: Mapping[ComputeType, HostPower] = attrs.field(factory=dict)

    def available(self, kind: ComputeType) -> float | None:
        entry = self.entries.get(kind)
        return None if entry is None else entry.available_power


# -- demand -----------------------------------------------------------------------------

DemandSource = Literal["router", "fallback"]

# S6.4: the fallback prices a requested core at this clock before the efficiency ratio.
REFERENCE_CPU_GHZ: Final = 2.0


@attrs.frozen
class PowerDemand:
    """What a pod needs of each type, and where the numbers came from.

    Attributes:
        cpu: effective GHz.
        gpu, fpga: TFLOPS.
        source: "router" (S6.3 answer) or "fallback" (S6.4 estimate).
        detail: why the fallback was used ("router disabled", "router timed out after 3
            tries"…), empty for router answers.
    """

    cpu: float = 0.0
    gpu: float = 0.0
    fpga: float = 0.0
    source: DemandSource = "fallback"
    detail: str = ""

    def of(self, kind: ComputeType) -> float:
        if kind is ComputeType.CPU:
            return self.cpu
        return self.gpu if kind is ComputeType.GPU else self.fpga

    @functools.cached_property
    def needed(self) -> tuple[ComputeType, ...]:
        """The types with a positive demand, CPU first."""
        return tuple(k for k in COMPUTE_TYPES if self.of(k) > 0)

    def describe(self) -> str:
        """One line for plan notes and logs: `cpu 1.60 GHz, gpu 5.00 TFLOPS (fallback: …)`."""
        parts = [f"{k.label} {self.of(k):.2f} {k.unit}" for k in self.needed] or ["none"]
        origin = self.source + (f": {self.detail}" if self.detail else "")
        return f"{', '.join(parts)} ({origin})"

    def to_json(self) -> dict[str, object]:
        return {
            "cpu_ghz": round(self.cpu, 4),
            "gpu_tflops": round(self.gpu, 4),
            "fpga_tflops": round(self.fpga, 4),
            "source": self.source,
            "detail": self.detail,
        }


def is_gpu_resource(name: str) -> bool:
    """An extended resource counting GPUs: `nvidia.com/gpu`, `amd.com/gpu`, `vendor/gpu-…`."""
    domain, slash, rest = name.partition("/")
    return bool(slash and domain) and rest.startswith("gpu")


def is_fpga_resource(name: str) -> bool:
    """An extended resource counting FPGAs: `*/fpga*` (spec S6.4)."""
    domain, slash, rest = name.partition("/")
    return bool(slash and domain) and rest.startswith("fpga")


@attrs.frozen
class UnitCounts:
    """Whole devices and cores a pod (or container) requests, from its resource requests."""

    cpu_cores: float = 0.0
    gpus: int = 0
    fpgas: int = 0

    @classmethod
    def of(cls, requests: Mapping[str, int]) -> UnitCounts:
        return cls(
            cpu_cores=requests.get(CPU, 0) / 1000.0,
            gpus=sum(v for r, v in requests.items() if is_gpu_resource(r)),
            fpgas=sum(v for r, v in requests.items() if is_fpga_resource(r)),
        )


@attrs.frozen
class FallbackModel:
    """The S6.4 estimate's parameters (DEFAULT_* settings and the fallback multiplier)."""

    cpu_power_ratio: float = 0.8
    gpu_tflops: float = 5.0
    fpga_tflops: float = 2.0
    multiplier: float = 1.0


def estimate_demand(requests: Mapping[str, int], model: FallbackModel, detail: str = "") -> PowerDemand:
    """S6.4: cores × 2.0 GHz × ratio, GPUs × TFLOPS, FPGAs × TFLOPS, all × the multiplier.

    Args:
        requests: the pod's effective requests (cpu in millicores, devices as counts).
        model: the configured defaults and COMPUTING_POWER_FALLBACK multiplier.
        detail: why the estimate is used, kept on the result.
    """
    counts = UnitCounts.of(requests)
    m = model.multiplier
    return PowerDemand(
        cpu=counts.cpu_cores * REFERENCE_CPU_GHZ * model.cpu_power_ratio * m,
        gpu=counts.gpus * model.gpu_tflops * m,
        fpga=counts.fpgas * model.fpga_tflops * m,
        source="fallback",
        detail=detail,
    )


# -- router request profile (S6.3) ------------------------------------------------------

# A Kubernetes container spec gives core and device counts, not clocks or CUDA cores.
# The router request is filled from a reference device per requested unit; the router
# owns the conversion to power. The reference GPU (2,560 CUDA cores at 1 GHz, 2 FLOP per
# cycle) is ~5 TFLOPS, DEFAULT_GPU_TFLOPS's default, so both paths agree on plain pods.
REFERENCE_ROUTER_CPU_GHZ: Final = 2
REFERENCE_GPU_CUDA_HUNDREDS: Final = 25
REFERENCE_GPU_GHZ: Final = 1
REFERENCE_FPGA_KILO_LOGIC_UNITS: Final = 100


@attrs.frozen
class ContainerProfile:
    """One container's 5 bytes of a Task-Computing-Force-Request (before clamping)."""

    cpu_ghz: int = 0
    cpu_cores: int = 0
    gpu_cuda_hundreds: int = 0
    gpu_ghz: int = 0
    fpga_kilo_logic_units: int = 0

    def fields(self) -> tuple[int, int, int, int, int]:
        return (self.cpu_ghz, self.cpu_cores, self.gpu_cuda_hundreds, self.gpu_ghz, self.fpga_kilo_logic_units)


def container_profile(requests: Mapping[str, int]) -> ContainerProfile:
    """The router request entry of one container, from its effective requests.

    Cores are rounded up (a 100m container asks for one core: the router's unit is whole
    cores, and under-asking would pass nodes that cannot run the pod).
    """
    counts = UnitCounts.of(requests)
    cores = math.ceil(requests.get(CPU, 0) / 1000)
    return ContainerProfile(
        cpu_ghz=REFERENCE_ROUTER_CPU_GHZ if cores else 0,
        cpu_cores=cores,
        gpu_cuda_hundreds=counts.gpus * REFERENCE_GPU_CUDA_HUNDREDS,
        gpu_ghz=REFERENCE_GPU_GHZ if counts.gpus else 0,
        fpga_kilo_logic_units=counts.fpgas * REFERENCE_FPGA_KILO_LOGIC_UNITS,
    )


@attrs.frozen
class RouterAnswer:
    """One container's 6 bytes of a Task-Computing-Force-Measurement-Result."""

    cpu_power: int  # cores × GHz, u16
    gpu_tflops: float
    fpga_tflops: float


def demand_from_router(answers: Iterable[RouterAnswer]) -> PowerDemand:
    """The pod's demand: the router's per-container answers summed."""
    answers = list(answers)
    return PowerDemand(
        cpu=float(sum(a.cpu_power for a in answers)),
        gpu=math.fsum(a.gpu_tflops for a in answers),
        fpga=math.fsum(a.fpga_tflops for a in answers),
        source="router",
    )


# -- filter rule 5 ----------------------------------------------------------------------


@attrs.frozen
class PowerShortage:
    """Rule 5 failed for a node: the first type whose available power is too small."""

    reason: str
    # True when even an idle node (load 0) has less than the demand: evicting pods
    # cannot help, so kube-scheduler should not preempt there.
    unresolvable: bool


def power_shortage(demand: PowerDemand, power: NodePower | None) -> PowerShortage | None:
    """Rule 5: each needed type with a fresh report must have available ≥ demand.

    A type without a fresh report is not judged (the node passes for it; see
    `unjudged_types` for the plan note).
    """
    if power is None:
        return None
    problems: list[str] = []
    unresolvable = False
    for kind in demand.needed:
        entry = power.entries.get(kind)
        if entry is None:
            continue
        need, free = demand.of(kind), entry.available_power
        if need > free:
            n = len(entry.units)
            load = entry.average_load_pct
            # No "%" in reasons: kube-scheduler passes the message to Eventf as a format
            # string, and "95%)" reaches `kubectl describe` as "95%!)(MISSING)".
            shown_load = f", average load {load:.0f} percent" if load is not None else ""
            problems.append(
                f"insufficient {kind.label} power (need {need:.2f} {kind.unit}, available "
                f"{free:.2f} {kind.unit} of {entry.total_power:.2f} from {n} "
                f"unit{'s' if n != 1 else ''}{shown_load})"
            )
            unresolvable = unresolvable or need > entry.total_power
    if not problems:
        return None
    return PowerShortage("; ".join(problems), unresolvable)


def unjudged_types(demand: PowerDemand, power: NodePower | None) -> tuple[ComputeType, ...]:
    """Needed types for which the node has no fresh report (rule 5 let it pass)."""
    entries = power.entries if power is not None else {}
    return tuple(k for k in demand.needed if k not in entries)


# -- score power term -------------------------------------------------------------------

# Share of the power term in the blended 0..100 value when there is one.
POWER_SHARE: Final = 0.5
# With ENABLE_GPU_SCHEDULING a GPU pod's power term is this much GPU (the rest split
# among its other needed types by their weights): free GPU power dominates the choice.
GPU_PREFERENCE: Final = 0.8


@attrs.frozen
class PowerWeights:
    """WEIGHT_{CPU,GPU,FPGA}_POWER."""

    cpu: float = 0.5
    gpu: float = 0.3
    fpga: float = 0.2

    def of(self, kind: ComputeType) -> float:
        return {ComputeType.CPU: self.cpu, ComputeType.GPU: self.gpu, ComputeType.FPGA: self.fpga}[kind]


def term_weights(
    demand: PowerDemand, reported: Iterable[ComputeType], weights: PowerWeights, *, gpu_preference: bool
) -> dict[ComputeType, float]:
    """Normalised weights of the types in the power term (summing to 1), or {} for none.

    The term covers the types the pod needs that at least one candidate has a fresh
    report for; a type nobody reports cannot tell nodes apart.
    """
    seen = set(reported)
    kinds = [k for k in demand.needed if k in seen]
    raw = {k: weights.of(k) for k in kinds}
    if gpu_preference and ComputeType.GPU in raw:
        others = {k: w for k, w in raw.items() if k is not ComputeType.GPU}
        rest = sum(others.values())
        if not others:
            return {ComputeType.GPU: 1.0}
        result = {ComputeType.GPU: GPU_PREFERENCE}
        for k, w in others.items():
            share = w / rest if rest > 0 else 1.0 / len(others)
            result[k] = (1.0 - GPU_PREFERENCE) * share
        return result
    total = sum(raw.values())
    if total <= 0:
        return {}
    return {k: w / total for k, w in raw.items() if w > 0}


@attrs.frozen
class TermScale:
    """What a call's power term depends on beyond each node's own report: the types in the
    term with their weights and the candidates' best availability of each."""

    applies: bool  # some needed type is reported by a candidate: the term is blended in
    parts: tuple[tuple[ComputeType, float, float], ...] = ()  # (type, weight, best > 0)


def term_scale(
    demand: PowerDemand,
    reported: Iterable[ComputeType],
    best: Mapping[ComputeType, float],
    weights: PowerWeights,
    *,
    gpu_preference: bool,
) -> TermScale:
    """`reported`: the types some candidate has a fresh report of; `best`: per needed type,
    the largest availability among the candidates (0 when none has any)."""
    w = term_weights(demand, reported, weights, gpu_preference=gpu_preference)
    return TermScale(bool(w), tuple((k, wk, best[k]) for k, wk in w.items() if best[k] > 0))


def node_term(scale: TermScale, power: NodePower | None) -> float:
    """One node's power term, Σ w_t · avail_t / best_t in 0..1 (spec S5)."""
    total = 0.0
    if power is not None:
        for kind, weight, best in scale.parts:
            available = power.available(kind)
            if available is not None:
                total += weight * max(0.0, available) / best
    return min(1.0, max(0.0, total))


def usable_power(power: NodePower | None, kind: ComputeType) -> float:
    """What `best` compares: the node's availability of `kind`, 0 when negative or unreported."""
    available = power.available(kind) if power is not None else None
    return max(0.0, available) if available is not None else 0.0


def power_terms(
    demand: PowerDemand,
    candidates: Sequence[Candidate],
    weights: PowerWeights,
    *,
    gpu_preference: bool,
) -> dict[str, float]:
    """Per node, Σ w_t · avail_t / max over candidates of avail_t, in 0..1 (spec S5).

    A node without a fresh report of a type scores 0 on that type (nothing vouches for
    free power there). Returns {} when no term applies (no needed type is reported by
    any candidate), so the score is then the resource score alone.
    """
    powers = [c.power for c in candidates]
    reported: set[ComputeType] = set().union(*(p.entries for p in powers if p is not None))
    best = {k: max((usable_power(p, k) for p in powers), default=0.0) for k in demand.needed}
    scale = term_scale(demand, reported, best, weights, gpu_preference=gpu_preference)
    if not scale.applies:
        return {}
    return {c.name: node_term(scale, p) for c, p in zip(candidates, powers)}


def blend(resource_value: float, power_term: float | None) -> float:
    """The final 0..100 value: the resource score, blended with the power term if any."""
    if power_term is None:
        return resource_value
    return (1.0 - POWER_SHARE) * resource_value + POWER_SHARE * 100.0 * power_term


def with_power_demand(pod: PodDemand, demand: PowerDemand) -> PodDemand:
    """The pod with its power demand attached (rule 5 and the power term read it)."""
    return attrs.evolve(pod, power_demand=demand)
