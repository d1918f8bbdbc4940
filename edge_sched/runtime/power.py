"""Computing power wired together: reports in, demand out, for the extender verbs and the API.

`PowerService` owns the report store, the router client and the demand cache. The verbs
ask it for a pod's demand (`demand`, bounded by the caller's deadline) and for each
candidate's fresh power (`attach`). Precedence of a demand:

1. a cached router answer for the same request bytes (ROUTER_CACHE_TTL_S);
2. the router (S6.3), when COMPUTING_ROUTER_ENABLED, not cooling down after a failure,
   and answering within the caller's budget;
3. the S6.4 estimate × the COMPUTING_POWER_FALLBACK multiplier, saying why.

After a router failure the router is not asked again for ROUTER_COOLDOWN_S: a router that
is down would otherwise cost every scheduling cycle its whole budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import attrs
import trio
from prometheus_client import CollectorRegistry

from edge_sched.adapters.router_client import RouterClient, RouterUnavailable
from edge_sched.adapters.udp_listener import run_udp_listener
from edge_sched.codecs.power_report import encode_router_request
from edge_sched.core.model import Candidate, PodDemand
from edge_sched.core.podresources import PodSpecError, pod_requests
from edge_sched.core.power import (
    ContainerProfile,
    FallbackModel,
    PowerDemand,
    PowerWeights,
    container_profile,
    demand_from_router,
    estimate_demand,
)
from edge_sched.runtime.metrics import PowerMetrics, build_power_metrics
from edge_sched.runtime.power_store import PowerStore
from edge_sched.settings import Settings

log = logging.getLogger(__name__)

ROUTER_CACHE_TTL_S = 30.0
ROUTER_CACHE_MAX = 1024
ROUTER_COOLDOWN_S = 15.0
# Share of SCHEDULER_FILTER_TIMEOUT a verb may spend waiting for the router; the rest is
# for the verb's own work and the network back to kube-scheduler.
ROUTER_BUDGET_SHARE = 0.5


def app_containers(pod: Mapping[str, Any]) -> list[Any]:
    spec = pod.get("spec") if isinstance(pod, Mapping) else None
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    return containers if isinstance(containers, list) else []


def container_profiles(containers: Sequence[Any]) -> list[ContainerProfile]:
    """One router entry per app container, from its effective requests.

    Raises:
        PodSpecError: a container's resources do not parse.
    """
    return [container_profile(pod_requests({"spec": {"containers": [c]}})) for c in containers]


@attrs.frozen
class _OnStarted:
    """A task status that calls back instead of waking a `nursery.start` caller."""

    callback: Callable[[int], None]

    def started(self, value: int | None = None) -> None:
        assert value is not None
        self.callback(value)


@attrs.define(eq=False)
class PowerService:
    settings: Settings
    store: PowerStore
    metrics: PowerMetrics
    router: RouterClient | None = None
    clock: Callable[[], float] = trio.current_time
    _cache: dict[bytes, tuple[float, PowerDemand]] = attrs.field(factory=dict)
    _router_down_until: float = float("-inf")
    # For the health endpoint: what the listener and the router last did.
    listener_state: str = "starting"
    router_state: str = "not asked yet"

    @classmethod
    def build(cls, settings: Settings, metrics: PowerMetrics, store: PowerStore) -> PowerService:
        router = RouterClient(settings.router, metrics) if settings.router.enabled else None
        return cls(settings, store, metrics, router)

    # -- settings views ---------------------------------------------------------------------
    @property
    def fallback_model(self) -> FallbackModel:
        cp = self.settings.computing_power
        return FallbackModel(
            cpu_power_ratio=cp.default_cpu_power_ratio,
            gpu_tflops=cp.default_gpu_tflops,
            fpga_tflops=cp.default_fpga_tflops,
            multiplier=cp.fallback_multiplier,
        )

    @property
    def weights(self) -> PowerWeights:
        cp = self.settings.computing_power
        return PowerWeights(cpu=cp.weight_cpu_power, gpu=cp.weight_gpu_power, fpga=cp.weight_fpga_power)

    @property
    def router_budget_s(self) -> float:
        return self.settings.scheduler.filter_timeout_s * ROUTER_BUDGET_SHARE

    # -- candidates -------------------------------------------------------------------------
    def attach(self, candidates: Iterable[Candidate]) -> list[Candidate]:
        """The candidates with their fresh power entries."""
        return [attrs.evolve(c, power=self.store.node_power(c.name)) for c in candidates]

    # -- demand -----------------------------------------------------------------------------
    async def demand(self, pod_object: Mapping[str, Any], pod: PodDemand) -> PowerDemand:
        """The pod's demand; never raises and never waits beyond the router budget."""
        try:
            profiles = container_profiles(app_containers(pod_object))
        except PodSpecError as exc:  # the pod decoded, so this is unexpected; stay total
            return estimate_demand(pod.requests, self.fallback_model, f"containers: {exc}")
        return await self.demand_for(profiles, pod.requests)

    async def demand_for(self, profiles: Sequence[ContainerProfile], requests: Mapping[str, int]) -> PowerDemand:
        def fallback(why: str) -> PowerDemand:
            return estimate_demand(requests, self.fallback_model, why)

        if self.router is None:
            return fallback("router disabled")
        if not profiles or len(profiles) > 255:
            return fallback(f"{len(profiles)} containers cannot be sent to the router")
        request, warnings = encode_router_request(profiles)
        for warning in warnings:
            log.warning("router request: %s", warning)
        now = self.clock()
        cached = self._cache.get(request)
        if cached is not None and cached[0] > now:
            return cached[1]
        if now < self._router_down_until:
            return fallback("router failed recently; retrying it after a cool-down")
        answers = None
        with trio.move_on_after(self.router_budget_s):
            try:
                answers = await self.router.quantify(request, len(profiles))
            except RouterUnavailable as exc:
                self._router_down_until = self.clock() + ROUTER_COOLDOWN_S
                self.router_state = f"failing: {exc}"
                log.warning("computing-power router unavailable, using the estimate: %s", exc)
                return fallback(f"router {exc.reason}: {exc}")
        if answers is None:
            self._router_down_until = self.clock() + ROUTER_COOLDOWN_S
            self.router_state = f"failing: no answer within the verb's budget ({self.router_budget_s:g}s)"
            return fallback(f"router gave no answer within the verb's budget ({self.router_budget_s:g}s)")
        self.router_state = "ok"
        demand = demand_from_router(answers)
        self._remember(request, demand)
        return demand

    def _remember(self, request: bytes, demand: PowerDemand) -> None:
        now = self.clock()
        if len(self._cache) >= ROUTER_CACHE_MAX:
            for key in [k for k, (until, _) in self._cache.items() if until <= now]:
                del self._cache[key]
            while len(self._cache) >= ROUTER_CACHE_MAX:
                del self._cache[next(iter(self._cache))]  # oldest inserted first
        self._cache[request] = (now + ROUTER_CACHE_TTL_S, demand)


    # -- services and health --------------------------------------------------------------
    async def serve_reports(self) -> None:
        """The UDP report listener, keeping `listener_state` current for health."""
        udp = self.settings.udp
        self.listener_state = "starting"

        def listening(port: int) -> None:
            self.listener_state = f"listening on udp {udp.host}:{port}"

        try:
            await run_udp_listener(udp, self.store, self.metrics, task_status=_OnStarted(listening))
        except OSError as exc:  # e.g. the port is taken; the supervisor retries with backoff
            self.listener_state = f"failing: cannot listen on udp {udp.host}:{udp.port}: {exc}"
            raise
        finally:
            if self.listener_state.startswith("listening"):
                self.listener_state = "stopped"

    def health(self) -> dict[str, Any]:
        """The `computing_power` component of the health endpoint."""
        router = "disabled" if self.router is None else self.router_state
        if self.router is not None and self.clock() < self._router_down_until:
            router += f" (cooling down, next try in {self._router_down_until - self.clock():.0f}s)"
        return {
            "listener": self.listener_state,
            "fresh_nodes": self.store.fresh_node_count(),
            "router": router,
            "rule5": "on" if self.settings.computing_power.filter_enabled else "off",
        }


async def run_power_sweeper(store: PowerStore, interval_s: float) -> NoReturn:
    """Remove expired (node, type) entries every COMPUTING_POWER_CLEANUP_INTERVAL (S6.2)."""
    while True:
        await trio.sleep(interval_s)
        removed = store.sweep()
        if removed:
            log.info("removed %d expired computing-power entries", removed)


def build_power_service(settings: Settings, registry: CollectorRegistry) -> PowerService:
    """The service with its store and metrics registered on the daemon's registry."""
    store = PowerStore(expiry_s=settings.computing_power.expiry_s)
    metrics = build_power_metrics(registry, store.fresh_node_count)
    return PowerService.build(settings, metrics, store)
